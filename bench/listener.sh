#!/bin/bash
# bench/listener.sh — the listener model (issue 15: xinetd wait = yes, one
# tlsfilter accepting and forking a child per connection) next to the exec
# model (wait = no: a program start per connection), the floor (bench/floor.c,
# a minimal GnuTLS relay started like the exec model) and stunnel4 in inetd
# mode, in one run under one private xinetd, with the same certificate
# (ECDSA P-256), backend (bench/echod.c) and client (bench/tlsload.c, TLS 1.3).
#
#   builddir=BUILD bash bench/listener.sh        (make bench runs it last)
#   BENCH_QUICK=1 ...                            a short run
#
# Rows:
#   instructions per connection (valgrind --tool=callgrind): exec, floor and
#     stunnel: the one process's total. Listener: callgrind follows the
#     forked children (no exec), so each child has its own count (from its
#     first call, tls_child(): a child inherits the parent's counters); the
#     row is their sum over 11 connections / 11, plus the parent's share per
#     connection, (parent total after 11 connections - parent total after 1)
#     / 10. The key process (issue 13) is in neither this row nor the exec
#     model's: it chroots to an empty directory, where callgrind cannot
#     write its file (bench/keyproc.sh counts it: about 0.79 M for ECDSA).
#   CPU per connection: bench/cpuwrap's wait4() of the server process; for
#     the listener that is the whole group (wait4's rusage includes the
#     children the listener reaped), over N connections and the listener's
#     start, divided by N.
#   connections/s: tlsload conn -T SECS, sequential and 4 at once.
#   idle session: /proc/PID/smaps_rollup of the process serving one idle
#     connection (the listener's child, or the exec-model process):
#     Private_Dirty (pages copied on write from the listener are private
#     once written; pages still shared with it are not) and Pss.
# Needs root (xinetd), valgrind, stunnel4.
set -u
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${builddir:=$PWD}"
builddir=$(cd "$builddir" && pwd)
export builddir
: "${TLSFILTER:=$builddir/src/tlsfilter}"
. "$BENCH_DIR/../tests/lib.sh"
skip_all() {
	echo "bench: $*" >&2
	exit 1
}
CC=${CC:-cc}
STUNNEL=${STUNNEL:-/usr/bin/stunnel4}
if [ "${BENCH_QUICK:-0}" = 1 ]; then SECS=2 NCPU=30; else SECS=6 NCPU=100; fi
[ "$(id -u)" -eq 0 ] || skip_all "needs root (a private xinetd)"
need_tool xinetd valgrind pkg-config "$CC"
[ -x "$STUNNEL" ] || skip_all "no $STUNNEL"
need_tlsfilter
need_certs
say() { printf 'bench: %s\n' "$*" >&2; }

B="$builddir/bench"
mkdir -p "$B"
GNUTLS_FLAGS=$(pkg-config --cflags --libs gnutls) || skip_all "pkg-config gnutls failed"
for p in tlsload floor cpuwrap echod; do
	if [ ! -x "$B/$p" ] || [ "$BENCH_DIR/$p.c" -nt "$B/$p" ]; then
		# shellcheck disable=SC2086
		$CC -O2 -Wall -o "$B/$p" "$BENCH_DIR/$p.c" $GNUTLS_FLAGS -pthread || skip_all "cannot build $p"
	fi
done
EPORT=$(free_port)
spawn "$B/echod" "$EPORT"
wait_listen "$EPORT" || skip_all "the backend (echod) did not start"
cat >"$T/stunnel.conf" <<EOF
pid =
syslog = no
debug = 0
output = /dev/null
connect = 127.0.0.1:$EPORT
cert = $CERTS/ecdsa.pem
EOF

TF="$TLSFILTER -o $T/tlsfilter.log -p $CERTS/ecdsa.pem -r 127.0.0.1:$EPORT --max-connections 256"
declare -A CMD=([exec]="$TF" [listener]="$TF" [floor]="$B/floor $CERTS/ecdsa.pem $EPORT"
	[stunnel]="$STUNNEL $T/stunnel.conf")
SERVERS=(listener exec floor stunnel)
VG=$(command -v valgrind)
declare -A PORT
mkdir -p "$T/cg"
conf="$T/xinetd.conf"
printf 'defaults\n{\n\tlog_type = FILE %s\n\tlog_on_success = PID EXIT\n}\n' "$T/xinetd.log" >"$conf"
# tlsfilter under callgrind: valgrind refuses the sandbox's RLIMIT_NOFILE
# (the key process, the key holder and the network process then fail their
# set-up, and a failed connection was counted). A build with test hooks
# does all of the sandbox's work but the filter's and the limits' loading
# (TLSFILTER_TEST_NO_SANDBOX, through xinetd's env); another runs with
# --sandbox no, as bench/run.sh does.
SANDBOX_CG_ENV= SANDBOX_CG_ARGS=
if "$TLSFILTER" -V | grep -q '^test hooks: yes'; then
	SANDBOX_CG_ENV=TLSFILTER_TEST_NO_SANDBOX=1
elif "$TLSFILTER" -V | grep -q '^sandbox: seccomp'; then
	SANDBOX_CG_ARGS=" --sandbox no"
fi
service() { # NAME WAIT SERVER ARGS [ENV]
	PORT[$1]=$(free_port)
	cat >>"$conf" <<-EOF
		service bench-$1
		{
			type = UNLISTED
			id = bench-$1
			port = ${PORT[$1]}
			bind = 127.0.0.1
			socket_type = stream
			protocol = tcp
			wait = $2
			user = root
			instances = 50
			per_source = UNLIMITED
			cps = 10000 1
			flags = REUSE
			disable = no
			server = $3
			server_args = $4
			${5:+env = $5}
		}
	EOF
}
for s in "${SERVERS[@]}"; do
	w=no
	[ "$s" = listener ] && w=yes
	c=${CMD[$s]}
	service "plain-$s" "$w" "${c%% *}" "${c#* }"
	service "cpu-$s" "$w" "$B/cpuwrap" "$T/cpu-$s.txt $c"
	# A forked child inherits callgrind's counters: its count starts at
	# tls_child(), the child's first call (fork's return and a few hundred
	# instructions of listener.c before it are not counted); its key
	# process, forked in tls_child(), starts from there too.
	zero=
	[ "$s" = listener ] && zero=--zero-before=tls_child
	cg_args= cg_env=
	[ "$s" = floor ] || cg_args=$SANDBOX_CG_ARGS cg_env=$SANDBOX_CG_ENV
	[ "$s" = stunnel ] || service "cg-$s" "$w" "$VG" \
		"--tool=callgrind $zero --callgrind-out-file=$T/cg/$s.%p --log-file=$T/cg/$s.%p.vglog $c$cg_args" \
		"$cg_env"
done
spawn xinetd -dontfork -pidfile "$T/xinetd.pid" -f "$conf" 2>"$T/xinetd.stderr"
for p in "${PORT[@]}"; do
	wait_listen "$p" 10 || skip_all "xinetd does not listen on $p"
done
load() { "$B/tlsload" "$@"; }
field() { sed -n "s/.*\\b$2=\\([^ ]*\\).*/\\1/p" <<<"$1"; }
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
declare -A R

# stop_listener CPUFILE-OR-EMPTY: SIGTERM the listener of a wait = yes
# service (the last "start PID" of cpuwrap, or the process holding PORT).
listener_pid() { ss -Hltnp "sport = :$1" | grep -oE 'pid=[0-9]+' | grep -v "pid=$(cat "$T/xinetd.pid")" | head -n 1 | cut -d= -f2; }
stop_listener() { # PORT
	local pid
	pid=$(listener_pid "$1")
	[ -n "$pid" ] && kill -TERM "$pid" && wait_for 30 test ! -e "/proc/$pid"
}

# --- connections per second -----------------------------------------------------------------------
for s in "${SERVERS[@]}"; do
	out=$(load conn -p "${PORT[plain-$s]}" -n 3) || skip_all "$s does not work: $out"
done
for s in "${SERVERS[@]}"; do
	out=$(load conn -p "${PORT[plain-$s]}" -T "$SECS")
	R[cps_seq,$s]=$(field "$out" cps)
	out=$(load conn -p "${PORT[plain-$s]}" -T "$SECS" -P 4)
	R[cps_par,$s]=$(field "$out" cps)
	say "$s: ${R[cps_seq,$s]} connections/s sequential, ${R[cps_par,$s]} 4 at once"
done
stop_listener "${PORT[plain-listener]}"

# --- CPU per connection ----------------------------------------------------------------------------
for s in "${SERVERS[@]}"; do
	out=$(load conn -p "${PORT[cpu-$s]}" -n "$NCPU") || say "cpu $s: $out"
	if [ "$s" = listener ]; then
		stop_listener "${PORT[cpu-$s]}"
		wait_for 30 test "$(grep -vc '^start' "$T/cpu-$s.txt" 2>/dev/null)" -ge 1
		R[cpu,$s]=$(grep -v '^start' "$T/cpu-$s.txt" | tail -n 1 | awk -v n="$NCPU" '{ printf "%.3f", ($2 + $3) / n / 1000 }')
	else
		wait_for 30 test "$(grep -vc '^start' "$T/cpu-$s.txt" 2>/dev/null)" -ge "$NCPU"
		R[cpu,$s]=$(grep -v '^start' "$T/cpu-$s.txt" | awk '{ t += $2 + $3; n++ } END { printf "%.3f", t / n / 1000 }')
	fi
	say "$s: CPU ${R[cpu,$s]} ms per connection ($NCPU connections)"
done

# --- instructions per connection -------------------------------------------------------------------
totals() { for f in "$@"; do awk '/^totals:/ { print $2 }' "$f"; done; }
for s in exec floor; do
	# A connection that failed would be counted: it must not.
	load conn -p "${PORT[cg-$s]}" -n 1 >/dev/null || skip_all "$s under callgrind: the connection failed"
	wait_for 60 sh -c "grep -qs '^totals:' $T/cg/$s.*[0-9]"
	R[ir,$s]=$(totals "$T"/cg/$s.*[0-9] | head -n 1)
done
# The listener: 1 connection, then (a new listener) 11.
declare -A PARENT
for n in 1 11; do
	rm -f "$T"/cg/listener.*
	load conn -p "${PORT[cg-listener]}" -n "$n" >/dev/null ||
		skip_all "the listener under callgrind: a connection failed"
	sleep 1
	pid=$(listener_pid "${PORT[cg-listener]}")
	stop_listener "${PORT[cg-listener]}"
	wait_for 60 sh -c "grep -qs '^totals:' $T/cg/listener.$pid"
	PARENT[$n]=$(totals "$T/cg/listener.$pid")
	children=$(for f in "$T"/cg/listener.*[0-9]; do [ "$f" = "$T/cg/listener.$pid" ] || totals "$f"; done)
	say "listener, $n connection(s): parent ${PARENT[$n]} instructions, $(grep -c . <<<"$children") children"
done
child=$(awk '{ t += $1; n++ } END { printf "%d", t / n }' <<<"$children")
share=$(awk -v a="${PARENT[11]}" -v b="${PARENT[1]}" 'BEGIN { printf "%d", (a - b) / 10 }')
R[ir,listener]=$((child + share))
say "listener: children (mean) $child + parent share $share = ${R[ir,listener]} instructions per connection"

# --- an idle session's memory ----------------------------------------------------------------------
sync
for s in listener exec; do
	rm -f "$T/idle.in"
	mkfifo "$T/idle.in"
	load idle -p "${PORT[plain-$s]}" <"$T/idle.in" >"$T/idle.out" 2>&1 &
	idle=$!
	exec {hold}>"$T/idle.in"
	if wait_for 20 file_has "$T/idle.out" '^ready'; then
		sleep 0.3
		if [ "$s" = listener ]; then
			# Its session's child, not its key holder (comm tlsfilter-key).
			pid=$(pgrep -n -P "$(listener_pid "${PORT[plain-$s]}")" -x tlsfilter)
		else
			pid=$(pgrep -n -P "$(cat "$T/xinetd.pid")" -x tlsfilter)
		fi
		R[priv,$s]=$(awk '/^Private_Dirty:/ { print $2 }' "/proc/$pid/smaps_rollup")
		R[pss,$s]=$(awk '/^Pss:/ { print $2 }' "/proc/$pid/smaps_rollup")
		say "idle $s (pid $pid): Private_Dirty ${R[priv,$s]} kB, Pss ${R[pss,$s]} kB"
	fi
	exec {hold}>&-
	wait "$idle"
done
stop_listener "${PORT[plain-listener]}"

# --- the table ---------------------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b != "" && b != 0) printf "%.3f", a / b; else printf "n/a" }'; }
echo
echo "tlsfilter listener model: $(nproc) cores, GnuTLS $(pkg-config --modversion gnutls), ECDSA P-256, TLS 1.3"
printf '%-34s %12s %12s %12s %12s\n' measurement listener exec floor stunnel
for m in ir:"instructions per connection" cpu:"CPU per connection (ms)" cps_seq:"connections/s, sequential" \
	cps_par:"connections/s, 4 at once" priv:"idle Private_Dirty (KiB)" pss:"idle Pss (KiB)"; do
	k=${m%%:*}
	printf '%-34s %12s %12s %12s %12s\n' "${m#*:}" "${R[$k,listener]:-n/a}" "${R[$k,exec]:-n/a}" \
		"${R[$k,floor]:-n/a}" "${R[$k,stunnel]:-n/a}"
done
echo
echo "issue 15 targets:"
target() { # DESCRIPTION VALUE OP LIMIT
	awk -v d="$1" -v v="$2" -v op="$3" -v l="$4" 'BEGIN {
		if (v == "n/a" || v == "") { printf "  %-52s n/a\n", d; exit }
		m = (op == "<=") ? (v <= l) : (v >= l)
		printf "  %-52s %8.3f %s %-6s %s\n", d, v, op, l, m ? "met" : "MISSED" }'
}
target "instructions: listener / exec-model floor" "$(ratio "${R[ir,listener]}" "${R[ir,floor]}")" "<=" 0.5
target "CPU: listener / exec-model floor" "$(ratio "${R[cpu,listener]}" "${R[cpu,floor]}")" "<=" 0.6
target "CPU: listener / stunnel (inetd mode)" "$(ratio "${R[cpu,listener]}" "${R[cpu,stunnel]}")" "<=" 0.2
target "connections/s sequential: listener / exec" "$(ratio "${R[cps_seq,listener]}" "${R[cps_seq,exec]}")" ">=" 1.5
target "connections/s 4 at once: listener / exec" "$(ratio "${R[cps_par,listener]}" "${R[cps_par,exec]}")" ">=" 1.5
target "idle Private_Dirty (KiB)" "${R[priv,listener]:-n/a}" "<=" 400
