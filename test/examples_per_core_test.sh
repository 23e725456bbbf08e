#!/usr/bin/env bash
# Runs the thread-per-core example on two threads, echoes lines through it, then stops it
# with SIGINT: it must exit by itself, with status 0, within the time bound.
set -euo pipefail
server="$1"
out="$(mktemp)"; trap 'kill -9 "$pid" 2>/dev/null || true; rm -f "$out"' EXIT
"$server" 0 2 > "$out" &
pid=$!
for _ in $(seq 100); do grep -q "listening on" "$out" && break; sleep 0.05; done
port="$(sed -n 's/.*:\([0-9]*\) (.*$/\1/p' "$out" | head -1)"
[[ -n "$port" ]] || { echo "server did not start"; cat "$out"; exit 1; }
for i in 1 2 3 4; do  # several connections: the kernel spreads them over both listeners
  exec 3<>"/dev/tcp/127.0.0.1/$port"
  echo "line $i" >&3
  IFS= read -r -t 5 got <&3 || { echo "no echo on connection $i"; exit 1; }
  [[ "$got" == "line $i" ]] || { printf 'unexpected echo: %q\n' "$got"; exit 1; }
  exec 3>&-
done
kill -INT "$pid"
for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
if kill -0 "$pid" 2>/dev/null; then echo "still running 5 s after SIGINT"; exit 1; fi
wait "$pid" || { echo "exit status $?"; exit 1; }
grep -q "^stopped$" "$out" || { echo "no 'stopped' line"; cat "$out"; exit 1; }
echo "examples: per-core echo served 4 connections and stopped on SIGINT"
