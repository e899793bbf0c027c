#!/usr/bin/env bash
# The Debian package, installed on this machine: `cpack -G DEB` builds it from the build directory
# (prefix /usr whatever the build's); its control names the shared libraries (dpkg-shlibdeps) and
# systemd, /etc/cdcsync/cdcsync.conf is a conffile; `dpkg -i` creates the cdcsync user and the
# root:cdcsync /etc/cdcsync, neither enables nor starts the service; /usr/bin/cdcsync --version
# answers and `check` of the installed conf says that it defines no pipeline (as root and as the
# service's user); a reinstall keeps the operator's edit; `dpkg -r` removes every file but the
# conf and disables the unit; `dpkg -P` removes the conf and /etc/cdcsync.
# What the machine had is left as it was: a cdcsync package already installed stops the test
# (it is not ours to remove); /etc/cdcsync (from a /usr/local install, say) is moved aside and put
# back, a cdcsync under /usr/local is checked untouched, the cdcsync user is removed again if the
# test created it.
source "$(dirname "$0")/lib.sh"

BUILDDIR=${BUILDDIR:-$(dirname "$CDCSYNC")}
ver=$("$CDCSYNC" --version | awk '{print $2}')
[ "$(id -u)" = 0 ] || fail "dpkg -i needs root"
exec 8>/tmp/cdcsync-test-package.lock
flock 8

# dpkg ARGS — retried while another dpkg or apt (a test's deps.sh) holds dpkg's lock.
dpkg_do() {
  local i
  for i in $(seq 1 300); do
    dpkg "$@" >"$WORK/dpkg.out" 2>&1 && return 0
    grep -q "lock" "$WORK/dpkg.out" || { cat "$WORK/dpkg.out" >&2; return 1; }
    sleep 1
  done
  cat "$WORK/dpkg.out" >&2
  return 1
}
pkg_status() { dpkg-query -W -f='${Status}' cdcsync 2>/dev/null || true; }

# ---- the package ----
(cd "$BUILDDIR" && cpack -G DEB -B "$WORK/pkg") >"$WORK/cpack.out" 2>&1 || { cat "$WORK/cpack.out" >&2; fail "cpack -G DEB"; }
deb=$(ls "$WORK"/pkg/cdcsync_*.deb)
[ "$(basename "$deb")" = "cdcsync_${ver}-1_$(dpkg --print-architecture).deb" ] || fail "package file name: $deb"
[ "$(dpkg-deb -f "$deb" Package)" = cdcsync ] && [ "$(dpkg-deb -f "$deb" Version)" = "$ver-1" ] || fail "control: $(dpkg-deb -f "$deb" Package Version)"
depends=$(dpkg-deb -f "$deb" Depends)
for lib in systemd libc6 libpq5 libmariadb3 librdkafka1 libjansson4 libmicrohttpd12 liblmdb0 libinih1 libsystemd0 zlib1g libssl3; do
  echo ", $depends," | grep -q ", $lib[ ,]" || fail "Depends lacks $lib: $depends"
done
[ "$(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles)" = /etc/cdcsync/cdcsync.conf ] || fail "conffiles: $(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles)"
dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|' >"$WORK/contents"
for f in /usr/bin/cdcsync /usr/lib/systemd/system/cdcsync.service /usr/lib/sysusers.d/cdcsync.conf \
  /usr/lib/tmpfiles.d/cdcsync.conf /usr/share/man/man1/cdcsync.1 /usr/share/man/man5/cdcsync.conf.5 \
  /etc/cdcsync/cdcsync.conf /usr/share/doc/cdcsync/cdcsync.conf.example /usr/share/doc/cdcsync/examples/pg-to-pg.conf \
  /usr/share/doc/cdcsync/prometheus/cdcsync-rules.yml /usr/share/doc/cdcsync/grafana/cdcsync-dashboard.json; do
  grep -qx "$f" "$WORK/contents" || fail "not in the package: $f"
done
grep -v '^/usr/\|^/etc/\|^/$' "$WORK/contents" && fail "the package installs outside /usr and /etc"
dpkg-deb -x "$deb" "$WORK/x"
grep -rq "$WORK" "$WORK/x" && fail "the staging directory leaked into a packaged file"
grep -qx "ExecStart=/usr/bin/cdcsync -c /etc/cdcsync/cdcsync.conf run" "$WORK/x/usr/lib/systemd/system/cdcsync.service" || fail "the packaged unit's ExecStart"
cmp -s "$SRCDIR/conf/cdcsync.conf" "$WORK/x/etc/cdcsync/cdcsync.conf" || fail "the packaged conf is not conf/cdcsync.conf"
log "built $(basename "$deb"): Depends: $depends"

# ---- what the machine has, kept ----
case "$(pkg_status)" in
  *installed* | *config-files*) fail "a cdcsync package is already on this machine ($(pkg_status)): this test installs and purges its own; remove that one first (dpkg -P cdcsync) or run the test elsewhere" ;;
esac
local_sums() { find /usr/local -path /usr/local/src -prune -o -name '*cdcsync*' -type f -print0 2>/dev/null | sort -z | xargs -0 -r sha256sum; }
local_sums >"$WORK/local.before"
had_user=$(getent passwd cdcsync || true)
SAVED=""
if [ -e /etc/cdcsync ]; then
  SAVED=$WORK/etc-cdcsync.saved
  (cd /etc/cdcsync && find . -type f -print0 | sort -z | xargs -0 -r sha256sum) >"$WORK/etc.before"
  mv /etc/cdcsync "$SAVED"
  log "moved /etc/cdcsync aside for the test"
fi
INSTALLED=""
restore() {
  if [ -n "$INSTALLED" ]; then dpkg_do -P cdcsync || log "could not purge cdcsync: $(cat "$WORK/dpkg.out")"; fi
  if [ -n "$SAVED" ] && [ -e "$SAVED" ]; then
    rm -rf /etc/cdcsync
    mv "$SAVED" /etc/cdcsync
  fi
  if [ -z "$had_user" ] && getent passwd cdcsync >/dev/null; then
    userdel cdcsync 2>/dev/null || true
    getent group cdcsync >/dev/null && groupdel cdcsync 2>/dev/null || true
  fi
}
# errexit is off in the trap: (exit $rc) only hands the test's status on to cleanup.
trap 'rc=$?; set +e; restore; (exit $rc); cleanup' EXIT

# ---- dpkg -i ----
INSTALLED=1
dpkg_do -i "$deb" || fail "dpkg -i failed"
[ "$(dpkg-query -W -f='${Status} ${Version}' cdcsync)" = "install ok installed $ver-1" ] || fail "after dpkg -i: $(pkg_status)"
[ "$(/usr/bin/cdcsync --version)" = "cdcsync $ver" ] || fail "/usr/bin/cdcsync --version: $(/usr/bin/cdcsync --version 2>&1)"
IFS=: read -r _ _ uid gid _ home shell < <(getent passwd cdcsync) || fail "no cdcsync user after dpkg -i"
# (a cdcsync user the machine had is kept as it is: systemd-sysusers never changes a user)
[ -n "$had_user" ] || { [ "$home" = /var/lib/cdcsync ] && [ "$uid" -lt 1000 ] && case "$shell" in */nologin | */false) true ;; *) false ;; esac; } ||
  fail "cdcsync user: uid $uid home $home shell $shell"
[ "$(stat -c '%U:%G %a' /etc/cdcsync)" = "root:cdcsync 750" ] || fail "/etc/cdcsync is $(stat -c '%U:%G %a' /etc/cdcsync)"
[ "$(stat -c '%U:%G %a' /etc/cdcsync/cdcsync.conf)" = "root:cdcsync 640" ] || fail "the conf is $(stat -c '%U:%G %a' /etc/cdcsync/cdcsync.conf)"
# (-M: a cdcsync installed under /usr/local would come first in man's default path)
[ "$(man -M /usr/share/man -w 1 cdcsync)" = /usr/share/man/man1/cdcsync.1 ] &&
  [ "$(man -M /usr/share/man -w 5 cdcsync.conf)" = /usr/share/man/man5/cdcsync.conf.5 ] ||
  fail "man does not find the installed pages: $(man -M /usr/share/man -w cdcsync 2>&1) $(man -M /usr/share/man -w 5 cdcsync.conf 2>&1)"
systemd-analyze verify /usr/lib/systemd/system/cdcsync.service >"$WORK/verify.out" 2>&1 || { cat "$WORK/verify.out" >&2; fail "systemd-analyze verify"; }
# Installed, not enabled, not started (nothing runs as the service's user).
[ "$(systemctl is-enabled cdcsync.service 2>&1)" = disabled ] || fail "after dpkg -i the unit is $(systemctl is-enabled cdcsync.service 2>&1), not disabled"
[ -n "$had_user" ] || ! pgrep -u cdcsync >/dev/null || fail "something runs as cdcsync after dpkg -i: $(pgrep -a -u cdcsync)"
log "installed: /usr/bin/cdcsync $ver, user cdcsync ($uid:$gid), /etc/cdcsync root:cdcsync 750, unit disabled"

# check of the installed conf, where every key is commented out: exactly that it has no pipeline.
want="/etc/cdcsync/cdcsync.conf:1: no [pipeline.NAME] section — define at least one pipeline (man cdcsync.conf shows the keys and an example)"
for who in root cdcsync; do
  rc=0
  runuser -u "$who" -- /usr/bin/cdcsync -c /etc/cdcsync/cdcsync.conf check >"$WORK/check.out" 2>&1 || rc=$?
  [ "$rc" = 2 ] && [ "$(cat "$WORK/check.out")" = "$want" ] || fail "check as $who: rc=$rc: $(cat "$WORK/check.out")"
done
log "check as root and as cdcsync: $(cat "$WORK/check.out") (rc 2)"

# A reinstall keeps the operator's edit of the conffile, without a prompt or a .dpkg-* file.
echo "; edited by the operator" >>/etc/cdcsync/cdcsync.conf
dpkg_do -i "$deb" </dev/null || fail "reinstall failed"
grep -q "edited by the operator" /etc/cdcsync/cdcsync.conf || fail "a reinstall overwrote the operator's conf"
[ -z "$(ls /etc/cdcsync | grep -v '^cdcsync.conf$')" ] || fail "a reinstall left $(ls /etc/cdcsync)"

# ---- dpkg -r: everything but the conffile goes; an enabled unit is disabled first ----
systemctl enable cdcsync.service >/dev/null 2>&1 || fail "systemctl enable (offline) failed"
[ -L /etc/systemd/system/multi-user.target.wants/cdcsync.service ] || fail "systemctl enable made no link"
grep -v '/$' "$WORK/contents" | grep -vx /etc/cdcsync/cdcsync.conf | while read -r f; do if [ ! -d "$f" ]; then echo "$f"; fi; done >"$WORK/files"
[ -s "$WORK/files" ] || fail "no file list"
dpkg_do -r cdcsync || fail "dpkg -r failed"
[ "$(pkg_status)" = "deinstall ok config-files" ] || fail "after dpkg -r: $(pkg_status)"
left=$(while read -r f; do if [ -e "$f" ]; then echo "$f"; fi; done <"$WORK/files")
[ -z "$left" ] || fail "dpkg -r left: $left"
[ -f /etc/cdcsync/cdcsync.conf ] || fail "dpkg -r removed the conffile"
[ ! -e /etc/systemd/system/multi-user.target.wants/cdcsync.service ] || fail "dpkg -r left the unit enabled"
log "dpkg -r: $(wc -l <"$WORK/files") files gone, the conf kept, the unit disabled"

# ---- dpkg -P: the conf and /etc/cdcsync go too; the user stays (as Debian packages do) ----
dpkg_do -P cdcsync || fail "dpkg -P failed"
INSTALLED=""
[ -z "$(pkg_status)" ] || [ "$(pkg_status)" = "unknown ok not-installed" ] || fail "after dpkg -P: $(pkg_status)"
[ ! -e /etc/cdcsync ] || fail "dpkg -P left /etc/cdcsync: $(ls -la /etc/cdcsync)"
getent passwd cdcsync >/dev/null || fail "dpkg -P removed the cdcsync user (files it owned elsewhere would be orphaned)"
log "dpkg -P: the conf and /etc/cdcsync gone"

restore
SAVED=""
local_sums >"$WORK/local.after"
diff "$WORK/local.before" "$WORK/local.after" >&2 || fail "a cdcsync under /usr/local changed"
if [ -f "$WORK/etc.before" ]; then
  diff "$WORK/etc.before" <(cd /etc/cdcsync && find . -type f -print0 | sort -z | xargs -0 -r sha256sum) >&2 || fail "/etc/cdcsync was not put back as it was"
fi
finish
