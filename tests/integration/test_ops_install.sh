#!/usr/bin/env bash
# `cmake --install` lays out what a package or an admin needs: bin/cdcsync, the unit (pointing at
# the installed binary) under lib/systemd/system, sysusers.d and tmpfiles.d files, the documented
# conf as share/doc/cdcsync/cdcsync.conf.example, the man pages under share/man, and
# etc/cdcsync/cdcsync.conf only when absent.
# The installed unit passes `systemd-analyze verify`; with DESTDIR and prefix /usr the tree is the
# packaging one (/usr/bin, /usr/lib/systemd/system, /etc/cdcsync), and sysusers + tmpfiles make
# /etc/cdcsync readable by the service's group only.
source "$(dirname "$0")/lib.sh"

BUILDDIR=${BUILDDIR:-$(dirname "$CDCSYNC")}
ROOT=$WORK/root
cmake --install "$BUILDDIR" --prefix "$ROOT" >"$WORK/install1.out" 2>&1 || { cat "$WORK/install1.out" >&2; fail "cmake --install failed"; }

for f in bin/cdcsync lib/systemd/system/cdcsync.service lib/sysusers.d/cdcsync.conf lib/tmpfiles.d/cdcsync.conf \
  share/doc/cdcsync/cdcsync.conf.example share/doc/cdcsync/examples/pg-to-pg.conf etc/cdcsync/cdcsync.conf \
  share/man/man1/cdcsync.1 share/man/man5/cdcsync.conf.5 share/doc/cdcsync/prometheus/cdcsync-rules.yml \
  share/doc/cdcsync/grafana/cdcsync-dashboard.json; do
  [ -f "$ROOT/$f" ] || fail "not installed: $f"
done
cmp -s "$SRCDIR/man/cdcsync.conf.5" "$ROOT/share/man/man5/cdcsync.conf.5" || fail "the installed cdcsync.conf(5) is not man/cdcsync.conf.5"
[ "$(man -M "$ROOT/share/man" -w 5 cdcsync.conf)" = "$ROOT/share/man/man5/cdcsync.conf.5" ] || fail "man does not find the installed cdcsync.conf(5)"
[ "$(man -M "$ROOT/share/man" -w 1 cdcsync)" = "$ROOT/share/man/man1/cdcsync.1" ] || fail "man does not find the installed cdcsync(1)"
[ -x "$ROOT/bin/cdcsync" ] || fail "bin/cdcsync is not executable"
"$ROOT/bin/cdcsync" --version | grep -q '^cdcsync [0-9]' || fail "the installed binary does not run"
cmp -s "$SRCDIR/conf/cdcsync.conf" "$ROOT/share/doc/cdcsync/cdcsync.conf.example" || fail "the example is not the documented conf"
cmp -s "$SRCDIR/systemd/cdcsync.sysusers" "$ROOT/lib/sysusers.d/cdcsync.conf" || fail "sysusers file differs"
[ "$(stat -c %a "$ROOT/etc/cdcsync/cdcsync.conf")" = 640 ] || fail "etc conf is not mode 640"
[ "$(stat -c %a "$ROOT/lib/systemd/system/cdcsync.service")" = 644 ] || fail "unit is not mode 644"

unit=$ROOT/lib/systemd/system/cdcsync.service
grep -qx "ExecStart=$ROOT/bin/cdcsync -c /etc/cdcsync/cdcsync.conf run" "$unit" || fail "ExecStart does not name the installed binary: $(grep ExecStart "$unit")"
grep -q "^Documentation=file:$ROOT/share/doc/cdcsync/" "$unit" || fail "Documentation= does not point into the installed docs"
# Everything else is the shipped unit, unchanged.
diff <(grep -v '^ExecStart=\|^Documentation=' "$SRCDIR/systemd/cdcsync.service") <(grep -v '^ExecStart=\|^Documentation=' "$unit") >&2 || fail "the installed unit differs from the shipped one"
systemd-analyze verify "$unit" >"$WORK/verify.out" 2>&1 || { cat "$WORK/verify.out" >&2; fail "systemd-analyze verify rejects the installed unit"; }
log "installed unit verified"

# The default conf is the reference with everything commented out: the service refuses it with a
# message that says what to do, rather than starting with nothing to do.
rc=0
"$ROOT/bin/cdcsync" -c "$ROOT/etc/cdcsync/cdcsync.conf" check >"$WORK/check.out" 2>&1 || rc=$?
[ "$rc" = 2 ] && grep -q "define at least one pipeline" "$WORK/check.out" || fail "default conf: rc=$rc $(cat "$WORK/check.out")"

# A second install keeps the operator's conf.
echo "; edited by the operator" >>"$ROOT/etc/cdcsync/cdcsync.conf"
cmake --install "$BUILDDIR" --prefix "$ROOT" >"$WORK/install2.out" 2>&1 || fail "second install failed"
grep -q "edited by the operator" "$ROOT/etc/cdcsync/cdcsync.conf" || fail "a reinstall overwrote /etc/cdcsync/cdcsync.conf"
grep -q "Keeping: .*etc/cdcsync/cdcsync.conf" "$WORK/install2.out" || fail "the reinstall does not say it kept the conf"

# Packaging: DESTDIR with prefix /usr.
DEST=$WORK/dest
mkdir -p "$DEST/etc"
DESTDIR=$DEST cmake --install "$BUILDDIR" --prefix /usr >"$WORK/install3.out" 2>&1 || { cat "$WORK/install3.out" >&2; fail "DESTDIR install failed"; }
for f in usr/bin/cdcsync usr/lib/systemd/system/cdcsync.service usr/lib/sysusers.d/cdcsync.conf \
  usr/lib/tmpfiles.d/cdcsync.conf usr/share/doc/cdcsync/cdcsync.conf.example etc/cdcsync/cdcsync.conf; do
  [ -f "$DEST/$f" ] || fail "not installed under DESTDIR: $f"
done
[ ! -e "$DEST/usr/etc" ] || fail "prefix /usr installed a conf under /usr/etc"
grep -qx "ExecStart=/usr/bin/cdcsync -c /etc/cdcsync/cdcsync.conf run" "$DEST/usr/lib/systemd/system/cdcsync.service" || fail "DESTDIR leaked into the unit"
grep -rq "$DEST" "$DEST/usr/lib" && fail "DESTDIR leaked into an installed file"
# verify wants ExecStart's binary to exist on this host: check a copy that names the staged one.
sed "s|ExecStart=/usr/bin/cdcsync|ExecStart=$DEST/usr/bin/cdcsync|" "$DEST/usr/lib/systemd/system/cdcsync.service" >"$WORK/cdcsync.service"
systemd-analyze verify "$WORK/cdcsync.service" >"$WORK/verify2.out" 2>&1 || { cat "$WORK/verify2.out" >&2; fail "systemd-analyze verify rejects the packaged unit"; }
systemd-sysusers --root="$DEST" >/dev/null 2>&1 || fail "systemd-sysusers failed on the installed sysusers.d"
systemd-tmpfiles --root="$DEST" --create cdcsync.conf >"$WORK/tmpfiles.out" 2>&1 || { cat "$WORK/tmpfiles.out" >&2; fail "systemd-tmpfiles failed"; }
gid=$(awk -F: '$1 == "cdcsync" { print $3 }' "$DEST/etc/group")
[ -n "$gid" ] || fail "no cdcsync group after sysusers"
[ "$(stat -c '%u:%g %a' "$DEST/etc/cdcsync")" = "0:$gid 750" ] || fail "/etc/cdcsync is $(stat -c '%u:%g %a' "$DEST/etc/cdcsync"), expected root:cdcsync 750"
[ "$(stat -c '%u:%g %a' "$DEST/etc/cdcsync/cdcsync.conf")" = "0:$gid 640" ] || fail "the conf is not root:cdcsync 640"
# A /usr/local install: the unit where systemd looks for local units, the conf where it reads it.
LOCAL=$WORK/local
DESTDIR=$LOCAL cmake --install "$BUILDDIR" --prefix /usr/local >"$WORK/install4.out" 2>&1 || fail "DESTDIR /usr/local install failed"
[ -f "$LOCAL/usr/local/lib/systemd/system/cdcsync.service" ] && [ -f "$LOCAL/etc/cdcsync/cdcsync.conf" ] || fail "a /usr/local install misplaces the unit or the conf"
grep -qx "ExecStart=/usr/local/bin/cdcsync -c /etc/cdcsync/cdcsync.conf run" "$LOCAL/usr/local/lib/systemd/system/cdcsync.service" || fail "the /usr/local unit does not run /usr/local/bin/cdcsync"
log "packaged tree: $(cd "$DEST" && find . -type f | grep -v '^./etc/\(passwd\|group\|shadow\|gshadow\|.pwd.lock\)' | sort | tr '\n' ' ')"
finish
