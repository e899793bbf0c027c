#!/usr/bin/env bash
# The shipped systemd files: the unit passes `systemd-analyze verify`, its offline security
# exposure stays at or below 2.0 ("OK"), and the sysusers file creates the cdcsync user.
set -euo pipefail
SRCDIR=${SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
CDCSYNC=${CDCSYNC:?CDCSYNC must name the built binary}
tmp=$(mktemp -d /tmp/cdcsync-unit-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# verify wants ExecStart's binary to exist: check a copy that runs the built one.
sed "s|/usr/bin/cdcsync|$CDCSYNC|" "$SRCDIR/systemd/cdcsync.service" > "$tmp/cdcsync.service"
systemd-analyze verify "$tmp/cdcsync.service"

out=$(systemd-analyze security --offline=true "$tmp/cdcsync.service" 2>&1)
score=$(printf '%s\n' "$out" | sed -n 's/.*Overall exposure level for cdcsync.service: \([0-9.]*\).*/\1/p')
[ -n "$score" ] || { printf 'no exposure score in:\n%s\n' "$out" >&2; exit 1; }
echo "exposure: $score"
awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }' || { echo "exposure $score > 2.0" >&2; exit 1; }

mkdir -p "$tmp/root/etc"
systemd-sysusers --root="$tmp/root" "$SRCDIR/systemd/cdcsync.sysusers" 2>/dev/null
grep -Eq '^cdcsync:x:[0-9]+:[0-9]+:cdcsync CDC service:/var/lib/cdcsync:/usr/sbin/nologin$' "$tmp/root/etc/passwd" \
        || { echo "sysusers did not create the cdcsync user as expected" >&2; cat "$tmp/root/etc/passwd" >&2; exit 1; }
echo "1 passed, 0 failed"
