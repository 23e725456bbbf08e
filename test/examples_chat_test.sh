#!/usr/bin/env bash
# Runs the chat server example with two bash /dev/tcp clients: each sees the other's line,
# never its own. Bounded in time.
set -euo pipefail
server="$1"
out="$(mktemp)"; trap 'kill "$pid" 2>/dev/null || true; rm -f "$out"' EXIT
timeout 20 "$server" 0 > "$out" &
pid=$!
for _ in $(seq 100); do grep -q "listening on" "$out" && break; sleep 0.05; done
port="$(sed -n 's/.*:\([0-9]*\)$/\1/p' "$out" | head -1)"
[[ -n "$port" ]] || { echo "server did not start"; exit 1; }
expect() {  # expect FD TEXT: the next line on FD is TEXT
  local line
  IFS= read -r -t 5 line <&"$1" || { echo "fd $1: no line (wanted '$2')"; exit 1; }
  [[ "$line" == "$2" ]] || { printf 'fd %s: got %q, wanted %q\n' "$1" "$line" "$2"; exit 1; }
}
exec 3<>"/dev/tcp/127.0.0.1/$port"; expect 3 "welcome: 1 online"
exec 4<>"/dev/tcp/127.0.0.1/$port"; expect 4 "welcome: 2 online"
echo "hello from a" >&3; expect 4 "hello from a"
echo "hi a, b here" >&4; expect 3 "hi a, b here"  # a did not get its own line first
exec 3>&- 4>&-
echo "examples: chat between two clients ok"
