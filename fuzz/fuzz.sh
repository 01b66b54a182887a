#!/bin/sh
# fuzz.sh — build tlsfilter's libFuzzer harnesses and run each for a while.
#
# Usage: fuzz/fuzz.sh [TARGET...]   (default: every target below)
#   targets: options conffile allow-rule proxy stfilter
# Environment:
#   BUILD_DIR     where config.h is (default: the top source directory)
#   FUZZ_SECONDS  how long each target runs (default 30)
#   FUZZ_JOBS     libFuzzer -jobs/-workers for each target (default 1)
#   FUZZ_WORK     scratch directory (default: a new mktemp -d, removed at the
#                 end unless something crashed or FUZZ_KEEP=1)
#   FUZZ_CFLAGS   extra compiler flags
#   CC            the compiler (default clang; it needs libFuzzer: on Debian
#                 clang and libclang-rt-14-dev)
#
# Each harness is built with -fsanitize=fuzzer,address,undefined (UBSan
# findings abort) and run on a copy of fuzz/corpus/TARGET, so the source
# tree is never written. One line per target on stdout:
#   fuzz.sh: TARGET: ok: N execs, cov C, ft F
#   fuzz.sh: TARGET: CRASH: INPUT-PATH   (and libFuzzer's report above it)
#   fuzz.sh: TARGET: BUILD FAILED
# Exit status: 0 when every target ran clean, 1 on a crash or a failed run,
# 2 on a build failure or a usage error.
set -u

top=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$top}
FUZZ_SECONDS=${FUZZ_SECONDS:-30}
FUZZ_JOBS=${FUZZ_JOBS:-1}
CC=${CC:-clang}
ALL_TARGETS="options conffile allow-rule proxy stfilter"

# sources TARGET: the harness and the src/ files it needs (common.c compiles
# src/conffile.c in, with a way to free its pool, and stands in for
# src/log.c, whose preinit hook would send the sanitizers' reports to
# /dev/null; backend.c's stderr logger closes the key process's socketpair,
# hence keyproc.c and privs.c).
sources() {
	case $1 in
	options | conffile)
		echo "$top/fuzz/fuzz-$1.c $top/fuzz/common.c $top/src/options.c" \
			"$top/src/backend.c $top/src/proxy.c $top/src/keyproc.c $top/src/privs.c"
		;;
	allow-rule)
		echo "$top/fuzz/fuzz-allow-rule.c $top/src/identity.c"
		;;
	proxy)
		echo "$top/fuzz/fuzz-proxy.c $top/src/proxy.c"
		;;
	stfilter)
		echo "$top/fuzz/fuzz-stfilter.c $top/src/stfilter.c"
		;;
	*) return 1 ;;
	esac
}

if ! command -v "$CC" >/dev/null 2>&1; then
	echo "fuzz.sh: $CC not found (apt-get install clang libclang-rt-14-dev)" >&2
	exit 2
fi
if [ ! -f "$BUILD_DIR/config.h" ]; then
	echo "fuzz.sh: no config.h in $BUILD_DIR (run configure, or set BUILD_DIR)" >&2
	exit 2
fi
case $FUZZ_SECONDS in
'' | *[!0-9]*) echo "fuzz.sh: FUZZ_SECONDS must be a number" >&2; exit 2 ;;
esac
gnutls_cflags=$(pkg-config --cflags gnutls 2>/dev/null)
gnutls_libs=$(pkg-config --libs gnutls 2>/dev/null || echo -lgnutls)

targets=${*:-$ALL_TARGETS}
for t in $targets; do
	sources "$t" >/dev/null || { echo "fuzz.sh: unknown target $t (have: $ALL_TARGETS)" >&2; exit 2; }
done

if [ -n "${FUZZ_WORK:-}" ]; then
	work=$FUZZ_WORK
	mkdir -p "$work" || exit 2
else
	work=$(mktemp -d "${TMPDIR:-/tmp}/tlsfilter-fuzz.XXXXXX") || exit 2
fi
keep=${FUZZ_KEEP:-0}

status=0
for t in $targets; do
	bin="$work/fuzz-$t"
	# shellcheck disable=SC2046,SC2086
	if ! "$CC" -g -O1 -fsanitize=fuzzer,address,undefined \
		-fno-sanitize-recover=undefined -fno-omit-frame-pointer \
		-I"$BUILD_DIR" -I"$top/src" -I"$top/fuzz" $gnutls_cflags ${FUZZ_CFLAGS:-} \
		-o "$bin" $(sources "$t") $gnutls_libs 2>"$work/$t.build.log"; then
		cat "$work/$t.build.log" >&2
		echo "fuzz.sh: $t: BUILD FAILED"
		status=2
		keep=1
		continue
	fi
	rm -rf "$work/corpus-$t" "$work/crash-$t"
	mkdir -p "$work/corpus-$t" "$work/crash-$t"
	cp "$top/fuzz/corpus/$t/"* "$work/corpus-$t/" 2>/dev/null
	chmod u+w "$work/corpus-$t/"* 2>/dev/null
	# stdin from /dev/null: an input naming /dev/stdin must not wait on us.
	(cd "$work" && UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ASAN_OPTIONS=abort_on_error=0:detect_leaks=1 \
		"$bin" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 \
		-max_len=4096 -print_final_stats=1 \
		-artifact_prefix="$work/crash-$t/" \
		"$work/corpus-$t") </dev/null >"$work/$t.log" 2>&1
	rc=$?
	crash=$(ls "$work/crash-$t/" 2>/dev/null | head -n 1)
	if [ "$rc" -ne 0 ] || [ -n "$crash" ]; then
		grep -v '^#[0-9]' "$work/$t.log" | tail -n 80 >&2
		if [ -n "$crash" ]; then
			echo "fuzz.sh: $t: CRASH: $work/crash-$t/$crash"
		else
			echo "fuzz.sh: $t: FAILED (libFuzzer exit $rc, log $work/$t.log)"
		fi
		status=1
		keep=1
		continue
	fi
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t.log")
	cov=$(grep -E '^#[0-9]+' "$work/$t.log" | tail -n 1 |
		sed -n 's/.* cov: \([0-9]*\) ft: \([0-9]*\).*/cov \1, ft \2/p')
	echo "fuzz.sh: $t: ok: ${execs:-?} execs, ${cov:-cov ?}"
done

if [ "$keep" = 1 ]; then
	echo "fuzz.sh: scratch kept in $work" >&2
else
	rm -rf "$work"
fi
exit "$status"
