#!/usr/bin/env bash
# Runs the README's line-echo server and client examples against each other, bounded in time.
set -euo pipefail
server="$1"; client="$2"
out="$(mktemp)"; trap 'kill "$pid" 2>/dev/null || true; rm -f "$out"' EXIT
timeout 20 "$server" 0 > "$out" &
pid=$!
for _ in $(seq 100); do grep -q "listening on" "$out" && break; sleep 0.05; done
port="$(sed -n 's/.*:\([0-9]*\)$/\1/p' "$out" | head -1)"
[[ -n "$port" ]] || { echo "server did not start"; exit 1; }
got="$(timeout 10 "$client" "$port" hello corio)"
expected=$'hello\r\ncorio\r'
[[ "$got" == "$expected" ]] || { printf 'unexpected reply: %q\n' "$got"; exit 1; }
echo "examples: echo round trip ok"
