#!/bin/bash
# sanitize.sh — the test suite under AddressSanitizer + UBSan, and under
# valgrind memcheck (issue 7). Each pass ends with one "PASS: ..." or
# "FAIL: ..." line; the script exits non-zero when either failed.
#
#   bash scripts/sanitize.sh [asan|valgrind|all]      (default: all)
#
# Both passes build in a scratch copy of the source tree (git ls-files: the
# checkout may be configured in-tree, which makes VPATH builds impossible),
# under $SANITIZE_DIR (default: a mktemp -d directory, removed at the end
# unless SANITIZE_KEEP=1).
#
# asan: ./configure --enable-sanitizers (CC=${CC:-clang}), make check with
#   ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:abort_on_error=1:log_path=DIR/report
#   UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:log_path=DIR/report
#   Reports go to files, not to fd 2: tlsfilter points fd 2 at /dev/null
#   (under xinetd fd 2 is the client's socket), so a report on stderr would
#   be lost. The pass fails if a test fails OR any report file exists. A
#   self-test first checks that an ASan and a UBSan report, with fd 2 on
#   /dev/null, do reach their files (with gcc 12, UBSan combined with ASan
#   ignores log_path and writes to stderr only: hence clang). DIR
#   is world-writable (tlsfilter drops to nobody in some tests). A process
#   that chroots cannot reach DIR; its report is lost, but halt_on_error
#   still kills it and its test fails on the exit status.
#   Leaks are left to the valgrind pass (detect_leaks=0): LeakSanitizer
#   stops the process with ptrace and reads /proc/self/maps at exit, which
#   fails in a process that is non-dumpable (tlsfilter always is, it holds
#   the private key), has changed its uid, or has chrooted (privs.test,
#   conffile.test): it would report its own failure, not a leak.
#   All tests but static-analysis, fuzz (they do not run tlsfilter),
#   backends (it bounds VmRSS to 16 MiB and a timeout's overshoot, which
#   ASan's shadow memory and slowness break) and callgrind-budget (it
#   counts the instructions of a normal build).
#   The seccomp sandbox stays on: a sanitizer build's filters add the few
#   calls the sanitizer runtime makes (its report files, its allocator;
#   src/sandbox-gen.c decides at compile time), the production lists are
#   not changed.
# valgrind: a plain build (-O1 -g) with --enable-test-hooks, every tlsfilter
#   the tests start run with TLSFILTER_TEST_NO_SANDBOX=1 (a test-hooks-only
#   variable: memcheck runs inside the process and makes system calls of
#   its own, which the seccomp filter would kill; the variable makes the
#   program do all of the sandbox but load the filter, and no production
#   build has it) as
#   valgrind --tool=memcheck --error-exitcode=99 --leak-check=full
#     --errors-for-leak-kinds=definite --child-silent-after-fork=yes
#     --log-file=DIR/vg.%p
#   through tests/lib.sh's TLSFILTER_WRAPPER (a script that execs valgrind
#   on the real binary). The pass fails if a log says anything but
#   "ERROR SUMMARY: 0 errors" (a crash is a "Process terminating" report);
#   failed test results are listed but do not fail it: under memcheck's
#   20-50x slowdown a few duration bounds (exec, failures) do not hold. A
#   subset of the tests: those that find tlsfilter's process by its name
#   (hostile, backends, flood, privs: /proc/PID/comm is valgrind's
#   there), that run ldd on it (wrappers) or compare its path (conffile,
#   service-files), that analyse or fuzz the source rather than
#   run it (static-analysis, fuzz), testssl (a 90 s scan; run by the
#   asan pass), proxy-haproxy (HAProxy's health checks and timeouts mark a
#   server that memcheck slows 20-50x down, so its sessions fail: seen in
#   CI; the PROXY paths run under memcheck in proxy-send, proxy-accept,
#   proxy-parse and proxy-mail), sandbox (it looks at the filter, which
#   this pass does not load), listener (200 sessions at once, each a fork
#   of a memcheck process, and an strace of the listener; the listener's
#   paths run under memcheck in listener-mail) and callgrind-budget
#   (valgrind under valgrind) are left out; the rest run the program through every
#   launcher, both TLS versions, client certificates, SNI, resumption,
#   exec and client modes and the backends' failure paths under memcheck.
set -u
mode=${1:-all}
case $mode in
asan | valgrind | all) ;;
*)
	echo "usage: $0 [asan|valgrind|all]" >&2
	exit 64
	;;
esac
top=$(cd "$(dirname "$0")/.." && pwd)
jobs=${MAKE_JOBS:-2}
work=${SANITIZE_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/tlsf-sanitize.XXXXXX")}
mkdir -p "$work"
# mktemp -d makes it 0700: privs.test runs the built tlsfilter as nobody.
chmod 755 "$work"
[ "${SANITIZE_KEEP:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT
rc=0

# copy_tree DEST: the checkout's files (tracked and new, not ignored) under DEST.
copy_tree() {
	mkdir -p "$1" &&
		(cd "$top" && git ls-files -co --exclude-standard -z | tar --null -T - -cf -) |
		tar -xf - -C "$1" && (cd "$1" && ./autogen.sh >/dev/null 2>&1)
}

# build DIR CONFIGURE-ARGS...: configure and build a copy in DIR.
build() {
	local d=$1
	shift
	copy_tree "$d" || return 1
	(cd "$d" && ./configure -q "$@" >configure.out 2>&1 && make -j"$jobs" >make.out 2>&1 &&
		make -j"$jobs" check TESTS= >>make.out 2>&1) || {
		tail -n 30 "$d/configure.out" "$d/make.out" 2>/dev/null
		return 1
	}
}

# tests_of DIR: the TESTS list of the build in DIR.
tests_of() {
	make -s -C "$1" -f Makefile -f - print-tests <<<'print-tests: ; @echo $(TESTS)' 2>/dev/null
}

# without LIST NAME...: LIST minus the tests/NAME.test given.
without() {
	local list=$1 t n keep out=
	shift
	for t in $list; do
		keep=1
		for n in "$@"; do
			[ "$t" = "tests/$n.test" ] && keep=0
		done
		[ $keep = 1 ] && out="$out $t"
	done
	echo "$out"
}

# summary DIR: "N passed, N failed" over DIR's .trs files.
summary() {
	local pass fail
	pass=$(cat "$1"/tests/*.trs 2>/dev/null | grep -cE '^:test-result: (PASS|XFAIL|SKIP)')
	fail=$(cat "$1"/tests/*.trs 2>/dev/null | grep -cE '^:test-result: (FAIL|XPASS|ERROR)')
	echo "$pass passed, $fail failed"
	[ "$fail" -eq 0 ]
}

SAN_FLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
asan_opts="detect_leaks=0:halt_on_error=1:abort_on_error=1"
ubsan_opts="halt_on_error=1:print_stacktrace=1"

asan_pass() {
	local d="$work/asan" logs="$work/asan-reports" start list res ok=1 cc=${CC:-clang}
	start=$(date +%s)
	echo "=== asan: build with --enable-sanitizers (CC=$cc) in $d"
	mkdir -p "$logs" && chmod 1777 "$logs"
	if ! build "$d" --enable-sanitizers CC="$cc"; then
		echo "FAIL: asan: the build failed"
		return 1
	fi
	# Reports must reach a file: check that they do, with fd 2 on /dev/null,
	# for a heap overflow (ASan) and a signed overflow (UBSan).
	printf '%s\n' '#include <limits.h>' '#include <stdlib.h>' \
		'int main(int c, char **v) { int *p = malloc(4), x = INT_MAX; (void)v;' \
		'  if (c > 1) return p[1]; return (x + c) & 1; }' >"$work/selftest.c"
	mkdir -p "$work/selftest" &&
		"$cc" $SAN_FLAGS -g -o "$work/selftest/prog" "$work/selftest.c" || return 1
	# One log_path for both: in clang's combined runtime the last one parsed
	# (UBSAN_OPTIONS') wins for ASan's reports too. Two runs, two files.
	(
		export ASAN_OPTIONS="$asan_opts:log_path=$work/selftest/report"
		export UBSAN_OPTIONS="$ubsan_opts:log_path=$work/selftest/report"
		"$work/selftest/prog" x
		"$work/selftest/prog"
	) 2>/dev/null # the reports go to their files; bash's "Aborted" nowhere
	if [ "$(ls "$work"/selftest/report.* 2>/dev/null | wc -l)" -ne 2 ] ||
		! grep -q AddressSanitizer "$work"/selftest/report.* ||
		! grep -q 'runtime error' "$work"/selftest/report.*; then
		echo "FAIL: asan: with $cc, an ASan or UBSan report with fd 2 on /dev/null did not reach its log_path file"
		return 1
	fi
	# backends.test bounds tlsfilter's VmRSS (16 MiB) and a timeout's
	# overshoot, which ASan's shadow memory and slowness break.
	list=$(without "$(tests_of "$d")" static-analysis fuzz backends callgrind-budget)
	echo "=== asan: make check ($(echo $list | wc -w) tests)"
	(cd "$d" && ASAN_OPTIONS="$asan_opts:log_path=$logs/report" \
		UBSAN_OPTIONS="$ubsan_opts:log_path=$logs/report" \
		make -j"$jobs" check TESTS="$list" >check.out 2>&1)
	res=$(summary "$d") || ok=0
	grep -hE '^(FAIL|ERROR|XPASS):' "$d/check.out" | head -n 30
	if ls "$logs"/* >/dev/null 2>&1; then
		ok=0
		echo "--- sanitizer reports:"
		for f in "$logs"/*; do
			echo "--- $f"
			head -n 40 "$f"
		done
	fi
	if [ $ok = 1 ]; then
		echo "PASS: asan: $res, no sanitizer report ($(($(date +%s) - start)) s)"
	else
		echo "FAIL: asan: $res, $(ls "$logs" | wc -l) sanitizer report(s) ($(($(date +%s) - start)) s)"
		return 1
	fi
}

valgrind_pass() {
	local d="$work/valgrind" logs="$work/valgrind-logs" start list res ok=1 f bad=0 n=0
	start=$(date +%s)
	if ! command -v valgrind >/dev/null 2>&1; then
		echo "FAIL: valgrind: valgrind is not installed"
		return 1
	fi
	echo "=== valgrind: plain build in $d"
	mkdir -p "$logs" && chmod 1777 "$logs"
	if ! build "$d" CFLAGS="-O1 -g" --enable-test-hooks; then
		echo "FAIL: valgrind: the build failed"
		return 1
	fi
	# The wrapper carries everything itself: xinetd passes tlsfilter no
	# environment of the test's.
	{
		echo '#!/bin/sh'
		echo 'TLSFILTER_TEST_NO_SANDBOX=1; export TLSFILTER_TEST_NO_SANDBOX'
		printf 'exec valgrind --tool=memcheck --error-exitcode=99 --leak-check=full '
		printf -- '--errors-for-leak-kinds=definite --show-leak-kinds=definite '
		printf -- '--child-silent-after-fork=yes '
		printf -- '--log-file=%s/vg.%%p %s/src/tlsfilter "$@"\n' "$logs" "$d"
	} >"$d/tlsfilter-valgrind"
	chmod 755 "$d/tlsfilter-valgrind"
	list=$(without "$(tests_of "$d")" static-analysis fuzz testssl hostile backends flood \
		privs wrappers conffile service-files proxy-haproxy sandbox callgrind-budget listener)
	echo "=== valgrind: make check ($(echo $list | wc -w) tests)"
	(cd "$d" && TLSFILTER_WRAPPER="$d/tlsfilter-valgrind" make -j"$jobs" check TESTS="$list" \
		>check.out 2>&1)
	# Test results are informational here: memcheck slows tlsfilter 20-50
	# times, and a few assertions bound a duration (exec's early exit under
	# a second, failures' 1 s handshake timeout); what fails the pass is a
	# memcheck report.
	res=$(summary "$d") || res="$res (informational: timing bounds under memcheck)"
	grep -hE '^(FAIL|ERROR|XPASS):' "$d/check.out" | head -n 30
	# Each run ends with "ERROR SUMMARY: N errors". A log without one is a
	# forked child that exec'd a program (-l) or was killed by a test: it
	# must hold no report either.
	for f in "$logs"/vg.*; do
		[ -f "$f" ] || continue
		if grep -q 'ERROR SUMMARY: ' "$f"; then
			n=$((n + 1))
			grep -q 'ERROR SUMMARY: 0 errors' "$f" && continue
		elif ! grep -qE '^==[0-9]+== +(Invalid|Conditional|Use of|Syscall param|Mismatched|Source and|Process terminating|.*definitely lost)' "$f"; then
			continue
		fi
		bad=$((bad + 1))
		[ $bad -le 5 ] && { echo "--- $f"; grep -vE '^==[0-9]+== *$' "$f" | head -n 40; }
	done
	[ $n -gt 0 ] || { echo "no valgrind log at all: was the wrapper used?"; ok=0; }
	[ $bad -eq 0 ] || ok=0
	if [ $ok = 1 ]; then
		echo "PASS: valgrind: $res, $n tlsfilter runs under memcheck, 0 errors ($(($(date +%s) - start)) s)"
	else
		echo "FAIL: valgrind: $res, $n tlsfilter runs, $bad with errors ($(($(date +%s) - start)) s)"
		return 1
	fi
}

case $mode in
asan) asan_pass || rc=1 ;;
valgrind) valgrind_pass || rc=1 ;;
all)
	asan_pass || rc=1
	valgrind_pass || rc=1
	;;
esac
exit $rc
