#!/usr/bin/env bash
# The web console (#15) in a real browser: headless Chromium, driven through chromedriver
# (console_check.py), renders the pipeline with its state, the lag chart and a conflict row from
# the running service, and its Pause button (after the console's login dialog) pauses the pipeline.
# CDCSYNC_CONSOLE_SCREENSHOT=FILE also saves a screenshot there (docs/console.png was made so).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/ops_lib.sh"
command -v chromium >/dev/null && command -v chromedriver >/dev/null ||
  fail "chromium and chromedriver are needed (scripts/deps.sh installs them)"

ops_pair
printf 'adm-s3cret\n' >"$WORK/admin.pass"
chmod 600 "$WORK/admin.pass"
sed -i "/^metrics_listen/a admin_user = ops\nadmin_password_file = $WORK/admin.pass" "$WORK/cdcsync.conf"
mkdir -p "$WORK/state"
printf '{"ts_us":%d,"pipeline":"main","source":"src","sink":"dst","table":"public.t","key":"{\\"id\\":7}","winner":"incoming","resolution":"timestamp"}\n' \
  "$(date +%s%6N)" >"$WORK/state/conflicts.jsonl"
service_start
wait_for "pipeline main streaming" 60 pipeline_streaming main
psql_on src -c "INSERT INTO t (id, v) SELECT g, 'x' FROM generate_series(1, 500) g"
wait_synced src dst 30 t

# The page itself: self-contained (no resource from elsewhere).
curl -sS --max-time 5 "http://127.0.0.1:$MPORT/" >"$WORK/page.html"
grep -q '<title>cdcsync</title>' "$WORK/page.html" || fail "GET / is not the console"
! grep -Eq '(src|href)="(https?:)?//' "$WORK/page.html" || fail "the console loads something from elsewhere"

python3 "$SRCDIR/tests/integration/console_check.py" "http://127.0.0.1:$MPORT" ops adm-s3cret ${CDCSYNC_CONSOLE_SCREENSHOT:-} \
  >"$WORK/console.out" 2>&1 || { cat "$WORK/console.out" >&2; fail "the console check failed"; }
while read -r line; do log "$line"; done <"$WORK/console.out"
paused() { curl -sS --max-time 5 "http://127.0.0.1:$MPORT/api/pipelines" | grep -q '"state":"paused"'; }
wait_for "main paused per /api/pipelines" 30 paused
service_stop
finish
