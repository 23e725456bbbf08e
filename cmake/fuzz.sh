#!/usr/bin/env bash
# cmake/fuzz.sh [SECONDS] -- build the libFuzzer targets (clang, 'fuzz' preset) and run each
# for SECONDS (default 60) starting from its seed corpus in test/fuzz/corpus/<name>/.
# New inputs go to a scratch copy; a crash leaves its reproducer in build/fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds="${1:-60}"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}"
cmake --preset fuzz >/dev/null
targets=()
for src in test/fuzz/*.cpp; do targets+=("fuzz_$(basename "$src" .cpp)"); done
cmake --build --preset fuzz --target "${targets[@]}"
mkdir -p build/fuzz/artifacts
status=0
for target in "${targets[@]}"; do
  name="${target#fuzz_}"
  work="$(mktemp -d)"
  cp -r "test/fuzz/corpus/$name/." "$work/" 2>/dev/null || true
  echo "[fuzz] $name for ${seconds}s"
  if ! timeout $((seconds + 60)) "build/fuzz/test/$target" -max_total_time="$seconds" \
      -rss_limit_mb=2048 -artifact_prefix=build/fuzz/artifacts/"$name"- "$work" 2>"$work.log"; then
    echo "[fuzz] $name FAILED:"; tail -40 "$work.log"; status=1
  else
    grep -E '^Done' "$work.log" || true
  fi
  rm -rf "$work" "$work.log"
done
exit $status
