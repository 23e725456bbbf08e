#!/usr/bin/env bash
# Runs the Tornado seed client example against the HTTP hello example, bounded in time; then
# SIGINT stops the server gracefully (exit status 0, its counters printed).
set -euo pipefail
server="$1"; client="$2"
out="$(mktemp)"; trap 'kill "$pid" 2>/dev/null || true; rm -f "$out"' EXIT
timeout 20 "$server" --port 0 > "$out" &
pid=$!
for _ in $(seq 100); do grep -q "listening on" "$out" && break; sleep 0.05; done
port="$(sed -n 's/.*:\([0-9]*\)$/\1/p' "$out" | head -1)"
[[ -n "$port" ]] || { echo "server did not start"; exit 1; }
got="$(timeout 10 "$client" 127.0.0.1 "$port")"
[[ "$got" == "Hello, World!" ]] || { printf 'unexpected body: %q\n' "$got"; exit 1; }
echo "examples: seed client fetched the hello page"
kill -INT "$pid"  # timeout(1) passes it on to the server
wait "$pid" || { echo "server exit status $? after SIGINT"; cat "$out"; exit 1; }
grep -q "^stats: syscalls=[0-9]* requests=1$" "$out" || { echo "no stats line"; cat "$out"; exit 1; }
echo "examples: the hello server stopped gracefully on SIGINT"
