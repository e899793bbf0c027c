#!/usr/bin/env bash
# Installs the Debian packages cdcsync's build, tests and quickstart need. Idempotent and quiet
# when everything is already there. Extra package names (a bench's tools) may follow:
#   scripts/deps.sh sysbench
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config clang-format
  libpq-dev libmariadb-dev librdkafka-dev libjansson-dev libcmocka-dev libmicrohttpd-dev
  liblmdb-dev libinih-dev libsystemd-dev zlib1g-dev libssl-dev
  postgresql-15 postgresql-client-15 mariadb-server mariadb-client kcat prometheus curl
  procps psmisc python3 openssl systemd util-linux git locales
  man-db mandoc file dpkg-dev
  clang libclang-rt-14-dev
  chromium chromium-driver
  "$@"
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Debian's server packages try to start their services; the tests start their own instead.
if [ ! -e /usr/sbin/policy-rc.d ] && [ "$(id -u)" -eq 0 ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
fi
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
