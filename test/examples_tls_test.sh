#!/usr/bin/env bash
# Runs docs/examples/tls_echo.cpp with a throwaway certificate made here, bounded in time.
set -euo pipefail
example="$1"
dir="$(mktemp -d)"; trap 'rm -rf "$dir"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost \
  -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
got="$(timeout 20 "$example" "$dir/cert.pem" "$dir/key.pem" "$dir/cert.pem")"
for line in "client: connected with TLSv1.3" "client: echoed hello" "client: echoed TLS"; do
  grep -qxF "$line" <<<"$got" || { printf 'missing "%s" in:\n%s\n' "$line" "$got"; exit 1; }
done
echo "examples: TLS echo round trip ok"
