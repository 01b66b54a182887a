# tests/proxy-lib.sh — helpers shared by proxy-accept.test and
# proxy-parse.test (sourced after lib.sh): headers from helper.py pphdr,
# helper.py ppclient, and per-connection results from a private xinetd
# (xinetd_tlsfilter) that serves several connections in a row.

hdr() { "$PYTHON" "$HELPER" pphdr "$@"; }
# patch FILE OFFSET BYTE: overwrite one byte (hex) of FILE.
patch() {
	"$PYTHON" -c '
import sys
p, off, b = sys.argv[1], int(sys.argv[2]), int(sys.argv[3], 16)
d = bytearray(open(p, "rb").read()); d[off] = b; open(p, "wb").write(d)' "$@"
}
ppclient() {
	timeout 40 "$PYTHON" "$HELPER" ppclient --connect "127.0.0.1:$TLSF_PORT" --cafile "$CA" "$@"
}
exits() { grep -c 'EXIT: .*status=' "$T/$TLSF_ID.xinetd.log" 2>/dev/null || true; }
# mark: remember how many connections ended and log lines there are;
# after: wait for one more end; RC = its status, NEW = the new log lines.
mark() { M_EXITS=$(exits); M_LINES=$(wc -l <"$TLSF_LOG"); }
after() {
	wait_for "${1:-15}" test "$(exits)" -gt "$M_EXITS"
	RC=$(grep -E 'EXIT: .*status=' "$T/$TLSF_ID.xinetd.log" | sed -n "$((M_EXITS + 1))p" |
		sed -E 's/.*status=(-?[0-9]+).*/\1/')
	[ -n "$RC" ] || RC=124
	NEW=$(tail -n +"$((M_LINES + 1))" "$TLSF_LOG")
}
# new_field EVENT KEY: KEY on the NEW line with event=EVENT.
new_field() {
	printf '%s\n' "$NEW" | grep -E " event=$1( |\$)" | tail -n 1 | grep -oE " $2=(\"[^\"]*\"|[^ ]*)" |
		head -n 1 | sed -e "s/^ $2=//" -e 's/^"\(.*\)"$/\1/'
}

# good TAG HEADER-FILE WANT-PEER-IP [ppclient options]: a session through
# the header works; the close line's peer is WANT-PEER-IP.
good() {
	local tag=$1 file=$2 want=$3 msg="through $1 $RANDOM"
	shift 3
	mark
	ST=$(ppclient --proxy-file "$file" --send-str "$msg" --end notify --out "$T/good.out" "$@")
	after
	is "$(cat "$T/good.out" 2>/dev/null)" "$msg" "$tag: accepted, the echo came back whole"
	is "$RC" 0 "$tag: tlsfilter exits 0"
	like "$(new_field close peer)" "^\\[?$want\\]?:[0-9]+\$" "$tag: the close line's peer is $want ($(new_field close peer))"
	unlike "$NEW" ' event=refused ' "$tag: nothing refused"
}

# refused TAG HEADER-FILE [ppclient options]: exit 77, one refused line
# with a "proxy header: ..." reason and the balancer as peer, no byte back,
# the backend not contacted. REASON is left for further checks.
refused() {
	local tag=$1 file=$2 n0 raw=$T/refused.raw
	shift 2
	n0=$(backend_count echo '^accept ')
	mark
	ST=$(ppclient --proxy-file "$file" --raw-out "$raw" --timeout 20 "$@")
	after 20
	is "$RC" 77 "$tag: refused, exit 77"
	REASON=$(new_field refused reason)
	like "$REASON" '^proxy header: .+' "$tag: event=refused reason=\"$REASON\""
	is "$(new_field refused peer)" "127.0.0.1:$(json_get "$ST" local_port)" \
		"$tag: peer= is the balancer's address and port (the header was not believed)"
	is "$(printf '%s\n' "$NEW" | grep -c ' event=')" 1 "$tag: exactly one log line"
	is "$(json_get "$ST" raw_received)/$(json_get "$ST" handshake)" 0/false \
		"$tag: not one byte came back (no alert, no ServerHello)"
	is "$(backend_count echo '^accept ')" "$n0" "$tag: the backend was never contacted"
}

