#!/usr/bin/env bash
# Runs the fetch example against the HTTP hello example: status line printed, body saved; then
# SIGTERM stops the server gracefully (exit status 0, its counters printed).
set -euo pipefail
server="$1"; fetch="$2"
out="$(mktemp)"; body="$(mktemp)"
trap 'kill "$pid" 2>/dev/null || true; rm -f "$out" "$body"' EXIT
timeout 20 "$server" --port 0 > "$out" &
pid=$!
for _ in $(seq 100); do grep -q "listening on" "$out" && break; sleep 0.05; done
port="$(sed -n 's/.*:\([0-9]*\)$/\1/p' "$out" | head -1)"
[[ -n "$port" ]] || { echo "server did not start"; exit 1; }
got="$(timeout 10 "$fetch" "http://127.0.0.1:$port/" "$body")"
[[ "$got" == "200 OK, 13 bytes" ]] || { printf 'unexpected output: %q\n' "$got"; exit 1; }
[[ "$(cat "$body")" == "Hello, World!" ]] || { echo "unexpected body: $(cat "$body")"; exit 1; }
echo "examples: fetch saved the hello page"
kill -TERM "$pid"  # timeout(1) passes it on to the server
wait "$pid" || { echo "server exit status $? after SIGTERM"; cat "$out"; exit 1; }
grep -q "^stats: syscalls=[0-9]* requests=1$" "$out" || { echo "no stats line"; cat "$out"; exit 1; }
echo "examples: the hello server stopped gracefully on SIGTERM"
