#!/usr/bin/env bash
# A `nudge worker` over a purchase history, with and without a budget of
# customers in memory: its wall time and peak resident size
# (docs/benchmarks.md, "Cluster workers: `nudge worker`").
#
#   benches/worker_memory.sh EVENTS [BUDGET]
#
# EVENTS is a file of calls (`nudge gen --shape purchases --events 330000
# -o p330k.jsonl`); BUDGET sets `[runtime] customers_in_memory` (none by
# default). The project is benches/winback on a cluster of 16 partitions
# of its own on the local NATS and PostgreSQL, removed at the end. The
# calls are taken in by `nudge serve --cluster`, then one worker runs on
# the calls' clock to 2027-06-01 without dispatch. NUDGE names the binary
# (target/release/nudge by default).
set -euo pipefail
events=$1
budget=${2:-}
nudge=${NUDGE:-target/release/nudge}
here=$(cd "$(dirname "$0")" && pwd)
name=wm_$$
dir=$(mktemp -d)
until_ms=1811808000000 # 2027-06-01T00:00:00Z
pg=(psql -h 127.0.0.1 -U postgres -d test -qtA)

# Deletes a JetStream stream by speaking NATS's protocol (no CLI needed).
delete_stream() {
  python3 - "$1" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", 4222))
f = s.makefile("rb")
f.readline()
subject = b"$JS.API.STREAM.DELETE." + sys.argv[1].encode()
s.sendall(b'CONNECT {"verbose":false}\r\nSUB _INBOX.wm 1\r\nPUB ' + subject + b' _INBOX.wm 0\r\n\r\n')
while not f.readline().startswith(b"MSG"):
    pass
PY
}
cleanup() {
  kill "${serve:-}" "${worker:-}" 2>/dev/null || true
  delete_stream "$name-calls" || true
  "${pg[@]}" -c "DROP SCHEMA IF EXISTS $name CASCADE" >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT

cp "$here"/winback/* "$dir"/
if [ -n "$budget" ]; then printf 'customers_in_memory = %s\n' "$budget" >>"$dir/nudge.toml"; fi
printf '\n[cluster]\nnats = "nats://127.0.0.1:4222"\npostgres = "host=127.0.0.1 user=postgres dbname=test"\nschema = "%s"\nprefix = "%s"\npartitions = 16\n' "$name" "$name" >>"$dir/nudge.toml"
"$nudge" cluster init "$dir" >/dev/null
NUDGE_WRITE_KEY=bench "$nudge" serve "$dir" --cluster --listen 127.0.0.1:0 >"$dir/serve.out" 2>/dev/null &
serve=$!
until [ -s "$dir/serve.out" ]; do sleep 0.1; done
address=$(head -1 "$dir/serve.out" | awk '{print $NF}')
python3 - "$events" "$address" <<'PY'
import base64, sys, urllib.request
lines = open(sys.argv[1]).read().splitlines()
auth = "Basic " + base64.b64encode(b"bench:").decode()
for i in range(0, len(lines), 500):
    body = ('{"batch":[' + ",".join(lines[i:i + 500]) + "]}").encode()
    request = urllib.request.Request("http://" + sys.argv[2] + "/v1/batch", data=body,
        headers={"Content-Type": "application/json", "Authorization": auth})
    urllib.request.urlopen(request).read()
PY
kill "$serve"; wait "$serve" 2>/dev/null || true

start=$(date +%s.%N)
/usr/bin/time -v "$nudge" worker "$dir" --id bench --clock calls --until 2027-06-01T00:00:00Z \
  --no-dispatch --outbox "$dir/outbox.jsonl" 2>"$dir/worker.err" &
worker=$!
until [ "$("${pg[@]}" -c "SELECT count(*) FROM $name.partitions WHERE clock >= $until_ms")" = 16 ]; do
  sleep 0.2
done
end=$(date +%s.%N)
# The worker is the child of `time`, which then reports.
pkill -TERM -P "$worker" || true
wait "$worker" || true
echo "budget: ${budget:-none}"
echo "to the end of the clock: $(echo "$end - $start" | bc) s"
echo "send intents: $("${pg[@]}" -c "SELECT count(*) FROM $name.send_intents")"
grep -E 'read back|Maximum resident|User time|System time' "$dir/worker.err"
