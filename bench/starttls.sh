#!/bin/bash
# bench/starttls.sh — what the STARTTLS plaintext phase costs, next to
# implicit TLS, in the same run: instructions of one tlsfilter process
# (valgrind --tool=callgrind, repeatable on a shared machine) and its CPU
# time (user + system, from bench/cpuwrap's wait4(); median of N runs).
#
#   builddir=BUILD bash bench/starttls.sh [N]
#
# The same backend (tests/helper.py smtp), the same certificate (P-256),
# the same client (openssl s_client, TLS 1.3, X25519) and the same
# conversation (EHLO, QUIT), once over implicit TLS and once after
# "-starttls smtp". Prints one line per case and the ratio. Then, with
# swaks, the filter after TLS on a BODY_MIB (default 4) MiB DATA body.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../tests/lib.sh"
need_tlsfilter
have_tool valgrind || skip_all "valgrind not installed"
need_certs
N=${1:-5}
"${CC:-cc}" -O2 -o "$T/cpuwrap" "$here/cpuwrap.c" 2>"$T/cc.err" || { cat "$T/cc.err"; exit 1; }
BP=$(free_port)
start_backend smtp smtp "127.0.0.1:$BP" || exit 1

# one MODE WRAPPER...: one connection through tlsfilter under WRAPPER.
one() {
	local mode=$1
	shift
	local args=(-p "$CERTS/ecdsa.pem" -r "127.0.0.1:$BP") cl=()
	[ "$1" != "$T/cpuwrap" ] && [ "$HOOKS" = 0 ] &&
		"$TLSFILTER" -V | grep -q '^sandbox: seccomp' && args+=(--sandbox no)
	[ "$mode" = starttls ] && args+=(--starttls smtp) && cl=(-starttls smtp)
	REAL=$TLSFILTER
	TLSFILTER=$1
	shift
	socat_tlsfilter nofork --no-log -- "$@" "$REAL" -o "$T/tf.log" "${args[@]}" >/dev/null || exit 1
	TLSFILTER=$REAL
	printf 'EHLO bench.test\r\nQUIT\r\n' | timeout 60 openssl s_client "${cl[@]}" -tls1_3 \
		-groups X25519 -CAfile "$CA" -connect "127.0.0.1:$TLSF_PORT" -quiet >/dev/null 2>&1
	tlsf_rc 60 >/dev/null
	kill_tree "$TLSF_PID"
}

declare -A IR
# valgrind makes system calls of its own that the seccomp filter would
# kill: a test-hooks build does all of the sandbox's work but the filter's
# loading (TLSFILTER_TEST_NO_SANDBOX), another runs with --sandbox no.
HOOKS=0
"$TLSFILTER" -V | grep -q '^test hooks: yes' && HOOKS=1
for mode in implicit starttls; do
	rm -f "$T/cg.$mode"
	[ $HOOKS = 1 ] && export TLSFILTER_TEST_NO_SANDBOX=1
	one "$mode" "$(command -v valgrind)" --tool=callgrind --callgrind-out-file="$T/cg.$mode" \
		--log-file="$T/vg.$mode.log"
	unset TLSFILTER_TEST_NO_SANDBOX
	wait_for 30 file_has "$T/cg.$mode" '^totals:'
	: >"$T/cpu.$mode"
	for ((i = 0; i < N; i++)); do
		one "$mode" "$T/cpuwrap" "$T/cpu.$mode"
	done
done
for mode in implicit starttls; do
	IR[$mode]=$(awk '/^totals:/ { print $2 }' "$T/cg.$mode")
	cpu=$(awk '$1 != "start" { print $2 + $3 }' "$T/cpu.$mode" 2>/dev/null | sort -n |
		awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }')
	printf 'bench: %-8s instructions=%s cpu_us_median=%s runs=%s\n' "$mode" "${IR[$mode]}" "${cpu:-?}" \
		"$(grep -vc '^start' "$T/cpu.$mode" 2>/dev/null)"
done
awk -v a="${IR[starttls]}" -v b="${IR[implicit]}" \
	'BEGIN { if (b > 0) printf "bench: starttls/implicit instructions = %.4f (+%.2f %%)\n", a / b, (a / b - 1) * 100 }'

# The filter after TLS on a message body: one --starttls smtp session
# under callgrind whose DATA body is BODY_MIB MiB of 78-byte lines (swaks
# --tls), and the share of the filter (stfilter_client and
# stfilter_backend, inclusive, from callgrind_annotate) in its total.
BODY_MIB=${BODY_MIB:-4}
if have_tool swaks callgrind_annotate; then
	"$PYTHON" -c "import sys; l = b'x' * 76 + b'\n'; sys.stdout.buffer.write(l * ($BODY_MIB * 1048576 // len(l)))" \
		>"$T/body.txt"
	BP2=$(free_port)
	start_backend sink smtpext "127.0.0.1:$BP2" || exit 1
	REAL=$TLSFILTER
	TLSFILTER=$(command -v valgrind)
	socat_tlsfilter nofork --no-log -- --tool=callgrind --callgrind-out-file="$T/cg.body" \
		--log-file="$T/vg.body.log" "$REAL" -o "$T/tf.log" -p "$CERTS/ecdsa.pem" \
		-r "127.0.0.1:$BP2" --starttls smtp >/dev/null || exit 1
	TLSFILTER=$REAL
	timeout 300 swaks --server 127.0.0.1 --port "$TLSF_PORT" --tls --ehlo bench.test \
		--from a@example.org --to b@example.org --body "$T/body.txt" --suppress-data >/dev/null 2>&1
	tlsf_rc 300 >/dev/null
	kill_tree "$TLSF_PID"
	wait_for 60 file_has "$T/cg.body" '^totals:'
	total=$(awk '/^totals:/ { print $2 }' "$T/cg.body")
	filt=$(callgrind_annotate --inclusive=yes --threshold=100 "$T/cg.body" 2>/dev/null |
		awk '/stfilter\.c:stfilter_(client|backend) \[/ { gsub(",", "", $1); s += $1 } END { print s + 0 }')
	awk -v t="$total" -v f="$filt" -v m="$BODY_MIB" -v b="$(wc -c <"$T/body.txt")" \
		'BEGIN { printf "bench: starttls-body %d MiB: instructions=%s filter=%s (%.2f %%, %.2f per body byte)\n", m, t, f, f * 100 / t, f / b }'
fi
