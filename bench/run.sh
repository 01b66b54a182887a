#!/bin/bash
# bench/run.sh — tlsfilter against stunnel4 (inetd mode) and the floor (a
# minimal GnuTLS relay, bench/floor.c) under one private xinetd, the same
# certificate and the same backend (bench/echod.c) for all three; each
# measurement alternates between the three. Prints one table with the
# ratios, then the issue 6 targets met or missed. docs/performance.md says
# what each row means and holds a run's results.
#
#   make bench                      (or: bash bench/run.sh from the build dir)
#   BENCH_QUICK=1 make bench        a quick run for development (~2 min)
#
# Environment: TLSFILTER (default $builddir/src/tlsfilter), builddir (the
# top build directory, default .), CC (cc), STUNNEL (/usr/bin/stunnel4),
# BENCH_QUICK=1, BENCH_ONLY="conn cpu bulk idle cg" (the sections to run),
# BENCH_ROUNDS=N (alternating rounds, 3; quick 1),
# BENCH_BULK=BYTES (each way, 1 GiB; quick 64 MiB), TLSF_KEEP=1 (keep the
# scratch directory). The programs are built into $builddir/bench/, the
# callgrind output files of the last run are copied to
# $builddir/bench/callgrind/ (for callgrind_annotate), each idle server's
# /proc/PID/smaps to $builddir/bench/smaps-SERVER.txt. Needs root (xinetd),
# valgrind and stunnel4 (scripts/deps.sh installs them).

set -u
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top_srcdir=$(dirname "$BENCH_DIR")
: "${builddir:=$PWD}"
builddir=$(cd "$builddir" && pwd)
export builddir
: "${TLSFILTER:=$builddir/src/tlsfilter}"
. "$top_srcdir/tests/lib.sh"
# lib.sh's skip_all speaks TAP; a benchmark that cannot run is a failure.
skip_all() {
	echo "bench: $*" >&2
	exit 1
}

CC=${CC:-cc}
STUNNEL=${STUNNEL:-/usr/bin/stunnel4}
QUICK=${BENCH_QUICK:-0}
if [ "$QUICK" = 1 ]; then
	ROUNDS=${BENCH_ROUNDS:-1} BULK=${BENCH_BULK:-$((64 << 20))} SECS=2 NCPU=30
else
	ROUNDS=${BENCH_ROUNDS:-3} BULK=${BENCH_BULK:-$((1 << 30))} SECS=8 NCPU=100
fi
SERVERS=(tlsfilter stunnel floor)
ONLY=" ${BENCH_ONLY:-conn cpu bulk idle cg} "
want() { [[ $ONLY == *" $1 "* ]]; }

[ "$(id -u)" -eq 0 ] || skip_all "needs root (a private xinetd)"
need_tool xinetd valgrind pkg-config "$CC"
[ -x "$STUNNEL" ] || skip_all "no $STUNNEL (apt-get install stunnel4)"
need_tlsfilter
need_certs

say() { printf 'bench: %s\n' "$*" >&2; }

# --- the programs --------------------------------------------------------------------------------
B="$builddir/bench"
mkdir -p "$B"
GNUTLS_FLAGS=$(pkg-config --cflags --libs gnutls) || skip_all "pkg-config gnutls failed"
for p in tlsload floor cpuwrap echod; do
	if [ ! -x "$B/$p" ] || [ "$BENCH_DIR/$p.c" -nt "$B/$p" ]; then
		say "building $B/$p"
		# shellcheck disable=SC2086
		$CC -O2 -Wall -o "$B/$p" "$BENCH_DIR/$p.c" $GNUTLS_FLAGS -pthread ||
			skip_all "cannot build $p"
	fi
done

# --- backend, ticket key, stunnel configurations ---------------------------------------------------
EPORT=$(free_port)
spawn "$B/echod" "$EPORT"
wait_listen "$EPORT" || skip_all "the backend (echod) did not start"
KEY="$T/ticket.key"
"$TLSFILTER" --generate-ticket-key "$KEY" || skip_all "--generate-ticket-key failed"
for k in ecdsa rsa; do
	# inetd mode: no service section (and so no accept); nothing on stderr,
	# which is the client's socket under xinetd.
	cat >"$T/stunnel-$k.conf" <<-EOF
		pid =
		syslog = no
		debug = 0
		output = /dev/null
		connect = 127.0.0.1:$EPORT
		cert = $CERTS/$k.pem
	EOF
done

# cmd SERVER KEYTYPE TICKET: the server's command line.
cmd() {
	local tk=
	case $1 in
	tlsfilter)
		[ "$3" = tk ] && tk="--ticket-key $KEY"
		echo "$TLSFILTER -o $T/tlsfilter.log -p $CERTS/$2.pem -r 127.0.0.1:$EPORT $tk"
		;;
	stunnel) echo "$STUNNEL $T/stunnel-$2.conf" ;;
	floor)
		[ "$3" = tk ] && tk=$KEY
		echo "$B/floor $CERTS/$2.pem $EPORT $tk"
		;;
	esac
}

# --- one private xinetd: a service per server x {plain, cpu, cg} x key type x ticket key -------------
#   plain  xinetd starts the server itself (connections/s, first byte, tickets)
#   cpu    through bench/cpuwrap (CPU time from wait4(), the pid for smaps)
#   cg     under valgrind --tool=callgrind (instructions of the whole process)
declare -A PORT
mkdir -p "$T/cg"
conf="$T/xinetd.conf"
{
	echo "defaults"
	echo "{"
	echo "	log_type = FILE $T/xinetd.log"
	echo "	log_on_success = PID EXIT"
	echo "	log_on_failure = HOST"
	echo "}"
} >"$conf"
# tlsfilter under callgrind: a build with test hooks does all of the
# sandbox's work but the filter's loading (TLSFILTER_TEST_NO_SANDBOX, set
# through xinetd's env); another runs with --sandbox no.
SANDBOX_CG_ENV= SANDBOX_CG_ARGS=
if "$TLSFILTER" -V | grep -q '^test hooks: yes'; then
	SANDBOX_CG_ENV=TLSFILTER_TEST_NO_SANDBOX=1
elif "$TLSFILTER" -V | grep -q '^sandbox: seccomp'; then
	SANDBOX_CG_ARGS="--sandbox no"
fi
service() { # NAME SERVER ARGS [ENV]
	local name=$1 server=$2 args=$3 env=${4:-}
	PORT[$name]=$(free_port)
	cat >>"$conf" <<-EOF
		service bench-$name
		{
			type = UNLISTED
			id = bench-$name
			port = ${PORT[$name]}
			bind = 127.0.0.1
			socket_type = stream
			protocol = tcp
			wait = no
			user = root
			instances = 50
			per_source = UNLIMITED
			cps = 10000 1
			flags = REUSE
			disable = no
			server = $server
			server_args = $args
			${env:+env = $env}
		}
	EOF
}
for s in "${SERVERS[@]}"; do
	for k in ecdsa rsa; do
		for tk in no tk; do
			[ "$s" = stunnel ] && [ $tk = tk ] && continue
			c=$(cmd "$s" "$k" "$tk")
			n="$s-$k-$tk"
			service "plain-$n" "${c%% *}" "${c#* }"
			service "cpu-$n" "$B/cpuwrap" "$T/cpu-$n.txt $c"
			# valgrind makes system calls of its own that the seccomp
			# filter would kill: see SANDBOX_CG below.
			cgc=$c
			[ "$s" = tlsfilter ] && cgc="$c $SANDBOX_CG_ARGS"
			service "cg-$n" "$(command -v valgrind)" \
				"--tool=callgrind --callgrind-out-file=$T/cg/$n.%p --log-file=$T/cg/$n.%p.vglog $cgc" \
				"$([ "$s" = tlsfilter ] && echo "$SANDBOX_CG_ENV")"
		done
	done
done
spawn xinetd -dontfork -pidfile "$T/xinetd.pid" -f "$conf" 2>"$T/xinetd.stderr"
for p in "${PORT[@]}"; do
	wait_listen "$p" 10 || {
		diag_file "$T/xinetd.stderr" >&2
		skip_all "xinetd does not listen on $p"
	}
done

declare -A R # R[metric,server]
load() { "$B/tlsload" "$@"; }
field() { sed -n "s/.*\\b$2=\\([^ ]*\\).*/\\1/p" <<<"$1"; }
# order ROUND: the servers, rotated by round, so that none always goes first.
order() {
	local i n=${#SERVERS[@]}
	for ((i = 0; i < n; i++)); do echo "${SERVERS[$(((i + $1) % n))]}"; done
}

# --- sanity: every server relays, under each launcher mode ---------------------------------------------
for s in "${SERVERS[@]}"; do
	out=$(load conn -p "${PORT[plain-$s-ecdsa-no]}" -n 3) ||
		skip_all "$s does not work: $out (see $T)"
done
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
say "all three servers answer; $ROUNDS round(s), ${SECS}s per connection run, bulk $BULK bytes each way"

# median FILE / pct FILE P: of the numbers in FILE, one a line.
median() { sort -n "$1" | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
pct() { sort -n "$1" | awk -v p="$2" '{ v[NR] = $1 } END { i = int(NR * p); if (i < 1) i = 1; if (i > NR) i = NR; print v[i] }'; }

# --- connections per second and first byte ------------------------------------------------------------
if want conn; then
	for ((r = 0; r < ROUNDS; r++)); do
		for s in $(order $r); do
			out=$(load conn -p "${PORT[plain-$s-ecdsa-no]}" -T "$SECS" --times "$T/fb-$s.txt")
			say "round $r $s sequential: $out"
			echo "$(field "$out" cps)" >>"$T/cps-seq-$s.txt"
			out=$(load conn -p "${PORT[plain-$s-ecdsa-no]}" -T "$SECS" -P 4)
			say "round $r $s 4 parallel: $out"
			echo "$(field "$out" cps)" >>"$T/cps-par-$s.txt"
		done
	done
	for s in "${SERVERS[@]}"; do
		R[cps_seq,$s]=$(median "$T/cps-seq-$s.txt")
		R[cps_par,$s]=$(median "$T/cps-par-$s.txt")
		R[fb_med,$s]=$(awk -v v="$(pct "$T/fb-$s.txt" 0.5)" 'BEGIN { printf "%.2f", v / 1000 }')
		R[fb_p99,$s]=$(awk -v v="$(pct "$T/fb-$s.txt" 0.99)" 'BEGIN { printf "%.2f", v / 1000 }')
	done
fi

# cpu_lines SERVICE: the result lines (not "start") cpuwrap wrote for it.
cpu_lines() { grep -vs '^start' "$T/cpu-$1.txt" | wc -l; }
# wait_cpu SERVICE N: until cpuwrap has N result lines for it.
wait_cpu() { wait_for 30 _cpu_ge "$1" "$2"; }
_cpu_ge() { [ "$(cpu_lines "$1")" -ge "$2" ]; }

# --- CPU per connection --------------------------------------------------------------------------------
if want cpu; then
	for ((r = 0; r < ROUNDS; r++)); do
		for s in $(order $r); do
			out=$(load conn -p "${PORT[cpu-$s-ecdsa-no]}" -n "$NCPU")
			say "round $r $s CPU run: $out"
		done
	done
	for s in "${SERVERS[@]}"; do
		wait_cpu "$s-ecdsa-no" $((ROUNDS * NCPU))
		R[cpu_conn,$s]=$(grep -v '^start' "$T/cpu-$s-ecdsa-no.txt" |
			awk '{ t += $2 + $3; n++ } END { printf "%.2f", t / n / 1000 }')
		R[cpu_conn_user,$s]=$(grep -v '^start' "$T/cpu-$s-ecdsa-no.txt" |
			awk '{ t += $2; n++ } END { printf "%.2f", t / n / 1000 }')
	done
fi

# --- bulk: full duplex, CPU per GiB --------------------------------------------------------------------
if want bulk; then
		for ((r = 0; r < ROUNDS; r++)); do
		for s in $(order $r); do
			n="$s-ecdsa-no"
			before=$(cpu_lines "$n")
			out=$(load bulk -p "${PORT[cpu-$n]}" -b "$BULK") || skip_all "bulk through $s failed: $out"
			say "round $r $s bulk: $out"
			echo "$(field "$out" mbps)" >>"$T/mbps-$s.txt"
			wait_cpu "$n" $((before + 1))
			grep -v '^start' "$T/cpu-$n.txt" | tail -n 1 |
				awk -v b="$BULK" '{ printf "%.3f %.3f\n", ($2 + $3) / 1e6 / (b / 1073741824), $2 / 1e6 / (b / 1073741824) }' >>"$T/gib-$s.txt"
		done
	done
	for s in "${SERVERS[@]}"; do
		R[mbps,$s]=$(median "$T/mbps-$s.txt")
		R[cpu_gib,$s]=$(cut -d' ' -f1 "$T/gib-$s.txt" | median /dev/stdin)
		R[cpu_gib_user,$s]=$(cut -d' ' -f2 "$T/gib-$s.txt" | median /dev/stdin)
	done
fi

# --- memory of an idle connection ------------------------------------------------------------------------
# sync first: the page-cache pages of a binary the linker has just written
# are dirty until written back, and /proc/PID/smaps counts them as the
# process's Private_Dirty while it alone maps them (up to the whole size of
# tlsfilter's and the floor's text, freshly built by this run).
if want idle; then
	sync
	for s in "${SERVERS[@]}"; do
		n="$s-ecdsa-no"
		rm -f "$T/idle.in"
		mkfifo "$T/idle.in"
		load idle -p "${PORT[cpu-$n]}" <"$T/idle.in" >"$T/idle.out" 2>&1 &
		idle=$!
		exec {hold}>"$T/idle.in"
		if wait_for 20 file_has "$T/idle.out" '^ready'; then
			sleep 0.3
			pid=$(grep '^start' "$T/cpu-$n.txt" | tail -n 1 | cut -d' ' -f2)
			cp "/proc/$pid/smaps" "$B/smaps-$s.txt"
			R[priv,$s]=$(awk '/^Private_Dirty:/ { print $2 }' "/proc/$pid/smaps_rollup")
			R[rss,$s]=$(awk '/^Rss:/ { print $2 }' "/proc/$pid/smaps_rollup")
			say "idle $s (pid $pid): Private_Dirty ${R[priv,$s]} kB, Rss ${R[rss,$s]} kB"
		else
			say "idle $s: no connection: $(cat "$T/idle.out")"
		fi
		exec {hold}>&-
		wait "$idle"
	done
fi

# --- instructions of one whole connection under callgrind ------------------------------------------------
# cg_one NAME TLSLOAD-ARGS...: one connection to the cg-NAME service; prints
# the process's total instruction count (empty on failure).
cg_one() {
	local n=$1 f i
	shift
	local before
	before=$(compgen -G "$T/cg/$n.*[0-9]" | wc -l)
	if ! out=$(load conn -p "${PORT[cg-$n]}" "$@"); then
		say "callgrind $n: the connection failed: $out"
		return
	fi
	for ((i = 0; i < 300; i++)); do
		f=$(compgen -G "$T/cg/$n.*[0-9]" | tail -n 1)
		if [ "$(compgen -G "$T/cg/$n.*[0-9]" | wc -l)" -gt "$before" ] &&
			grep -q '^totals:' "$f" 2>/dev/null; then
			break
		fi
		sleep 0.1
	done
	f=$(ls -t "$T/cg/$n".*[0-9] | head -n 1)
	awk '/^totals:/ { print $2 }' "$f"
}
if want cg; then
	for k in ecdsa rsa; do
		for s in "${SERVERS[@]}"; do
			R[cg_${k}_full,$s]=$(cg_one "$s-$k-no" -n 1)
			say "callgrind $s $k full: ${R[cg_${k}_full,$s]}"
			[ "$s" = stunnel ] && continue
			R[cg_${k}_fulltk,$s]=$(cg_one "$s-$k-tk" -n 1)
			load conn -p "${PORT[plain-$s-$k-tk]}" --save "$T/sess-$s-$k" >/dev/null ||
				say "no ticket from $s"
			R[cg_${k}_res,$s]=$(cg_one "$s-$k-tk" -n 1 --load "$T/sess-$s-$k" --expect-resumed)
			say "callgrind $s $k: full with ticket key ${R[cg_${k}_fulltk,$s]}, resumed ${R[cg_${k}_res,$s]}"
		done
	done
	rm -rf "$B/callgrind"
	mkdir -p "$B/callgrind"
	cp "$T"/cg/*[0-9] "$B/callgrind/" 2>/dev/null
fi

# --- the table -----------------------------------------------------------------------------------------------
row() { # LABEL METRIC SCALE
	local t=${R[$2,tlsfilter]:-} st=${R[$2,stunnel]:-} fl=${R[$2,floor]:-}
	awk -v l="$1" -v t="$t" -v s="$st" -v f="$fl" -v sc="${3:-1}" '
		function v(x) { return x == "" ? "n/a" : sprintf(sc == 1 ? "%.2f" : "%.2f", x / sc) }
		function r(a, b) { return (a == "" || b == "" || b == 0) ? "n/a" : sprintf("%.2f", a / b) }
		BEGIN { printf "%-36s %10s %10s %10s %10s %10s\n", l, v(t), v(s), v(f), r(t, f), r(t, s) }'
}
echo
echo "tlsfilter benchmark: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), Debian $(cat /etc/debian_version 2>/dev/null), GnuTLS $(pkg-config --modversion gnutls), $($STUNNEL -version 2>&1 | grep -m1 -o 'stunnel [0-9.]*')"
echo "load average at the start: $LOAD0; at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "$ROUNDS round(s); ECDSA P-256, TLS 1.3 unless said; bulk $((BULK >> 20)) MiB each way at once"
printf '%-36s %10s %10s %10s %10s %10s\n' measurement tlsfilter stunnel floor tlsf/floor tlsf/stun
row "connections/s, sequential" cps_seq
row "connections/s, 4 parallel" cps_par
row "first byte, median (ms)" fb_med
row "first byte, p99 (ms)" fb_p99
row "bulk, MB/s each way" mbps
row "CPU per connection (ms)" cpu_conn
row "  of which user (ms)" cpu_conn_user
row "CPU per GiB each way (s)" cpu_gib
row "  of which user (s)" cpu_gib_user
row "idle Private_Dirty (KiB)" priv
row "idle Rss (KiB)" rss
row "Minstr ECDSA full" cg_ecdsa_full 1e6
row "Minstr ECDSA full, ticket key" cg_ecdsa_fulltk 1e6
row "Minstr ECDSA resumed" cg_ecdsa_res 1e6
row "Minstr RSA-2048 full" cg_rsa_full 1e6
row "Minstr RSA-2048 full, ticket key" cg_rsa_fulltk 1e6
row "Minstr RSA-2048 resumed" cg_rsa_res 1e6

# --- the issue 6 targets ------------------------------------------------------------------------------------
echo
echo "issue 6 targets:"
target() { # DESCRIPTION VALUE OP LIMIT
	awk -v d="$1" -v v="$2" -v op="$3" -v l="$4" 'BEGIN {
		if (v == "" || l == "") { printf "  %-58s %s\n", d, "n/a"; exit }
		m = (op == "<=") ? (v <= l) : (v >= l)
		printf "  %-58s %8.3f %s %-8.3f %s\n", d, v, op, l, m ? "met" : "MISSED" }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b != "" && b != 0) printf "%.4f", a / b }'; }
target "ECDSA full instructions / floor" "$(ratio "${R[cg_ecdsa_full,tlsfilter]:-}" "${R[cg_ecdsa_full,floor]:-}")" "<=" 1.10
target "stunnel / tlsfilter ECDSA full instructions" "$(ratio "${R[cg_ecdsa_full,stunnel]:-}" "${R[cg_ecdsa_full,tlsfilter]:-}")" ">=" 4.5
target "RSA-2048 full instructions / floor" "$(ratio "${R[cg_rsa_full,tlsfilter]:-}" "${R[cg_rsa_full,floor]:-}")" "<=" 1.10
target "ECDSA resumed / full (ticket key)" "$(ratio "${R[cg_ecdsa_res,tlsfilter]:-}" "${R[cg_ecdsa_fulltk,tlsfilter]:-}")" "<=" 0.75
target "RSA-2048 resumed / full (ticket key)" "$(ratio "${R[cg_rsa_res,tlsfilter]:-}" "${R[cg_rsa_fulltk,tlsfilter]:-}")" "<=" 0.75
target "CPU per connection / floor" "$(ratio "${R[cpu_conn,tlsfilter]:-}" "${R[cpu_conn,floor]:-}")" "<=" 1.10
target "CPU per connection / stunnel" "$(ratio "${R[cpu_conn,tlsfilter]:-}" "${R[cpu_conn,stunnel]:-}")" "<=" 0.4
target "CPU per GiB / stunnel" "$(ratio "${R[cpu_gib,tlsfilter]:-}" "${R[cpu_gib,stunnel]:-}")" "<=" 0.5
target "idle Private_Dirty (KiB)" "${R[priv,tlsfilter]:-}" "<=" 600
target "connections/s sequential / stunnel" "$(ratio "${R[cps_seq,tlsfilter]:-}" "${R[cps_seq,stunnel]:-}")" ">=" 1.8
target "connections/s 4 parallel / stunnel" "$(ratio "${R[cps_par,tlsfilter]:-}" "${R[cps_par,stunnel]:-}")" ">=" 1.8
