#!/usr/bin/env bash
# Kannel and herald side by side: the same SMSC sink (herald-loadtest smsc-sink), the same
# N messages to the same synthetic numbers, 4 transceiver binds with a window of 64 each,
# answers at once, no receipts, everything on loopback.
#
#   Kannel: bearerbox + smsbox (Debian's kannel package) with `smsc = smpp` bound to the
#           sink; the messages are offered to smsbox's sendsms HTTP interface by
#           `herald-loadtest sendsms` (32 requests in flight). Kannel keeps its queue in a
#           store file, as herald keeps its journal.
#   herald: `herald-loadtest run loadtest/scenarios/kannel-vs-herald.toml`, one NDJSON job.
#
# For each: sends per second (first offer until the sink holds every message) and messages
# per gateway CPU-second (bearerbox + smsbox; herald's process, the job's load generator
# included, so herald's figure is a lower bound). Then the ratio.
#
#   scripts/kannel-vs-herald.sh            # N=100000
#   N=20000 scripts/kannel-vs-herald.sh
#
# Needs: apt-get install -y kannel; a release build (cargo build --release -p herald-loadtest).
set -euo pipefail

N=${N:-100000}
CONNECTIONS=${CONNECTIONS:-32}
LIMIT_SECONDS=${LIMIT_SECONDS:-900}
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/herald-loadtest}
[[ -x $BIN ]] || { echo "build first: cargo build --release -p herald-loadtest" >&2; exit 2; }
for b in bearerbox smsbox; do
  command -v "$b" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin
  command -v "$b" >/dev/null 2>&1 || { echo "$b not found: apt-get install -y kannel" >&2; exit 2; }
done

work=$(mktemp -d -t kannel-vs-herald.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
json_field() { python3 -c 'import json,sys; v=json.load(sys.stdin); print(eval("v"+sys.argv[1]))' "$1"; }
# utime + stime of a process, in clock ticks (fields 14 and 15 of /proc/<pid>/stat).
ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
TICK=$(getconf CLK_TCK)

# The sink, as herald's run starts it, with no receipts.
"$BIN" smsc-sink --receipts none >"$work/sink.out" 2>"$work/sink.err" &
pids+=($!)
for _ in $(seq 100); do [[ -s $work/sink.out ]] && break; sleep 0.1; done
SMPP_PORT=$(head -1 "$work/sink.out" | json_field '["smpp"]' | cut -d: -f2)
STATS=$(head -1 "$work/sink.out" | json_field '["stats"]')
stats() { curl -sf "http://$STATS/stats"; }

ADMIN=$(free_port); BOXPORT=$(free_port); SENDSMS=$(free_port)
{
  cat <<CONF
group = core
admin-port = $ADMIN
admin-password = loadtest
admin-allow-ip = "127.0.0.1"
smsbox-port = $BOXPORT
box-allow-ip = "127.0.0.1"
log-file = "$work/bearerbox.log"
log-level = 4
store-type = file
store-location = "$work/kannel.store"
sms-incoming-queue-limit = -1
sms-outgoing-queue-limit = -1
CONF
  for i in 1 2 3 4; do
    cat <<CONF

group = smsc
smsc = smpp
smsc-id = sink
host = 127.0.0.1
port = $SMPP_PORT
transceiver-mode = true
smsc-username = herald
smsc-password = secret
system-type = ""
max-pending-submits = 64
source-addr-ton = 5
source-addr-npi = 0
dest-addr-ton = 1
dest-addr-npi = 1
CONF
  done
  cat <<CONF

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = $BOXPORT
sendsms-port = $SENDSMS
sendsms-interface = 127.0.0.1
log-file = "$work/smsbox.log"
log-level = 4
global-sender = HERALD

group = sendsms-user
username = herald
password = secret
max-messages = 1
CONF
} >"$work/kannel.conf"

bearerbox "$work/kannel.conf" >"$work/bearerbox.out" 2>&1 &
BB=$!; pids+=($BB)
sleep 1
smsbox "$work/kannel.conf" >"$work/smsbox.out" 2>&1 &
SB=$!; pids+=($SB)
ready=
for _ in $(seq 150); do
  binds=$(stats | json_field '["binds"].__len__()' 2>/dev/null || echo 0)
  if [[ $binds -ge 4 ]] && curl -s -o /dev/null "http://127.0.0.1:$SENDSMS/"; then ready=1; break; fi
  sleep 0.2
done
[[ -n $ready ]] || { echo "Kannel did not bind to the sink: $(tail -5 "$work/bearerbox.log")" >&2; exit 1; }

KANNEL_VERSION=$(bearerbox --version 2>&1 | sed -n "s/.*bearerbox version \`\([^']*\)'.*/\1/p" | head -1)
echo "Kannel $KANNEL_VERSION: $N messages over sendsms, 4 binds, window 64"
cpu0=$(( $(ticks $BB) + $(ticks $SB) ))
t0=$(date +%s.%N)
"$BIN" sendsms --url "http://127.0.0.1:$SENDSMS/cgi-bin/sendsms" --messages "$N" \
  --connections "$CONNECTIONS" >"$work/sendsms.json"
offered=$(date +%s.%N)
deadline=$(( $(date +%s) + LIMIT_SECONDS ))
while :; do
  distinct=$(stats | json_field '["distinct"]')
  [[ $distinct -ge $N ]] && break
  if [[ $(date +%s) -gt $deadline ]]; then echo "Kannel: only $distinct of $N at the sink after ${LIMIT_SECONDS}s" >&2; break; fi
  sleep 0.05
done
t1=$(date +%s.%N)
cpu1=$(( $(ticks $BB) + $(ticks $SB) ))
kstats=$(stats)
kill "$SB" "$BB" 2>/dev/null || true

k_seconds=$(python3 -c "print(f'{$t1 - $t0:.2f}')")
k_offer=$(python3 -c "print(f'{$offered - $t0:.2f}')")
k_cpu=$(python3 -c "print(f'{($cpu1 - $cpu0) / $TICK:.2f}')")
k_distinct=$(echo "$kstats" | json_field '["distinct"]')
k_dups=$(echo "$kstats" | json_field '["duplicates"]')
k_rate=$(python3 -c "print(round($k_distinct / ($t1 - $t0)))")
k_per_cpu=$(python3 -c "print(round($k_distinct / max($k_cpu, 0.01)))")
echo "  at the sink: $k_distinct distinct, $k_dups duplicates, in ${k_seconds}s (offers took ${k_offer}s: $(cat "$work/sendsms.json"))"
echo "  sends/s $k_rate; CPU ${k_cpu}s (bearerbox + smsbox): $k_per_cpu messages per CPU-second"

echo "herald: $N messages in one job, 4 binds, window 64"
"$BIN" run loadtest/scenarios/kannel-vs-herald.toml --recipients "$N" \
  --summary-json "$work/herald.json" >"$work/herald.out"
h_rate=$(json_field '["sends_per_second"]' <"$work/herald.json")
h_cpu=$(json_field '["herald_cpu_seconds"]' <"$work/herald.json")
h_sent=$(json_field '["sent"]' <"$work/herald.json")
h_dups=$(json_field '["duplicates"]' <"$work/herald.json")
h_lost=$(json_field '["lost"]' <"$work/herald.json")
h_per_cpu=$(python3 -c "print(round($h_sent / max($h_cpu, 0.01)))")
echo "  sent $h_sent, lost $h_lost, duplicates $h_dups"
echo "  sends/s $(python3 -c "print(round($h_rate))"); CPU $(python3 -c "print(f'{$h_cpu:.2f}')")s (herald's process): $h_per_cpu messages per CPU-second"

echo "ratio herald / Kannel: sends/s $(python3 -c "print(f'{$h_rate / max($k_rate, 1):.1f}')")x, messages per CPU-second $(python3 -c "print(f'{$h_per_cpu / max($k_per_cpu, 1):.1f}')")x"
