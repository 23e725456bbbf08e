#!/usr/bin/env bash
# Runs the benchmarked echo server example in line mode on each backend: one line echoed
# through bash /dev/tcp, then SIGINT; it must exit by itself and print its loop statistics.
set -euo pipefail
server="$1"
for backend in io_uring epoll; do
  out="$(mktemp)"
  timeout 20 "$server" --backend "$backend" --port 0 --mode line > "$out" &
  pid=$!
  for _ in $(seq 100); do grep -q "listening on" "$out" && break; sleep 0.05; done
  port="$(sed -n 's/.*:\([0-9]*\)$/\1/p' "$out" | head -1)"
  if [[ -z "$port" ]]; then
    kill "$pid" 2>/dev/null || true; wait "$pid" || true
    # io_uring may be refused here (seccomp, sysctl): then only epoll is checked.
    [[ "$backend" == io_uring ]] && { echo "io_uring backend unavailable; skipped"; rm -f "$out"; continue; }
    echo "server did not start"; cat "$out"; exit 1
  fi
  exec 3<>"/dev/tcp/127.0.0.1/$port"
  printf 'ping %s\r\n' "$backend" >&3
  IFS= read -r -t 5 got <&3 || { echo "$backend: no echo"; exit 1; }
  [[ "$got" == "ping $backend"$'\r' ]] || { printf '%s: unexpected echo %q\n' "$backend" "$got"; exit 1; }
  exec 3>&-
  kill -INT "$pid"
  wait "$pid" || { echo "$backend: exit status $?"; exit 1; }
  grep -q "^stats: syscalls=" "$out" || { echo "$backend: no stats line"; cat "$out"; exit 1; }
  rm -f "$out"
  echo "examples: echo_server ($backend) echoed a line and stopped on SIGINT"
done
