#!/bin/bash
# Run by sh (as the README's quick start does): start again under bash.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# test.sh — build tlsfilter and run its test suite, from a fresh clone.
#
#   bash scripts/test.sh
#
# Installs the dependencies (scripts/deps.sh, as root), regenerates the
# build system, configures (with --enable-werror when CI=true), builds with
# make -j2 and runs make check. Then prints one line summed over every
# test's .trs file:  N passed, N failed, N skipped
# (PASS/XFAIL count as passed, FAIL/XPASS/ERROR as failed, SKIP as skipped;
# a TAP test contributes one result per "ok"/"not ok" line). Exits non-zero
# when the build or any test failed.
# Environment: MAKE_JOBS (default 2), CONFIGURE_FLAGS (extra flags).
set -u
cd "$(dirname "$0")/.." || exit 1
jobs=${MAKE_JOBS:-2}

step() { printf '\n=== %s\n' "$*"; }

summary() {
	local pass=0 fail=0 skip=0 f
	while IFS= read -r f; do
		while read -r _ res _; do
			case $res in
			PASS | XFAIL) pass=$((pass + 1)) ;;
			FAIL | XPASS | ERROR) fail=$((fail + 1)) ;;
			SKIP) skip=$((skip + 1)) ;;
			esac
		done < <(grep '^:test-result:' "$f")
	done < <(find . -name '*.trs' -newer "$stamp" 2>/dev/null | sort)
	fail=$((fail + extra_fail))
	echo
	echo "$pass passed, $fail failed, $skip skipped"
	[ "$fail" -eq 0 ]
}

extra_fail=0
stamp=$(mktemp)
trap 'rm -f "$stamp"' EXIT

if [ "$(id -u)" -eq 0 ]; then
	step "dependencies"
	sh scripts/deps.sh || { echo "deps.sh failed"; extra_fail=1; summary; exit 1; }
fi

flags=${CONFIGURE_FLAGS:-}
[ "${CI:-}" = true ] && flags="$flags --enable-werror"

step "autogen"
./autogen.sh || { extra_fail=1; summary; exit 1; }
step "configure $flags"
# shellcheck disable=SC2086
./configure $flags || { extra_fail=1; summary; exit 1; }
step "make -j$jobs"
make -j"$jobs" || { extra_fail=1; summary; exit 1; }
step "make check"
start=$(date +%s)
make -j"$jobs" check
rc=$?
echo "make check took $(($(date +%s) - start)) s"
if [ $rc -ne 0 ]; then
	# show the logs of what failed (test-suite.log has them all)
	[ -f test-suite.log ] && sed -n '1,200p' test-suite.log
	if ! find . -name '*.trs' -newer "$stamp" | grep -q .; then
		extra_fail=1 # make check failed before any test ran
	fi
fi
summary && [ $rc -eq 0 ]
