#!/bin/sh
# Copies libphonenumber's phone-prefix -> time zone map into the repository, after checking
# that it has the shape the lookup in src/phone/timezone.rs reads.
#
# Source: https://github.com/google/libphonenumber, resources/timezones/map_data.txt
# (Apache-2.0; the licence header is kept). The copy in the repository was taken at upstream
# commit f7e3e88 (July 2026). When updating, change that note here and in
# src/phone/timezone.rs, then run `cargo test --lib phone::timezone`.
#
# Usage: scripts/update-timezone-map.sh [path/to/map_data.txt]
# Without an argument the shared data folder beside the repository is read
# (../shared/data/libphonenumber_timezones_map_data.txt).
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
src=${1:-"$root/../shared/data/libphonenumber_timezones_map_data.txt"}
dest="$root/src/phone/timezone/map_data.txt"

if [ ! -f "$src" ]; then
    echo "no map at $src" >&2
    exit 1
fi
if ! grep -q "Licensed under the Apache License, Version 2.0" "$src"; then
    echo "$src: the Apache-2.0 licence header is missing" >&2
    exit 1
fi

# Every line is a comment, empty, or `digits|Zone/Name(&Zone/Name)*`, and no prefix repeats.
awk '
    /^#/ || /^[[:space:]]*$/ { next }
    !/^[0-9]+\|[A-Za-z][A-Za-z0-9_+\/-]*(&[A-Za-z][A-Za-z0-9_+\/-]*)*$/ {
        printf "line %d is not prefix|zones: %s\n", NR, $0 > "/dev/stderr"; bad = 1; next
    }
    {
        split($0, f, "|")
        if (f[1] in seen) { printf "line %d repeats prefix %s\n", NR, f[1] > "/dev/stderr"; bad = 1 }
        seen[f[1]] = 1
        if (length(f[1]) > 18) { printf "line %d: prefix %s is too long\n", NR, f[1] > "/dev/stderr"; bad = 1 }
        n++
    }
    END {
        if (n < 1000) { printf "only %d prefixes: not the whole map\n", n > "/dev/stderr"; bad = 1 }
        exit bad
    }
' "$src"

cp "$src" "$dest"
echo "copied $(grep -cv '^#\|^[[:space:]]*$' "$dest") prefixes to ${dest#"$root"/}"
