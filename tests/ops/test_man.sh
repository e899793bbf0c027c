#!/usr/bin/env bash
# The manual pages: cdcsync(1) and cdcsync.conf(5) pass mandoc's lint (style level included) and
# groff's warnings, and cdcsync(1) documents every command and option that `cdcsync --help` and
# the README's "Command line" name, and the exit codes the README gives. (cdcsync.conf(5) is
# generated from the key tables and kept equal to them by tests/unit/test_conf.c.)
source "$(dirname "$0")/../integration/lib.sh"

pages=("$SRCDIR/man/cdcsync.1" "$SRCDIR/man/cdcsync.conf.5")
for page in "${pages[@]}"; do
  [ -s "$page" ] || fail "missing: $page"
  rc=0
  mandoc -T lint -W style "$page" >"$WORK/lint.out" 2>&1 || rc=$?
  [ "$rc" = 0 ] && [ ! -s "$WORK/lint.out" ] || { cat "$WORK/lint.out" >&2; fail "mandoc -T lint: $(basename "$page") (rc=$rc)"; }
  groff -ww -man -z "$page" >"$WORK/groff.out" 2>&1 || fail "groff fails on $(basename "$page")"
  [ ! -s "$WORK/groff.out" ] || { cat "$WORK/groff.out" >&2; fail "groff -ww warns on $(basename "$page")"; }
done
log "mandoc -T lint -W style and groff -ww: clean"

# What the page says, as plain text (no roff escapes, no hyphenation).
MANWIDTH=200 man -l "$SRCDIR/man/cdcsync.1" 2>/dev/null | col -b >"$WORK/cdcsync.1.txt"
grep -q "^NAME" "$WORK/cdcsync.1.txt" || fail "man cannot render cdcsync.1"
section() { # TITLE — the lines of one section of the rendered page
  awk -v t="$1" '/^[A-Z]/ { on = ($0 == t) ; next } on' "$WORK/cdcsync.1.txt"
}

# Every command and option of --help and of the README's "Command line" block.
"$CDCSYNC" --help >"$WORK/help.txt"
awk '/^## Command line/ { on = 1; next } /^## / { on = 0 } on' "$SRCDIR/README.md" >"$WORK/readme.txt"
[ -s "$WORK/readme.txt" ] || fail "no \"## Command line\" section in README.md"
for src in help readme; do
  for opt in $(grep -o -- '--[a-z][a-z-]*' "$WORK/$src.txt" | sort -u) -c; do
    section OPTIONS | grep -q -- "^ *$opt\b\|, $opt\b" || fail "cdcsync(1) OPTIONS lacks $opt (named by $src)"
  done
  for cmd in $(grep -o 'cdcsync \[-c FILE\] \[\?[a-z]*' "$WORK/$src.txt" | awk '{print $NF}' | tr -d '[' | sort -u); do
    section COMMANDS | grep -q "^ *$cmd\b" || fail "cdcsync(1) COMMANDS lacks $cmd (named by $src)"
    grep -q "^ *cdcsync .*\b$cmd\b" <(section SYNOPSIS) || fail "cdcsync(1) SYNOPSIS lacks $cmd"
  done
done
# The long options main() accepts (its getopt_long table) are exactly those the page lists.
grep -o '{"[a-z][a-z-]*", *[a-z_]*_argument' "$SRCDIR/engine/main.c" | sed 's/{"\([^"]*\)".*/--\1/' | sort -u >"$WORK/accepted.txt"
[ -s "$WORK/accepted.txt" ] || fail "no getopt_long table found in engine/main.c"
section OPTIONS | grep -o -- '--[a-z][a-z-]*' | sort -u >"$WORK/documented.txt"
diff "$WORK/accepted.txt" "$WORK/documented.txt" >&2 || fail "cdcsync(1) OPTIONS and main()'s options differ (< accepted, > documented)"
# Exit codes as the README gives them ("Exit codes: 0 ok, 1 runtime failure, 2 bad usage or bad conf").
tr "\n" " " <"$WORK/readme.txt" | grep -q "Exit codes: 0 ok, 1 runtime failure, 2 bad usage or bad conf" || fail "README's exit codes changed: update this test and cdcsync(1)"
for code in 0 1 2; do
  section "EXIT STATUS" | grep -q "^ *$code " || fail "cdcsync(1) EXIT STATUS lacks $code"
done
section "EXIT STATUS" | grep -A2 "^ *1 " | grep -qi "runtime failure" || fail "cdcsync(1): exit 1 is not the runtime failure"
section "EXIT STATUS" | grep -A2 "^ *2 " | grep -qi "bad usage or a bad conf" || fail "cdcsync(1): exit 2 is not bad usage or conf"
# The default conf path the program uses.
grep -q "defaults to /etc/cdcsync/cdcsync.conf" "$WORK/help.txt" && section OPTIONS | grep -q "Default: /etc/cdcsync/cdcsync.conf" || fail "default conf path differs between --help and cdcsync(1)"
# The version in the pages' footers is the program's.
ver=$("$CDCSYNC" --version | awk '{print $2}')
for page in "${pages[@]}"; do
  grep -q "^\.TH .* \"cdcsync $ver\"" "$page" || fail "$(basename "$page") does not say cdcsync $ver in its .TH"
done
log "cdcsync(1) names every command and option of --help and the README, exit codes 0, 1, 2"
finish
