#!/bin/bash
# bench/keyproc.sh — what the key process (src/keyproc.c, issue 13) costs,
# against --key-process no, in the same run:
#   - instructions (valgrind --tool=callgrind, repeatable on a shared
#     machine) of the network process, and the key process's own (the
#     inclusive cost of run_child() in the key process's file: a fork
#     starts with its parent's counts);
#   - CPU per connection: user + system time from bench/cpuwrap's wait4(),
#     which includes the key process (the network process reaps it); the
#     mean over N connections per round, the rounds alternating.
#
#   builddir=BUILD bash bench/keyproc.sh [ROUNDS [N]]
#
# One short session (bench/tlsload: greeting, one line echoed, close), TLS
# 1.3, an ECDSA P-256 and an RSA-2048 certificate (tests/lib.sh's set),
# tlsfilter under socat (nofork: fds 0/1 are the TCP socket, as under
# xinetd), backend bench/echod. Needs valgrind; run it as root, so that the
# key process drops privileges and changes root as in production.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../tests/lib.sh"
need_tlsfilter
have_tool valgrind || skip_all "valgrind not installed"
need_tool socat pkg-config callgrind_annotate setpriv
need_certs
ROUNDS=${1:-3}
N=${2:-100}
for p in tlsload echod cpuwrap; do
	# shellcheck disable=SC2046
	"${CC:-cc}" -O2 -o "$T/$p" "$here/$p.c" $(pkg-config --cflags --libs gnutls) -pthread \
		2>"$T/cc.err" || { cat "$T/cc.err"; exit 1; }
done
EPORT=$(free_port)
spawn "$T/echod" "$EPORT"
wait_listen "$EPORT" || exit 1
REAL=$TLSFILTER

# instructions KEY MODE: "NETWORK KEYPROC" instruction counts. Run as
# nobody: the key process then keeps its root (as root it would move to an
# empty one, where callgrind could not write its file); the network
# process's count is the same either way.
instructions() {
	local key=$1 mode=$2 pid kp f
	rm -rf "$T/cg" && mkdir -p "$T/cg" && chmod 711 "$T" && cp "$CERTS/$key.pem" "$T/cg/" &&
		: >"$T/cg.log" && chown -R nobody "$T/cg" "$T/cg.log" || exit 1
	TLSFILTER=$(command -v setpriv)
	socat_tlsfilter nofork --no-log -- --reuid=nobody --regid=nogroup --clear-groups \
		valgrind --tool=callgrind --callgrind-out-file="$T/cg/cg.%p" \
		--log-file="$T/cg/vg.%p" "$REAL" -o "$T/cg.log" --key-process "$mode" --sandbox no \
		-p "$T/cg/$key.pem" -r "127.0.0.1:$EPORT" >/dev/null || exit 1
	TLSFILTER=$REAL
	# (--sandbox no: valgrind refuses the sandbox's RLIMIT_NOFILE, and a
	# connection whose key process failed would be counted. A failed
	# connection is never counted.)
	timeout 60 "$T/tlsload" conn -p "$TLSF_PORT" -n 1 -V 1.3 >/dev/null || {
		echo "tlsload failed under callgrind" >&2
		exit 1
	}
	tlsf_rc 60 >/dev/null
	kill_tree "$TLSF_PID"
	pid=$(sed -n 's/.* tlsfilter\[\([0-9]*\)\]: event=close .*/\1/p' "$T/cg.log" | tail -n 1)
	wait_for 30 file_has "$T/cg/cg.$pid" '^totals:'
	kp=-
	for f in "$T"/cg/cg.*; do
		[ "$f" = "$T/cg/cg.$pid" ] && continue
		kp=$(callgrind_annotate --inclusive=yes "$f" 2>/dev/null |
			awk '/keyproc.c:run_child / { gsub(",", "", $1); print $1; exit }')
		[ -n "$kp" ] || kp=$(callgrind_annotate --inclusive=yes "$f" 2>/dev/null |
			awk '/keyproc.c:keyproc_start / { gsub(",", "", $1); print $1; exit }')
	done
	echo "$(awk '/^totals:/ { print $2 }' "$T/cg/cg.$pid") ${kp:--}"
}

# cpu KEY MODE: append N connections' CPU times to $T/cpu-KEY-MODE.txt.
cpu() {
	local key=$1 mode=$2
	TLSFILTER=$T/cpuwrap
	socat_tlsfilter nofork --fork --no-log -- "$T/cpu-$key-$mode.txt" "$REAL" -o /dev/null \
		--key-process "$mode" -p "$CERTS/$key.pem" -r "127.0.0.1:$EPORT" >/dev/null || exit 1
	TLSFILTER=$REAL
	timeout 300 "$T/tlsload" conn -p "$TLSF_PORT" -n "$N" -V 1.3 >/dev/null || echo "tlsload failed" >&2
	wait_for 20 have_lines "$T/cpu-$key-$mode.txt" "$((N * r))"
	kill_tree "$TLSF_PID"
}
have_lines() { [ "$(grep -vc '^start' "$1" 2>/dev/null)" -ge "$2" ]; }
mean_ms() { awk '$1 != "start" { t += $2 + $3; n++ } END { printf "%.3f", t / n / 1000 }' "$1"; }

echo "key process cost: $ROUNDS round(s) of $N connections per case; $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"
for key in ecdsa rsa; do
	read -r ny ky <<<"$(instructions "$key" yes)"
	read -r nn kn <<<"$(instructions "$key" no)"
	for r in $(seq 1 "$ROUNDS"); do
		if [ $((r % 2)) = 1 ]; then cpu "$key" yes; cpu "$key" no; else cpu "$key" no; cpu "$key" yes; fi
	done
	cy=$(mean_ms "$T/cpu-$key-yes.txt")
	cn=$(mean_ms "$T/cpu-$key-no.txt")
	printf '%-6s instructions, network process: yes %s, no %s (%+.1f %%); key process: %s\n' \
		"$key" "$ny" "$nn" "$(awk -v a="$ny" -v b="$nn" 'BEGIN { print (a - b) * 100 / b }')" "$ky"
	printf '%-6s CPU per connection (ms), network + key process: yes %s, no %s (%+.1f %%)\n' \
		"$key" "$cy" "$cn" "$(awk -v a="$cy" -v b="$cn" 'BEGIN { print (a - b) * 100 / b }')"
done
