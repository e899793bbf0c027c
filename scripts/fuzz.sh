#!/usr/bin/env bash
# The libFuzzer targets of tests/fuzz (pgoutput, binlog, kafka, conf, vclock, status), built with
# clang in build-fuzz (ASan + UBSan), each run for SECONDS from the seeds cut out of
# tests/fixtures, the inputs kept in tests/fixtures/crafted/TARGET and the corpus that earlier
# runs grew in build-fuzz/corpus/TARGET. Fails on a crash, a leak, a broken invariant (a target
# aborts), an input that takes over 10 s or 2 GiB: the input is left in build-fuzz/artifacts.
#   scripts/fuzz.sh                 every target, 20 s each (what scripts/test.sh runs)
#   scripts/fuzz.sh 600             every target, 10 minutes each
#   scripts/fuzz.sh 3600 binlog     one target for an hour
# FUZZ_BUILD_DIR changes the build directory; FUZZ_JOBS=N runs N processes per target.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-20}
shift || true
dir=${FUZZ_BUILD_DIR:-build-fuzz}
if [ $# -gt 0 ]; then
  targets=("$@")
else
  targets=()
  for f in tests/fuzz/fuzz_*.c; do
    f=${f##*/fuzz_}
    targets+=("${f%.c}")
  done
fi

cmake -S . -B "$dir" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCDCSYNC_FUZZ=ON >/dev/null
cmake --build "$dir" -j "$(nproc)" --target "${targets[@]/#/fuzz_}" >"$dir/build.log" 2>&1 || {
  grep -E 'error' "$dir/build.log" | head -30 >&2
  echo "fuzz: the build fails (log: $dir/build.log)" >&2
  exit 1
}
rm -rf "$dir/seeds"
python3 tests/fuzz/seeds.py . "$dir/seeds"

failed=()
for t in "${targets[@]}"; do
  mkdir -p "$dir/corpus/$t" "$dir/artifacts/$t" "$dir/seeds/$t"
  log="$dir/fuzz_$t.log"
  extra=()
  [ -z "${FUZZ_JOBS:-}" ] || extra=(-fork="$FUZZ_JOBS")
  # The first directory receives what the run finds; the others are only read.
  if ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$dir/fuzz_$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$dir/artifacts/$t/" "${extra[@]}" "$dir/corpus/$t" "$dir/seeds/$t" \
    "tests/fixtures/crafted/$t" >"$log" 2>&1; then
    runs=$(awk '/stat::number_of_executed_units/ { print $2 }' "$log" | tail -1)
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1)
    echo "fuzz $t: ${secs} s, ${runs:-?} executions, ${cov:-cov: ?}, corpus $(ls "$dir/corpus/$t" | wc -l) inputs: ok"
  else
    failed+=("$t")
    echo "fuzz $t: FAILED (log: $log)" >&2
    grep -E '^==[0-9]+==ERROR|invariant broken|SUMMARY|^artifact_prefix|Test unit written' "$log" | head -10 >&2 || true
    tail -40 "$log" >&2
    echo "fuzz $t: keep the input as a regression (cp $dir/artifacts/$t/<file> tests/fixtures/crafted/$t/), fix, rerun" >&2
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: ${failed[*]} failed" >&2
  exit 1
fi
