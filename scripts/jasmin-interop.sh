#!/usr/bin/env bash
# herald through Jasmin, on loopback: herald binds as an ESME to Jasmin's SMPP server, Jasmin
# routes every message (a default MT route) to an SMPP client connector bound to the SMSC
# sink (herald-loadtest smsc-sink), and the sink's receipts come back through Jasmin to herald.
# Shows the messages the sink counted (lost, duplicated) and the receipts herald applied.
#
#   scripts/jasmin-interop.sh            # N=1000 messages
#   KEEP_LOGS=1 N=20 scripts/jasmin-interop.sh   # keeps Jasmin's logs and config
#
# Needs Jasmin from PyPI (python3 -m pip install jasmin; set JASMIN_PYTHON to the Python that
# has it, e.g. a virtualenv's), RabbitMQ on 127.0.0.1:5672 with the guest account
# (apt-get install -y rabbitmq-server; the script starts it if nothing listens there and
# stops what it started), the local Redis on 6379 (Jasmin keeps its DLR map in database
# JASMIN_REDIS_DB, 13 unless set; nothing is flushed), and a release build
# (cargo build --release -p herald-loadtest).
set -euo pipefail

N=${N:-1000}
REDIS_DB=${JASMIN_REDIS_DB:-13}
PY=${JASMIN_PYTHON:-python3}
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/herald-loadtest}
[[ -x $BIN ]] || { echo "build first: cargo build --release -p herald-loadtest" >&2; exit 2; }
"$PY" -c "import jasmin" 2>/dev/null || { echo "Jasmin is not installed for $PY: python3 -m pip install jasmin" >&2; exit 2; }
JASMIND=$(dirname "$(command -v "$PY")")/jasmind.py
[[ -f $JASMIND ]] || JASMIND=$(command -v jasmind.py)

work=$(mktemp -d -t jasmin-interop.XXXXXX)
pids=()
started_rabbit=
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [[ -n $started_rabbit ]]; then rabbitmqctl stop >/dev/null 2>&1 || true; fi
  if [[ -n ${KEEP_LOGS:-} ]]; then echo "logs kept in $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
json_field() { python3 -c 'import json,sys; v=json.load(sys.stdin); print(eval("v"+sys.argv[1]))' "$1"; }

listening 6379 || { echo "no Redis on 127.0.0.1:6379" >&2; exit 2; }
if ! listening 5672; then
  command -v rabbitmq-server >/dev/null || { echo "no RabbitMQ: apt-get install -y rabbitmq-server" >&2; exit 2; }
  RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 rabbitmq-server -detached
  started_rabbit=1
  for _ in $(seq 120); do listening 5672 && break; sleep 0.5; done
fi

# The sink Jasmin's connector binds to: hex ids, receipts with TLVs, all delivered.
"$BIN" smsc-sink --receipts tlv --delivered-rate 1 --receipt-delay-ms 100 >"$work/sink.out" 2>"$work/sink.err" &
pids+=($!)
for _ in $(seq 100); do [[ -s $work/sink.out ]] && break; sleep 0.1; done
SINK_PORT=$(head -1 "$work/sink.out" | json_field '["smpp"]' | cut -d: -f2)
STATS=$(head -1 "$work/sink.out" | json_field '["stats"]')

SMPP=$(free_port); SMPP_PB=$(free_port); ROUTER=$(free_port); CM=$(free_port)
JCLI=$(free_port); HTTP=$(free_port); ICPT=$(free_port)
mkdir -p "$work/etc/jasmin/store" "$work/var/log/jasmin"
# The PyPI package ships no AMQP spec file of its own; txamqp (its dependency) has one.
SPEC=$("$PY" -c 'import os, txamqp; print(os.path.join(os.path.dirname(txamqp.__file__), "specs/standard/amqp0-9-1.stripped.xml"))')
cat >"$work/etc/jasmin/jasmin.cfg" <<CONF
[smpp-server]
bind = 127.0.0.1
port = $SMPP
[smpp-server-pb]
bind = 127.0.0.1
port = $SMPP_PB
[smpp-server-pb-client]
host = 127.0.0.1
port = $SMPP_PB
[client-management]
bind = 127.0.0.1
port = $CM
[router]
bind = 127.0.0.1
port = $ROUTER
[interceptor]
bind = 127.0.0.1
port = $ICPT
[interceptor-client]
host = 127.0.0.1
port = $ICPT
[http-api]
bind = 127.0.0.1
port = $HTTP
[jcli]
bind = 127.0.0.1
port = $JCLI
authentication = False
[redis-client]
host = 127.0.0.1
port = 6379
dbid = $REDIS_DB
[amqp-broker]
host = 127.0.0.1
port = 5672
spec = $SPEC
CONF
ROOT_PATH=$work "$PY" "$JASMIND" -c "$work/etc/jasmin/jasmin.cfg" \
  --enable-dlr-thrower --enable-dlr-lookup --enable-deliver-thrower >"$work/jasmind.out" 2>&1 &
pids+=($!)
for _ in $(seq 120); do listening "$JCLI" && listening "$SMPP" && break; sleep 0.5; done
listening "$JCLI" || { echo "Jasmin did not start:"; tail -20 "$work/jasmind.out"; exit 1; } >&2

# Provision through jCli: a user for herald, a connector to the sink, a default route to it.
timeout 120 "$PY" -W ignore - "$JCLI" "$SINK_PORT" <<'PYCLI' || { echo "jCli provisioning failed" >&2; tail -5 "$work/jasmind.out" >&2; exit 1; }
import sys, telnetlib
jcli, sink = int(sys.argv[1]), sys.argv[2]
t = telnetlib.Telnet("127.0.0.1", jcli, timeout=10)
# jCli negotiates telnet options first (refused here); a line then brings the prompt.
t.write(b"\r\n")
if b"jcli : " not in t.read_until(b"jcli : ", timeout=10):
    sys.exit("no jcli prompt")
def run(*lines):
    for line in lines:
        t.write(line.encode() + b"\r\n")
        out = t.read_until(b": ", timeout=10).decode(errors="replace")
        if "Error" in out or "Unknown" in out or "must set" in out:
            sys.exit(f"jcli {line!r}: {out}")
run("group -a", "gid herald", "ok")
run("user -a", "username herald", "password secret", "gid herald", "uid herald", "ok")
run("smppccm -a", "cid sink", "host 127.0.0.1", f"port {sink}", "username herald",
    "password secret", "submit_throughput 0", "ok")
run("smppccm -1 sink")
run("mtrouter -a", "type defaultroute", "connector smppc(sink)", "rate 0.00", "ok")
t.write(b"quit\n")
PYCLI
for _ in $(seq 100); do
  [[ $(curl -sf "http://$STATS/stats" | json_field '["binds"].__len__()') -ge 1 ]] && break; sleep 0.2
done

echo "herald → Jasmin $("$PY" -c 'import jasmin; print(jasmin.get_release())' 2>/dev/null || echo) → sink: $N messages"
set +e
"$BIN" run loadtest/scenarios/jasmin-interop.toml --recipients "$N" \
  --smsc "127.0.0.1:$SMPP" --sink-stats "$STATS" --summary-json "$work/summary.json"
rc=$?
set -e
if [[ -s $work/summary.json ]]; then
  echo "summary: $(cat "$work/summary.json" | python3 -c 'import json,sys; v=json.load(sys.stdin); print({k: v[k] for k in ["sent","failed","lost","duplicates","receipts_sent","receipts_applied","delivered","problems"]})')"
fi
[[ $rc -eq 0 ]] || { echo "--- jasmind (last lines)"; tail -20 "$work/jasmind.out"; tail -20 "$work/var/log/jasmin/"*.log 2>/dev/null | tail -40; } >&2
exit $rc
