#!/bin/sh
# demo.sh: build tlsfilter and show its one job, start to finish.
#
#   sh scripts/demo.sh
#
# On a fresh Debian 12, as root: installs the dependencies (scripts/deps.sh),
# builds (./autogen.sh, ./configure, make), makes a throw-away CA and server
# certificate, starts a toy plaintext IMAP server on a loopback port, starts
# a private xinetd (its own configuration, not /etc/xinetd.conf) that runs
# tlsfilter in front of it, logs in with curl over TLS, and prints what the
# client saw, what the backend received in clear, and tlsfilter's log line.
# Everything it started and wrote is removed on exit.
#
# Without root it cannot install packages or drop privileges: it expects the
# dependencies to be there and uses socat instead of xinetd as the launcher.
#
# Environment:
#   TLSFILTER_BUILD_DIR=DIR  build in DIR (VPATH, SRCDIR/configure) instead of
#                            in the source tree; needs an unconfigured tree
#   TLSFILTER_DEMO_PORT=N    the TLS port (default: a free one from 20000 up)
#   TLSFILTER_DEMO_LAUNCHER=socat   use socat even as root
#   TLSFILTER_DEMO_KEEP=1    keep the temporary directory (certificates, logs)
set -eu

srcdir=$(cd "$(dirname "$0")/.." && pwd)
builddir=${TLSFILTER_BUILD_DIR:-$srcdir}
launcher=${TLSFILTER_DEMO_LAUNCHER:-xinetd}
[ "$(id -u)" -eq 0 ] || launcher=socat

n=0
step() {
    n=$((n + 1))
    printf '\n==> %s. %s\n' "$n" "$*"
}
die() {
    printf 'demo.sh: %s\n' "$*" >&2
    exit 1
}
indent() { sed 's/^/    /'; }

# --- clean-up: every process started here, then the temporary directory ----
tmp=
pids=
cleanup() {
    for p in $pids; do
        kill "$p" 2>/dev/null || :
    done
    for p in $pids; do
        wait "$p" 2>/dev/null || :
    done
    if [ -n "$tmp" ] && [ -n "${TLSFILTER_DEMO_KEEP:-}" ]; then
        echo "kept $tmp"
    elif [ -n "$tmp" ]; then
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# True when something listens on TCP port $1 (any address). /proc, because
# a minimal Debian has no ss or netstat.
listening() {
    grep -Eq ":$(printf '%04X' "$1") [0-9A-F]+:[0-9A-F]{4} 0A " \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null
}
# The first port from $1 up on which nothing listens.
free_port() {
    p=$1
    while listening "$p"; do
        p=$((p + 1))
    done
    echo "$p"
}
# Wait up to 10 s for a listener on port $1.
wait_listening() {
    i=0
    until listening "$1"; do
        i=$((i + 1))
        [ "$i" -lt 100 ] || die "nothing listens on port $1 after 10 s"
        sleep 0.1
    done
}

# --- 1. dependencies ---------------------------------------------------------
step "Dependencies"
if [ "$(id -u)" -eq 0 ]; then
    if [ -s "$srcdir/scripts/deps.sh" ]; then
        echo "running scripts/deps.sh"
        sh "$srcdir/scripts/deps.sh"
    else
        echo "installing with apt-get"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq autoconf automake libtool pkg-config make gcc \
            libgnutls28-dev libwrap0-dev gnutls-bin openssl socat xinetd curl \
            netbase >/dev/null
    fi
else
    echo "not root: skipping the installation, checking the tools"
fi
for tool in autoreconf pkg-config make cc openssl socat curl; do
    command -v "$tool" >/dev/null || die "$tool is missing (run as root to install it)"
done
[ "$launcher" = socat ] || command -v xinetd >/dev/null || die "xinetd is missing"

# --- 2. build ----------------------------------------------------------------
step "Build in $builddir"
log=$(mktemp)
(
    cd "$srcdir"
    [ -x configure ] && [ -f Makefile.in ] || ./autogen.sh
) >"$log" 2>&1 || { cat "$log"; die "autogen.sh failed"; }
if [ "$builddir" != "$srcdir" ] && [ -f "$srcdir/config.status" ]; then
    die "$srcdir is configured in place, so it cannot be built in $builddir: unset TLSFILTER_BUILD_DIR, or run 'make distclean' there"
fi
mkdir -p "$builddir"
(
    cd "$builddir"
    [ -f Makefile ] || "$srcdir/configure"
    make
) >"$log" 2>&1 || { tail -40 "$log"; rm -f "$log"; die "the build failed"; }
rm -f "$log"
tlsfilter=$builddir/src/tlsfilter
[ -x "$tlsfilter" ] || die "no $tlsfilter after make"
echo "built $tlsfilter"
"$tlsfilter" -V | indent

tmp=$(mktemp -d /tmp/tlsfilter-demo.XXXXXX)

# --- 3. certificates ---------------------------------------------------------
step "A throw-away CA and a server certificate for 127.0.0.1 (in $tmp)"
(
    cd "$tmp"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -days 2 -subj "/CN=tlsfilter demo CA" -keyout ca.key -out ca.pem
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -subj "/CN=localhost" -keyout server.key -out server.csr
    printf '%s\n' "basicConstraints = CA:FALSE" \
        "keyUsage = digitalSignature" \
        "extendedKeyUsage = serverAuth" \
        "subjectAltName = IP:127.0.0.1, DNS:localhost" >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
        -days 2 -extfile server.ext -out server.crt
    # stunnel's layout: key, certificate, chain (here the chain is empty:
    # the CA is the root, which clients have).
    cat server.key server.crt >server.pem
    chmod 600 server.pem ca.key server.key
) >"$tmp/openssl.log" 2>&1 || { cat "$tmp/openssl.log"; die "openssl failed"; }
echo "CA:     $tmp/ca.pem (the client trusts it)"
echo "server: $tmp/server.pem (key + certificate, mode 0600)"

# --- 4. the plaintext backend ------------------------------------------------
bport=$(free_port 20143)
step "A toy plaintext IMAP server on 127.0.0.1:$bport (what tlsfilter protects)"
cat >"$tmp/imapd.sh" <<EOF
#!/bin/sh
# Enough IMAP for curl to log in, list and log out. Writes what it receives,
# in clear, to $tmp/backend.log.
cr=\$(printf '\r')
say() { printf '%s\r\n' "\$*"; }
say "* OK toy IMAP server ready (plaintext)"
while IFS= read -r line; do
    line=\${line%"\$cr"}
    printf '%s\n' "\$line" >>"$tmp/backend.log"
    tag=\${line%% *}
    rest=\${line#"\$tag"}
    rest=\${rest# }
    cmd=\$(printf '%s' "\${rest%% *}" | tr '[:lower:]' '[:upper:]')
    case \$cmd in
    CAPABILITY) say "* CAPABILITY IMAP4rev1"; say "\$tag OK CAPABILITY completed" ;;
    LOGIN) say "\$tag OK LOGIN completed" ;;
    LIST) say '* LIST () "/" INBOX'; say "\$tag OK LIST completed" ;;
    LOGOUT) say "* BYE see you"; say "\$tag OK LOGOUT completed"; exit 0 ;;
    *) say "\$tag BAD unknown command" ;;
    esac
done
EOF
: >"$tmp/backend.log"
socat TCP-LISTEN:"$bport",bind=127.0.0.1,reuseaddr,fork EXEC:"sh $tmp/imapd.sh" \
    2>>"$tmp/socat-backend.log" &
pids="$pids $!"
wait_listening "$bport"
echo "listening (socat TCP-LISTEN:$bport,fork EXEC:imapd.sh)"

# --- 5. check the configuration ----------------------------------------------
args="-r 127.0.0.1:$bport -p $tmp/server.pem"
step "tlsfilter --check $args"
# shellcheck disable=SC2086 # $args is split on purpose
"$tlsfilter" --check $args | indent

# --- 6. the launcher ---------------------------------------------------------
port=${TLSFILTER_DEMO_PORT:-$(free_port 20993)}
run_args="$args -N imaps-demo -o $tmp/tlsfilter.log"
if [ "$(id -u)" -eq 0 ]; then
    run_args="$run_args -s nobody -g nogroup"
fi
if [ "$launcher" = xinetd ]; then
    step "A private xinetd on 127.0.0.1:$port, running tlsfilter per connection"
    cat >"$tmp/xinetd.conf" <<EOF
# A private xinetd: this service only; /etc/xinetd.conf is not read.
defaults
{
	log_type	= FILE $tmp/xinetd.log
}

service imaps-demo
{
	type		= UNLISTED
	port		= $port
	bind		= 127.0.0.1
	socket_type	= stream
	protocol	= tcp
	wait		= no
	user		= root
	server		= $tlsfilter
	server_args	= $run_args
	passenv		=
	log_on_success	+= PID HOST DURATION EXIT
	log_on_failure	+= HOST
}
EOF
    sed -n '/^service/,$p' "$tmp/xinetd.conf" | indent
    xinetd -f "$tmp/xinetd.conf" -dontfork -pidfile "$tmp/xinetd.pid" \
        -filelog "$tmp/xinetd.log" &
    pids="$pids $!"
else
    step "socat on 127.0.0.1:$port, running tlsfilter per connection"
    # socat splits an address at ':' and ',': the quotes keep -r HOST:PORT whole.
    echo "    socat TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr,fork \\"
    echo "        EXEC:'$tlsfilter $run_args',nofork"
    socat TCP-LISTEN:"$port",bind=127.0.0.1,reuseaddr,fork \
        EXEC:"'$tlsfilter $run_args'",nofork 2>>"$tmp/socat-front.log" &
    pids="$pids $!"
fi
wait_listening "$port"
echo "listening on 127.0.0.1:$port"

# Wait for the log line of connection number $1 (tlsfilter writes it on exit).
wait_log() {
    i=0
    while :; do
        lines=$(grep -c 'event=' "$tmp/tlsfilter.log" 2>/dev/null) || :
        [ "${lines:-0}" -lt "$1" ] || return 0
        i=$((i + 1))
        [ "$i" -lt 100 ] || die "no log line from tlsfilter after 10 s"
        sleep 0.1
    done
}

# --- 7. a real client --------------------------------------------------------
step "curl --cacert ca.pem -u demo:secret imaps://127.0.0.1:$port/"
status=0
curl -sS -v --max-time 20 --cacert "$tmp/ca.pem" -u demo:secret \
    "imaps://127.0.0.1:$port/" >"$tmp/curl.out" 2>"$tmp/curl.err" || status=$?
echo "What the client saw (curl -v, TLS details and the IMAP conversation):"
grep -E '^\* (SSL connection|Server certificate)|^\*  (subject|issuer|SSL certificate verify)|^[<>] ' \
    "$tmp/curl.err" | tr -d '\r' | indent
echo "curl exit status: $status"
if [ "$status" -ne 0 ]; then
    tail -5 "$tmp/curl.err"
    cat "$tmp/socat-front.log" "$tmp/tlsfilter.log" 2>/dev/null || :
    die "curl failed"
fi
echo
echo "What the backend received, in clear, from tlsfilter (curl sends LOGOUT"
echo "as it closes, without showing it):"
indent <"$tmp/backend.log"
wait_log 1
echo
echo "tlsfilter's log line ($tmp/tlsfilter.log):"
indent <"$tmp/tlsfilter.log"

# --- 8. a client that does not speak TLS -------------------------------------
step "A plaintext client on the TLS port: the handshake fails, nothing reaches the backend"
received=$(wc -l <"$tmp/backend.log")
printf 'a1 LOGIN demo secret\r\n' |
    socat -T 5 - TCP:127.0.0.1:"$port" >"$tmp/plain.out" 2>/dev/null || :
printf 'the client got %s bytes back: a TLS alert, no IMAP greeting\n' \
    "$(wc -c <"$tmp/plain.out")"
wait_log 2
[ "$(wc -l <"$tmp/backend.log")" -eq "$received" ] || die "the backend received something"
echo "the backend received nothing"
echo "tlsfilter's log line (the one fail2ban reads):"
grep 'event=handshake' "$tmp/tlsfilter.log" | indent
if [ "$launcher" = xinetd ]; then
    sleep 0.5
    echo
    echo "xinetd's own log: START and EXIT with tlsfilter's exit status (76: TLS failure)"
    grep -E 'START|EXIT' "$tmp/xinetd.log" | indent
fi

step "Done: stopping the launcher and the backend, removing $tmp"
