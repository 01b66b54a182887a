# tests/lib.sh — shared helpers for tlsfilter's TAP shell tests.
#
# Sourced by every tests/*.test (run by bash from the top build directory by
# automake's TAP driver). Provides: TAP output, skips, a per-test scratch
# directory, process tracking with guaranteed clean-up, free loopback ports,
# cached test certificates, plaintext backends (tests/helper.py) and ways to
# launch tlsfilter: socat (socketpair, pipes, nofork) and a private xinetd.
#
# Environment (set by AM_TESTS_ENVIRONMENT in Makefile.am; defaults let a
# test run by hand from the build directory: `bash ../main/tests/cli.test`):
#   TLSFILTER  the binary under test
#   builddir   the top build directory (the certificate cache is keyed on it)
#   TLSFILTER_WRAPPER  replaces TLSFILTER (see below)
#   TLSF_KEEP=1  keep the scratch directory for post-mortem reading

set -u

TESTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${builddir:=$PWD}"
: "${TLSFILTER:=$builddir/src/tlsfilter}"
# TLSFILTER_WRAPPER=PROGRAM (scripts/sanitize.sh: valgrind): the tests run
# PROGRAM wherever they would run tlsfilter; it must exec the real binary.
[ -n "${TLSFILTER_WRAPPER:-}" ] && TLSFILTER=$TLSFILTER_WRAPPER
HELPER="$TESTS_DIR/helper.py"
PYTHON=${PYTHON:-python3}
# A version manager's shim (pyenv) costs most of a second per start: ask the
# interpreter once for its real path, so that each helper.py call is quick.
_py=$("$PYTHON" -c 'import sys; print(sys.executable)' 2>/dev/null) &&
	[ -x "$_py" ] && PYTHON=$_py
unset _py
TEST_NAME=$(basename "$0" .test)

# ------------------------------------------------------------------ TAP

_tap_n=0
_tap_fail=0

# ok STATUS DESCRIPTION...: one TAP result; STATUS 0 means pass.
ok() {
	local st=$1
	shift
	_tap_n=$((_tap_n + 1))
	if [ "$st" -eq 0 ] 2>/dev/null; then
		echo "ok $_tap_n - $*"
	else
		echo "not ok $_tap_n - $*"
		_tap_fail=$((_tap_fail + 1))
	fi
	return "$st"
}

# check DESCRIPTION CMD...: pass when CMD succeeds.
check() {
	local d=$1
	shift
	"$@"
	ok $? "$d"
}

# check_not DESCRIPTION CMD...: pass when CMD fails.
check_not() {
	local d=$1
	shift
	if "$@"; then ok 1 "$d"; else ok 0 "$d"; fi
}

# is GOT WANT DESCRIPTION: string equality, with a diagnostic on failure.
is() {
	if [ "$1" = "$2" ]; then
		ok 0 "$3"
	else
		ok 1 "$3"
		diag "got:  '$1'" "want: '$2'"
		return 1
	fi
}

# isnt GOT UNWANTED DESCRIPTION
isnt() {
	if [ "$1" != "$2" ]; then
		ok 0 "$3"
	else
		ok 1 "$3"
		diag "got the unwanted value '$1'"
		return 1
	fi
}

# like TEXT ERE DESCRIPTION / unlike TEXT ERE DESCRIPTION
like() {
	if printf '%s\n' "$1" | grep -Eq -- "$2"; then
		ok 0 "$3"
	else
		ok 1 "$3"
		diag "'$1'" "does not match /$2/"
		return 1
	fi
}
unlike() {
	if printf '%s\n' "$1" | grep -Eq -- "$2"; then
		ok 1 "$3"
		diag "'$1'" "matches /$2/ but must not"
		return 1
	else
		ok 0 "$3"
	fi
}

# skip REASON DESCRIPTION [COUNT]
skip() {
	local i n=${3:-1}
	for ((i = 0; i < n; i++)); do
		_tap_n=$((_tap_n + 1))
		echo "ok $_tap_n - $2 # SKIP $1"
	done
}

# diag LINE...: TAP comments (each line of each argument gets a '#').
diag() {
	local l
	for l in "$@"; do
		printf '%s\n' "$l" | sed 's/^/# /'
	done
}

# diag_file FILE [LINES]: the tail of a file as TAP comments.
diag_file() {
	if [ -f "$1" ]; then
		diag "--- $1:"
		tail -n "${2:-20}" "$1" | cut -c1-300 | sed 's/^/#   /'
	else
		diag "--- $1: (missing)"
	fi
}

# skip_all REASON: the whole file is skipped (only before the first result).
skip_all() {
	echo "1..0 # SKIP $*"
	exit 0
}

# done_testing: the plan, at the end (the TAP driver accepts a late plan;
# a test that dies early has none and is reported as an error).
done_testing() {
	echo "1..$_tap_n"
	exit 0
}

need_root() {
	[ "$(id -u)" -eq 0 ] || skip_all "needs root"
}

have_tool() {
	command -v "$1" >/dev/null 2>&1
}

need_tool() {
	local t
	for t in "$@"; do
		have_tool "$t" || skip_all "$t not installed"
	done
}

# asan_build: the binary under test was built with AddressSanitizer
# (scripts/sanitize.sh asan): its shadow memory makes a scan of the
# process's memory meaningless, and it catches SIGSEGV itself (and aborts).
asan_build() { grep -qa __asan_init "$TLSFILTER" 2>/dev/null; }

need_tlsfilter() {
	[ -x "$TLSFILTER" ] || skip_all "no tlsfilter binary at $TLSFILTER"
}

# ------------------------------------------------------- scratch + processes

T=$(mktemp -d "${TMPDIR:-/tmp}/tlsf-$TEST_NAME.XXXXXX") || exit 99
_pids=()

# spawn CMD...: start CMD in the background in its own process group (so that
# its children go with it); sets LAST_PID.
spawn() {
	setsid "$@" &
	LAST_PID=$!
	_pids+=("$LAST_PID")
}

# kill_tree PID: TERM its group and itself, then KILL what is left after 2 s.
kill_tree() {
	local p=$1 i
	kill -TERM -- "-$p" 2>/dev/null
	kill -TERM "$p" 2>/dev/null
	for ((i = 0; i < 40; i++)); do
		kill -0 "$p" 2>/dev/null || break
		sleep 0.05
	done
	kill -KILL -- "-$p" 2>/dev/null
	kill -KILL "$p" 2>/dev/null
	wait "$p" 2>/dev/null
	return 0
}

_cleanup() {
	local p
	for p in "${_pids[@]}"; do
		kill_tree "$p"
	done
	if [ "${TLSF_KEEP:-0}" = 1 ]; then
		echo "# scratch kept in $T"
	else
		rm -rf "$T"
	fi
}
trap _cleanup EXIT
trap 'exit 130' INT TERM HUP

# wait_for SECS CMD...: poll CMD every 50 ms until it succeeds or SECS pass.
# CMD's arguments are expanded once, by the caller: a condition on a count
# that changes goes in a function or in single quotes after eval
# (wait_for 5 eval 'test "$(count ...)" -ge 2'), never as test "$(...)".
wait_for() {
	local secs=$1 i n
	shift
	n=$(awk "BEGIN { print int($secs * 20) }")
	for ((i = 0; i < n; i++)); do
		"$@" && return 0
		sleep 0.05
	done
	"$@"
}

file_has() { grep -Eq -- "$2" "$1" 2>/dev/null; }
file_size() { stat -c %s "$1" 2>/dev/null || echo 0; }
sha_of() { sha256sum "$1" | cut -d' ' -f1; }

# ------------------------------------------------------------------ ports

# is_listening PORT: a TCP socket in LISTEN state on PORT (v4 or v6).
is_listening() {
	local hex
	hex=$(printf '%04X' "$1")
	grep -Eq "^ *[0-9]+: [0-9A-F]+:$hex [0-9A-F]+:[0-9A-F]+ 0A " \
		/proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# port_in_use PORT: any TCP socket (any state) uses PORT locally.
port_in_use() {
	local hex
	hex=$(printf '%04X' "$1")
	grep -Eq "^ *[0-9]+: [0-9A-F]+:$hex " /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# free_port: a TCP port on the loopback that nothing uses, below the
# ephemeral range, not handed out before in this test.
free_port() {
	local p i
	for ((i = 0; i < 200; i++)); do
		p=$((20000 + (RANDOM * 32768 + RANDOM) % 12000))
		grep -qx "$p" "$T/.ports" 2>/dev/null && continue
		port_in_use "$p" && continue
		echo "$p" >>"$T/.ports"
		echo "$p"
		return 0
	done
	return 1
}

wait_listen() { wait_for "${2:-10}" is_listening "$1"; }

have_ipv6_loopback() {
	[ -f /proc/net/if_inet6 ] && grep -q ' lo$' /proc/net/if_inet6 &&
		"$PYTHON" -c 'import socket; s=socket.socket(socket.AF_INET6); s.bind(("::1",0))' 2>/dev/null
}

# ------------------------------------------------------------ certificates
#
# Generated once per build directory (cached under $TMPDIR, keyed on the
# build directory's path, regenerated when older than 20 days) under a lock,
# so parallel tests share one set. Layout in $CERTS:
#   ca.pem           root CA (the clients' trust anchor)
#   ecdsa.pem        key + leaf + intermediate (stunnel layout), P-256
#   rsa.pem          same with RSA-2048,  ed25519.pem  same with Ed25519
#   ecdsa-cert.pem + ecdsa-key.pem   the P-256 set with the key separate
#   mismatch.pem     another key + the P-256 leaf + intermediate
#   expired.pem      key + a leaf that expired in 2021 + intermediate
#   wrongorder.pem   key + intermediate + leaf (chain in the wrong order)
# Leaves: CN=localhost, SAN DNS:localhost, IP:127.0.0.1, IP:::1.
# For several certificates chosen by SNI and key type (leaf + intermediate
# after the key, issued by the intermediate; the O= tells them apart):
#   sni-ecdsa.pem    P-256,    O=tlsfilter ECDSA server, CN=localhost
#   sni-rsa.pem      RSA-2048, O=tlsfilter RSA server,   CN=localhost
#   sni-mail.pem     P-256,    O=tlsfilter mail server,  CN=mail.example.org
#                    (SAN DNS:mail.example.org only)
# Client certificates (client-NAME.crt + client-NAME.key; NAME.pem is key +
# certificate), all tls_www_client, O=Example:
#   good      CN=alice, SAN email alice@example.org, issued by the root CA
#   other     CN=bob, SAN email bob@example.org, root CA (the "not allowed" one)
#   expired   CN=carol, root CA, expired in 2021
#   revoked   CN=mallory, root CA, listed in crl.pem (the root CA's CRL)
#   untrusted CN=eve, issued by other-ca.pem (a CA the server does not know)

_certs_generate() {
	local d=$1
	cat >"$d/ca.tmpl" <<-'EOF'
		cn = "tlsfilter test root CA"
		ca
		cert_signing_key
		crl_signing_key
		expiration_days = 3650
	EOF
	cat >"$d/int.tmpl" <<-'EOF'
		cn = "tlsfilter test intermediate CA"
		ca
		cert_signing_key
		expiration_days = 3650
	EOF
	cat >"$d/leaf.tmpl" <<-'EOF'
		cn = "localhost"
		dns_name = "localhost"
		ip_address = "127.0.0.1"
		ip_address = "::1"
		tls_www_server
		signing_key
		encryption_key
		expiration_days = 365
	EOF
	cat >"$d/expired.tmpl" <<-'EOF'
		cn = "localhost"
		dns_name = "localhost"
		ip_address = "127.0.0.1"
		tls_www_server
		signing_key
		activation_date = "2020-01-01 00:00:00 UTC"
		expiration_date = "2021-01-01 00:00:00 UTC"
	EOF
	local ct="certtool --no-text"
	$ct --generate-privkey --key-type ecdsa --curve secp256r1 --outfile "$d/ca.key" &&
		$ct --generate-self-signed --load-privkey "$d/ca.key" \
			--template "$d/ca.tmpl" --outfile "$d/ca.pem" &&
		$ct --generate-privkey --key-type ecdsa --curve secp256r1 --outfile "$d/int.key" &&
		$ct --generate-certificate --load-privkey "$d/int.key" \
			--load-ca-certificate "$d/ca.pem" --load-ca-privkey "$d/ca.key" \
			--template "$d/int.tmpl" --outfile "$d/int.crt" || return 1
	local kind
	for kind in ecdsa rsa ed25519 other; do
		case $kind in
		ecdsa | other) $ct --generate-privkey --key-type ecdsa --curve secp256r1 --outfile "$d/$kind.key" ;;
		rsa) $ct --generate-privkey --key-type rsa --bits 2048 --outfile "$d/$kind.key" ;;
		ed25519) $ct --generate-privkey --key-type ed25519 --outfile "$d/$kind.key" ;;
		esac || return 1
		[ "$kind" = other ] && continue
		$ct --generate-certificate --load-privkey "$d/$kind.key" \
			--load-ca-certificate "$d/int.crt" --load-ca-privkey "$d/int.key" \
			--template "$d/leaf.tmpl" --outfile "$d/$kind.crt" || return 1
		cat "$d/$kind.key" "$d/$kind.crt" "$d/int.crt" >"$d/$kind.pem"
	done
	$ct --generate-certificate --load-privkey "$d/ecdsa.key" \
		--load-ca-certificate "$d/int.crt" --load-ca-privkey "$d/int.key" \
		--template "$d/expired.tmpl" --outfile "$d/expired.crt" 2>/dev/null || return 1
	cat "$d/ecdsa.crt" "$d/int.crt" >"$d/ecdsa-cert.pem"
	cp "$d/ecdsa.key" "$d/ecdsa-key.pem"
	cat "$d/other.key" "$d/ecdsa.crt" "$d/int.crt" >"$d/mismatch.pem"
	cat "$d/ecdsa.key" "$d/expired.crt" "$d/int.crt" >"$d/expired.pem"
	cat "$d/ecdsa.key" "$d/int.crt" "$d/ecdsa.crt" >"$d/wrongorder.pem"
	_certs_generate_sni "$d" && _certs_generate_clients "$d" || return 1
	chmod 600 "$d"/*.pem "$d"/*.key
}

# Server certificates for sni.test: two key types for "localhost", one
# ECDSA certificate for "mail.example.org".
_certs_generate_sni() {
	local d=$1 ct="certtool --no-text" kind org cn
	for kind in sni-ecdsa sni-rsa sni-mail; do
		case $kind in
		sni-ecdsa) org="tlsfilter ECDSA server" cn=localhost ;;
		sni-rsa) org="tlsfilter RSA server" cn=localhost ;;
		sni-mail) org="tlsfilter mail server" cn=mail.example.org ;;
		esac
		{
			echo "organization = \"$org\""
			echo "cn = \"$cn\""
			echo "dns_name = \"$cn\""
			[ "$cn" = localhost ] && echo 'ip_address = "127.0.0.1"'
			echo "tls_www_server"
			echo "signing_key"
			echo "encryption_key"
			echo "expiration_days = 365"
		} >"$d/$kind.tmpl"
		if [ $kind = sni-rsa ]; then
			$ct --generate-privkey --key-type rsa --bits 2048 --outfile "$d/$kind.key"
		else
			$ct --generate-privkey --key-type ecdsa --curve secp256r1 --outfile "$d/$kind.key"
		fi || return 1
		$ct --generate-certificate --load-privkey "$d/$kind.key" \
			--load-ca-certificate "$d/int.crt" --load-ca-privkey "$d/int.key" \
			--template "$d/$kind.tmpl" --outfile "$d/$kind.crt" || return 1
		cat "$d/$kind.key" "$d/$kind.crt" "$d/int.crt" >"$d/$kind.pem"
	done
}

# Client certificates for clientcert.test (see the list above), the CRL
# that revokes mallory's, and the other CA that issued eve's.
_certs_generate_clients() {
	local d=$1 ct="certtool --no-text" name cn issuer
	cat >"$d/other-ca.tmpl" <<-'EOF'
		cn = "tlsfilter test other CA"
		ca
		cert_signing_key
		expiration_days = 3650
	EOF
	$ct --generate-privkey --key-type ecdsa --curve secp256r1 --outfile "$d/other-ca.key" &&
		$ct --generate-self-signed --load-privkey "$d/other-ca.key" \
			--template "$d/other-ca.tmpl" --outfile "$d/other-ca.pem" || return 1
	for name in good other expired revoked untrusted; do
		case $name in
		good) cn=alice ;;
		other) cn=bob ;;
		expired) cn=carol ;;
		revoked) cn=mallory ;;
		untrusted) cn=eve ;;
		esac
		{
			echo 'organization = "Example"'
			echo "cn = \"$cn\""
			echo "email = \"$cn@example.org\""
			echo "tls_www_client"
			echo "signing_key"
			if [ $name = expired ]; then
				echo 'activation_date = "2020-01-01 00:00:00 UTC"'
				echo 'expiration_date = "2021-01-01 00:00:00 UTC"'
			else
				echo "expiration_days = 365"
			fi
		} >"$d/client-$name.tmpl"
		issuer=ca
		[ $name = untrusted ] && issuer=other-ca
		$ct --generate-privkey --key-type ecdsa --curve secp256r1 \
			--outfile "$d/client-$name.key" &&
			$ct --generate-certificate --load-privkey "$d/client-$name.key" \
				--load-ca-certificate "$d/$issuer.pem" --load-ca-privkey "$d/$issuer.key" \
				--template "$d/client-$name.tmpl" --outfile "$d/client-$name.crt" \
				2>/dev/null || return 1
		cat "$d/client-$name.key" "$d/client-$name.crt" >"$d/client-$name.pem"
	done
	cat >"$d/crl.tmpl" <<-'EOF'
		crl_next_update = 365
		crl_number = 1
	EOF
	$ct --generate-crl --load-ca-privkey "$d/ca.key" --load-ca-certificate "$d/ca.pem" \
		--load-certificate "$d/client-revoked.crt" --template "$d/crl.tmpl" \
		--outfile "$d/crl.pem"
}

# The cache's layout version, written in $CERTS/done: a cache made by an
# older lib.sh (another version, or none) is made anew.
_CERTS_VERSION=2

# need_certs: sets CERTS (the directory above), generating it if needed.
need_certs() {
	have_tool certtool || skip_all "certtool (gnutls-bin) not installed"
	local key base
	key=$(printf '%s' "$builddir" | cksum | cut -d' ' -f1)
	base="${TMPDIR:-/tmp}/tlsfilter-tests-$(id -u)-$key"
	CERTS="$base/certs"
	mkdir -p "$base" || skip_all "cannot create $base"
	(
		flock -w 60 9 || exit 1
		if [ -f "$CERTS/done" ] && [ -n "$(find "$CERTS/done" -mtime -20)" ] &&
			[ "$(cat "$CERTS/done")" = "$_CERTS_VERSION" ]; then
			exit 0
		fi
		rm -rf "$CERTS.new" "$CERTS"
		mkdir "$CERTS.new" && _certs_generate "$CERTS.new" 2>"$base/gen.log" &&
			echo "$_CERTS_VERSION" >"$CERTS.new/done" && mv "$CERTS.new" "$CERTS"
	) 9>"$base/lock" || skip_all "could not generate test certificates"
	CA="$CERTS/ca.pem"
}

# ------------------------------------------------------------- backends

# start_backend NAME MODE LISTEN [helper options...]: a plaintext service
# from helper.py. Its log is $T/NAME.log; waits until it listens.
start_backend() {
	local name=$1 mode=$2 listen=$3
	shift 3
	rm -f "$T/$name.ready"
	spawn "$PYTHON" "$HELPER" serve "$mode" --listen "$listen" \
		--ready "$T/$name.ready" --log "$T/$name.log" "$@" \
		2>>"$T/$name.stderr"
	touch "$T/$name.log"
	if ! wait_for 10 test -f "$T/$name.ready"; then
		diag "backend $name ($mode on $listen) did not start"
		diag_file "$T/$name.stderr"
		return 1
	fi
}

# backend_count NAME ERE: how many lines of the backend's log match.
backend_count() {
	if [ -f "$T/$1.log" ]; then grep -Ec -- "$2" "$T/$1.log"; else echo 0; fi
}

# backend_field NAME EVENT KEY: KEY's value on the last EVENT line.
backend_field() {
	grep -E "^$2( |$)" "$T/$1.log" 2>/dev/null | tail -n 1 |
		grep -oE "(^| )$3=[^ ]*" | sed "s/^ *$3=//"
}

# ------------------------------------------------------------ tlsfilter log

# log_line FILE EVENT: the last line of tlsfilter's -o log with event=EVENT.
log_line() { grep -E " event=$2( |$)" "$1" 2>/dev/null | tail -n 1; }

# log_field FILE EVENT KEY: KEY's value on that line (quotes removed).
# Keys may repeat (backend=ADDR ... backend=eof): N-th occurrence with
# log_field_n FILE EVENT KEY N.
log_field() { log_field_n "$1" "$2" "$3" 1; }
log_field_n() {
	log_line "$1" "$2" | grep -oE " $3=(\"[^\"]*\"|[^ ]*)" | sed -n "${4}p" |
		sed -e "s/^ $3=//" -e 's/^"\(.*\)"$/\1/'
}

# log_parse FILE EVENT: without a process per field (for tests that look at
# many lines): LOGF = the key=value pairs of the last event=EVENT line of
# FILE (quotes removed; a repeated key keeps its first value), LOGN = how
# many event= lines FILE has. An empty LOGF when there is no such line.
declare -A LOGF
LOGN=0
log_parse() {
	local l line='' rest k v re=" event=$2( |\$)" kv=' ([a-z_0-9]+)=("[^"]*"|[^ ]*)(.*)'
	LOGF=()
	LOGN=0
	while IFS= read -r l; do
		[[ $l == *" event="* ]] && LOGN=$((LOGN + 1))
		[[ $l =~ $re ]] && line=$l
	done <"$1"
	rest=$line
	while [[ $rest =~ $kv ]]; do
		k=${BASH_REMATCH[1]} v=${BASH_REMATCH[2]} rest=${BASH_REMATCH[3]}
		[[ $v == \"*\" ]] && v=${v:1:${#v}-2}
		[ -n "${LOGF[$k]+set}" ] || LOGF[$k]=$v
	done
}

# ------------------------------------------------------------ launchers
#
# Every launcher starts ONE listener on a fresh loopback port and records:
#   TLSF_PORT  the port      TLSF_PID   the launcher's pid
#   TLSF_LOG   tlsfilter's -o log file (passed as the first option)
# tlsfilter's exit status for connection number N of this launcher is
# written to $T/$TLSF_ID.rc.N by a tiny wrapper (socat modes) or read from
# xinetd's own log (xinetd).

_launch_n=0

# _launch_new: the next launcher's TLSF_ID, an empty TLSF_LOG and its
# TLSF_RCDIR (the caller sets TLSF_PORT).
_launch_new() {
	_launch_n=$((_launch_n + 1))
	TLSF_ID="tf$_launch_n"
	TLSF_LOG="$T/$TLSF_ID.log"
	TLSF_RCDIR="$T/$TLSF_ID.rc"
	mkdir -p "$TLSF_RCDIR"
	: >"$TLSF_LOG"
}

# _wrapper ARGS...: writes $T/$TLSF_ID.run, the program socat starts: it
# runs tlsfilter with ARGS (quoted here, so socat's address syntax never sees
# them: ':' and ',' are separators there), lets go of its own copies of the
# client's fds (so that tlsfilter's close is the real close) and records
# tlsfilter's exit status in $TLSF_RCDIR/rc.PID. socat sends SIGTERM to its
# child as soon as both directions are closed, which can land between
# tlsfilter's last log line and its exit; the wrapper takes that signal
# (noted in rc.PID.term) and does not pass it on, so the status recorded is
# the one tlsfilter chose. socat has closed its ends by then, so tlsfilter
# must end by itself. The wrapper itself exits 0: socat, told of a
# non-zero status, ends the whole session at once and drops the bytes it
# has read but not yet forwarded (seen: the last reply before a 76).
_wrapper() {
	local w="$T/$TLSF_ID.run"
	{
		echo '#!/bin/sh'
		printf 'trap '\''echo TERM >%q/rc.$$.term'\'' TERM HUP INT\n' "$TLSF_RCDIR"
		echo '# a background job gets /dev/null as stdin unless fd 0 is given explicitly'
		echo 'exec 3<&0 4>&1'
		printf '%q ' "$TLSFILTER" "$@"
		echo '<&3 >&4 3<&- 4>&- &'
		echo 'child=$!'
		echo 'exec 0</dev/null 1>/dev/null 3<&- 4>&-'
		echo 'wait "$child"; rc=$?'
		echo 'while kill -0 "$child" 2>/dev/null; do wait "$child"; rc=$?; done'
		echo '# a wait cut short by the trapped TERM says 143 although the child'
		echo '# ended by itself: the shell still holds its real status'
		echo 'wait "$child" 2>/dev/null; again=$?'
		echo '[ "$again" -ne 127 ] && rc=$again'
		printf 'echo $rc >%q/rc.$$\n' "$TLSF_RCDIR"
		echo '# the status is in the file: socat, told of a non-zero one, ends the'
		echo '# session at once and drops what it has not forwarded yet'
		echo 'exit 0'
	} >"$w"
	chmod +x "$w"
	echo "$w"
}

# socat_tlsfilter MODE [-t SECS] [--fork] [--no-log] -- TLSFILTER-ARGS...
#   MODE socketpair: EXEC:...            (fds 0/1 are an AF_UNIX socketpair)
#        pipes:      EXEC:...,pipes      (fd 0 and fd 1 are two pipes)
#        nofork:     EXEC:...,nofork     (fds 0/1 are the TCP socket)
# Without --fork it accepts one connection. tlsfilter gets "-o $TLSF_LOG"
# first, unless --no-log is given (then its arguments are exactly
# TLSFILTER-ARGS). Its stderr (not the socket here) goes to
# $T/$TLSF_ID.stderr.
socat_tlsfilter() {
	local mode=$1 t=0.5 fork= opt nolog=0
	shift
	while [ $# -gt 0 ]; do
		case $1 in
		-t) t=$2; shift 2 ;;
		--fork) fork=,fork; shift ;;
		--no-log) nolog=1; shift ;;
		--) shift; break ;;
		*) break ;;
		esac
	done
	_launch_new
	TLSF_PORT=$(free_port)
	case $mode in
	socketpair) opt= ;;
	pipes) opt=,pipes ;;
	nofork) opt=,nofork ;;
	*) echo "socat_tlsfilter: bad mode $mode" >&2; return 1 ;;
	esac
	local prog
	if [ "$nolog" = 1 ]; then
		prog=$(_wrapper "$@")
	else
		prog=$(_wrapper -o "$TLSF_LOG" "$@")
	fi
	spawn socat -d -d -t "$t" \
		"TCP-LISTEN:$TLSF_PORT,bind=127.0.0.1,reuseaddr$fork" \
		"EXEC:$prog$opt" 2>"$T/$TLSF_ID.stderr"
	TLSF_PID=$LAST_PID
	if ! wait_listen "$TLSF_PORT" 10; then
		diag "socat did not listen on $TLSF_PORT"
		diag_file "$T/$TLSF_ID.stderr"
		return 1
	fi
}

# tlsf_rc [SECS]: exit status of the (last) tlsfilter of the current
# launcher, waiting up to SECS (default 15) for it; 124 = still running,
# 125 = never ran.
tlsf_rc() {
	local secs=${1:-15} f
	if ! wait_for "$secs" _tlsf_rc_ready; then
		echo 124
		return
	fi
	f=$(ls -t "$TLSF_RCDIR"/rc.* 2>/dev/null | grep -v '\.term$' | head -n 1)
	cat "$f"
}
_tlsf_rc_ready() { ls "$TLSF_RCDIR" 2>/dev/null | grep -qv '\.term$'; }

# xinetd_tlsfilter [--env VAR=VALUE]... [--user USER] [--no-log] --
# TLSFILTER-ARGS...: a private xinetd (root only) on a fresh port whose one
# service runs tlsfilter (as USER, default root) with fds 0, 1 and 2 on the
# client socket. The -o log is passed first unless --no-log is given. Exit
# statuses: xinetd_rc reads xinetd's EXIT lines, xinetd_last_pid its START
# lines.
xinetd_tlsfilter() {
	local envs=() nolog=0 user=root
	while [ $# -gt 0 ]; do
		case $1 in
		--env) envs+=("$2"); shift 2 ;;
		--user) user=$2; shift 2 ;;
		--no-log) nolog=1; shift ;;
		--) shift; break ;;
		*) break ;;
		esac
	done
	_launch_new
	TLSF_PORT=$(free_port)
	local args="$*"
	[ "$nolog" = 1 ] || args="-o $TLSF_LOG $*"
	local conf="$T/$TLSF_ID.xinetd.conf"
	{
		echo "defaults"
		echo "{"
		echo "	log_type = FILE $T/$TLSF_ID.xinetd.log"
		echo "	log_on_success = PID HOST EXIT DURATION"
		echo "	log_on_failure = HOST"
		echo "}"
		echo "service tlsfilter-test-$TLSF_ID"
		echo "{"
		echo "	type = UNLISTED"
		echo "	id = tlsfilter-test-$TLSF_ID"
		echo "	port = $TLSF_PORT"
		echo "	bind = 127.0.0.1"
		echo "	socket_type = stream"
		echo "	protocol = tcp"
		echo "	wait = no"
		echo "	user = $user"
		echo "	instances = 20"
		echo "	per_source = UNLIMITED"
		echo "	cps = 1000 1"
		echo "	flags = REUSE"
		echo "	disable = no"
		echo "	server = $TLSFILTER"
		echo "	server_args = $args"
		local e
		for e in "${envs[@]}"; do
			echo "	env = $e"
		done
		echo "}"
	} >"$conf"
	xinetd_start "$conf" "$TLSF_PORT"
}

# xinetd_new_id: a fresh TLSF_ID (with TLSF_LOG, an empty file, and
# TLSF_RCDIR) for a configuration the test writes itself.
# xinetd_start CONF PORT: a private xinetd (root only) with that complete
# configuration file CONF, waiting until it listens on PORT; sets TLSF_PID
# and TLSF_PORT. For xinetd_rc and xinetd_last_pid, CONF must log to
# $T/$TLSF_ID.xinetd.log with PID and EXIT.
xinetd_new_id() { _launch_new; }
xinetd_start() {
	TLSF_PORT=$2
	spawn xinetd -dontfork -pidfile "$T/$TLSF_ID.xinetd.pid" -f "$1" \
		2>"$T/$TLSF_ID.stderr"
	TLSF_PID=$LAST_PID
	if ! wait_listen "$TLSF_PORT" 10; then
		diag "xinetd did not listen on $TLSF_PORT"
		diag_file "$T/$TLSF_ID.stderr"
		diag_file "$T/$TLSF_ID.xinetd.log"
		return 1
	fi
}

# sa_start ARGS...: tlsfilter ARGS (after -o LOG) as a listener under
# systemd-socket-activate (LISTEN_FDS, as a socket unit with Accept=no) on a
# fresh port; TLSF_PID is the listener (the activator execs it). The
# activator passes only the variables named with -E: the sanitizers' options
# (scripts/sanitize.sh: their report files) and the key process's test hook
# are named when set.
sa_start() {
	local envs=() v
	for v in ASAN_OPTIONS UBSAN_OPTIONS TLSFILTER_TEST_KEYPROC; do
		[ -n "${!v:-}" ] && envs+=(-E "$v")
	done
	xinetd_new_id
	TLSF_PORT=$(free_port)
	spawn systemd-socket-activate "${envs[@]}" -l "127.0.0.1:$TLSF_PORT" "$TLSFILTER" \
		-o "$TLSF_LOG" "$@" 2>"$T/$TLSF_ID.stderr"
	TLSF_PID=$LAST_PID
	wait_listen "$TLSF_PORT" 10
}

# xinetd_last_pid [SECS]: the pid of the last server xinetd started (its
# START line), waiting up to SECS (default 10); empty if none.
xinetd_last_pid() {
	wait_for "${1:-10}" file_has "$T/$TLSF_ID.xinetd.log" 'START: .*pid=' || return 0
	grep -oE 'START: .*pid=[0-9]+' "$T/$TLSF_ID.xinetd.log" | tail -n 1 | sed 's/.*pid=//'
}

# xinetd_rc [SECS]: exit status of the last tlsfilter xinetd started, from
# its "EXIT: ... status=N" log line.
xinetd_rc() {
	local secs=${1:-15}
	if ! wait_for "$secs" file_has "$T/$TLSF_ID.xinetd.log" 'EXIT: .*status='; then
		echo 124
		return
	fi
	grep -E 'EXIT: .*status=' "$T/$TLSF_ID.xinetd.log" | tail -n 1 |
		sed -E 's/.*status=(-?[0-9]+).*/\1/'
}

# ------------------------------------------------------------ clients

# pyclient ARGS...: helper.py's TLS client against 127.0.0.1:$TLSF_PORT
# trusting the test CA; prints its JSON status. Bounded by timeout(1).
pyclient() {
	timeout 40 "$PYTHON" "$HELPER" client --connect "127.0.0.1:$TLSF_PORT" \
		--cafile "$CA" "$@"
}

# s_client OUT ARGS...: openssl s_client ARGS with nothing to send, reading
# until the server closes (-ign_eof), bounded by timeout(1); its stdout and
# stderr go to OUT. Returns the client's status.
s_client() {
	local out=$1
	shift
	timeout 15 openssl s_client -ign_eof "$@" </dev/null >"$out" 2>&1
}

# gnutls_cli OUT ARGS...: gnutls-cli ARGS, its stdin held open (gnutls-cli
# ends the session at EOF on stdin, before the server has said a word) until
# it ends by itself when the server closes, or timeout(1) ends it after 15 s;
# its stdout and stderr go to OUT. Returns the client's status.
gnutls_cli() {
	local out=$1 fd hold rc
	shift
	exec {fd}< <(exec sleep 30)
	hold=$!
	timeout 15 gnutls-cli "$@" <&"$fd" >"$out" 2>&1
	rc=$?
	exec {fd}<&-
	kill "$hold" 2>/dev/null
	return "$rc"
}

# tlsf_next_rc [SECS]: with socat_tlsfilter --fork (a tlsfilter per
# connection), RC = the exit status of the first of the current launcher's
# tlsfilters to have ended whose status was not read before; 124 if none
# has ended within SECS (default 10). Call it once per connection, after
# the connection: the statuses then come in the order of the connections.
# Without a process per call (a test may make a hundred connections).
declare -A _tlsf_seen
tlsf_next_rc() {
	local f first i n
	n=$(awk "BEGIN { print int(${1:-10} * 20) }")
	RC=124
	for ((i = 0; i <= n; i++)); do
		first=
		for f in "$TLSF_RCDIR"/rc.*; do
			[[ $f == *.term || ! -s $f || -n ${_tlsf_seen[$f]+x} ]] && continue
			[[ -z $first || $f -ot $first ]] && first=$f
		done
		if [ -n "$first" ]; then
			_tlsf_seen[$first]=1
			read -r RC <"$first"
			return 0
		fi
		sleep 0.05
	done
}

# cert_subject FILE / cert_issuer FILE: the certificate's DN in RFC 4514
# (RFC 2253) order, as openssl prints it. cert_sha256 FILE: its SHA-256
# fingerprint, lowercase hex without colons.
cert_subject() { openssl x509 -in "$1" -noout -subject -nameopt RFC2253 | sed 's/^subject=//'; }
cert_issuer() { openssl x509 -in "$1" -noout -issuer -nameopt RFC2253 | sed 's/^issuer=//'; }
cert_sha256() {
	openssl x509 -in "$1" -noout -fingerprint -sha256 | sed 's/^.*=//; s/://g' | tr A-F a-f
}

# json_get JSON KEY: one value of pyclient's status.
json_get() {
	printf '%s' "$1" | "$PYTHON" -c '
import json, sys
v = json.load(sys.stdin).get(sys.argv[1])
print("" if v is None else (str(v).lower() if isinstance(v, bool) else v))' "$2"
}

# gen_file SIZE SEED OUT: deterministic pseudo-random data.
gen_file() { "$PYTHON" "$HELPER" gen "$1" "$2" "$3"; }

# socat_peer: the client address:port socat logged for the last accept.
socat_peer() {
	grep -oE 'accepting connection from AF=[0-9]+ [^ ]+' "$T/$TLSF_ID.stderr" |
		tail -n 1 | awk '{print $NF}'
}
