#!/usr/bin/env bash
# bench/run.sh [--quick] [table.py args...] -- build the release preset and
# produce the benchmark table (bench/table.py). Peers are optional packages.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}"

# Optional peers: Asio (header-only), nginx, wrk, Tornado (bench/peers/tornado_echo.py, run
# with /usr/bin/python3; deps.sh already requires it for the tests, named here so the bench
# keeps it if that changes) and perf (the syscall cross-check). (Debian 12's nginx-light
# is only a metapackage over nginx and is gone in Debian 13; use nginx.)
cmake/deps.sh libasio-dev nginx wrk python3-tornado linux-perf
cmake --preset release
cmake --build --preset release

if [[ -f bench/table.py ]]; then
  exec /usr/bin/python3 bench/table.py "$@"
else
  echo "no benchmarks yet (bench/table.py not found; args: ${*:-none})"
fi
