#!/usr/bin/env bash
# cmake/deps.sh -- make sure the Debian 12 packages corio needs are installed.
#
#   cmake/deps.sh [optional-package ...]
#
# Required packages (below) are installed if missing; failure is fatal.
# Extra arguments are optional packages (e.g. bench peers: libasio-dev nginx
# wrk): installed if possible, otherwise a warning is printed and we go on.
# As root, missing packages are installed with apt-get; otherwise the exact
# sudo command is printed and the script exits 1 (if a required one is missing).
# Set CORIO_SKIP_DEPS=1 to skip all checks (e.g. offline, non-Debian hosts).
set -euo pipefail

REQUIRED_PACKAGES=(
  build-essential cmake ninja-build pkg-config
  clang-14 libclang-rt-14-dev
  liburing-dev libssl-dev libpcre2-dev
  libgtest-dev libgmock-dev googletest libbenchmark-dev
  openssl python3 python3-tornado curl doxygen valgrind
)
OPTIONAL_PACKAGES=("$@")

log() { printf '[deps] %s\n' "$*" >&2; }

if [[ "${CORIO_SKIP_DEPS:-0}" == 1 ]]; then
  log "CORIO_SKIP_DEPS=1: skipping package checks"
  exit 0
fi
if ! command -v dpkg-query >/dev/null 2>&1; then
  log "dpkg-query not found (not Debian?): skipping package checks; needed: ${REQUIRED_PACKAGES[*]}"
  exit 0
fi

is_installed() {
  [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

missing_required=()
for p in "${REQUIRED_PACKAGES[@]}"; do
  is_installed "$p" || missing_required+=("$p")
done
missing_optional=()
for p in "${OPTIONAL_PACKAGES[@]}"; do
  is_installed "$p" || missing_optional+=("$p")
done

if ((${#missing_required[@]} == 0 && ${#missing_optional[@]} == 0)); then
  log "all packages present"
  exit 0
fi

if [[ "$(id -u)" -ne 0 ]]; then
  if ((${#missing_required[@]})); then
    log "missing required packages: ${missing_required[*]}"
    log "install them with:"
    printf '  sudo apt-get update && sudo apt-get install -y --no-install-recommends %s\n' \
      "${missing_required[*]} ${missing_optional[*]}" >&2
    exit 1
  fi
  log "WARNING: missing optional packages: ${missing_optional[*]} (continuing without them)"
  printf '  sudo apt-get install -y --no-install-recommends %s\n' "${missing_optional[*]}" >&2
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
apt_install() { apt-get install -y --no-install-recommends "$@"; }

log "apt-get update"
apt-get update -qq

if ((${#missing_required[@]})); then
  log "installing required: ${missing_required[*]}"
  if ! apt_install "${missing_required[@]}"; then
    log "ERROR: could not install required packages: ${missing_required[*]}"
    exit 1
  fi
fi

if ((${#missing_optional[@]})); then
  log "installing optional: ${missing_optional[*]}"
  if ! apt_install "${missing_optional[@]}"; then
    # One bad name must not block the others: retry one by one.
    for p in "${missing_optional[@]}"; do
      if ! apt_install "$p"; then
        log "WARNING: optional package '$p' could not be installed; continuing without it"
      fi
    done
  fi
fi
log "done"
