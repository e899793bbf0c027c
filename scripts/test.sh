#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine: installs what it needs, builds twice (plain,
# and with AddressSanitizer + UBSan), runs the unit tests and the integration tests against real
# servers that the tests start themselves on loopback, and stops them at the end.
#   scripts/test.sh            everything
#   scripts/test.sh -L unit    only one ctest label (extra arguments go to ctest); the labels:
#                              unit, integration, faults (tests/faults/: frozen and cut network
#                              paths, server restarts, a paused service, local faults)
#   FUZZ_SECONDS=0 scripts/test.sh   without the fuzz targets' run (20 s each by default)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh
jobs=$(nproc)

# build DIR [TYPE [cmake args...]] — warnings are errors here, whatever the default.
build() {
  local dir=$1 type=${2:-RelWithDebInfo}
  shift $(($# < 2 ? $# : 2))
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE="$type" -DCDCSYNC_WERROR=ON "$@" >/dev/null
  cmake --build "$dir" -j "$jobs" >/dev/null
}

echo "== format check"
files=$(git ls-files '*.c' '*.h' 2>/dev/null || find . -name '*.c' -o -name '*.h')
if ! clang-format --dry-run --Werror $files; then
  echo "clang-format: the files above are not formatted (run: clang-format -i \$(git ls-files '*.c' '*.h'))"
  exit 1
fi

echo "== build"
build build
echo "== build (ASan + UBSan)"
build build-asan RelWithDebInfo -DCDCSYNC_SANITIZE=ON
echo "== build (Release, Debug: only built, so that no build type breaks)"
build build-release Release
build build-debug Debug

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

echo "== tests"
ctest --test-dir build --output-on-failure "$@"
echo "== tests under ASan + UBSan"
ctest --test-dir build-asan --output-on-failure "$@"

# The decoders' libFuzzer targets, built with clang in build-fuzz, FUZZ_SECONDS each (0: skip);
# longer runs: scripts/fuzz.sh SECONDS.
if [ "${FUZZ_SECONDS:-20}" != 0 ]; then
  echo "== fuzz targets (${FUZZ_SECONDS:-20} s each)"
  bash scripts/fuzz.sh "${FUZZ_SECONDS:-20}"
fi
