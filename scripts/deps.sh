#!/bin/sh
# deps.sh — install what building and testing tlsfilter needs on Debian 12.
#
# Idempotent and quick: asks dpkg first, and runs apt-get (update once, then
# install) only for what is missing. Needs root when something is missing.
#   build:  autoconf automake libtool pkg-config make gcc libgnutls28-dev
#           libwrap0-dev libseccomp-dev (the network process's seccomp
#           sandbox, src/sandbox.c; configure --without-seccomp builds
#           without it)
#   tests:  gnutls-bin (gnutls-cli, certtool) openssl socat xinetd curl
#           netbase (/etc/services) python3 (tests/helper.py) util-linux
#           (setsid, flock, setpriv) coreutils (timeout, sha256sum, stdbuf)
#           procps iproute2 dovecot-imapd (a real IMAP server on stdin/stdout
#           for exec.test) systemd (systemd-analyze verify of the units)
#           faketime (an OCSP response issued in the past, for alpn-ocsp.test)
#           cppcheck (static-analysis.test; its -fanalyzer half uses gcc)
#           clang libclang-rt-14-dev (libFuzzer and the sanitizers, for
#           fuzz/fuzz.sh and fuzz.test)
#           haproxy (a real load balancer sending PROXY v1/v2 in front of
#           tlsfilter, proxy-haproxy.test), postfix (a private instance
#           reading PROXY v1, proxy-mail.test), swaks (its SMTP client)
#           libnet-ssleay-perl (swaks's TLS: only Recommended by swaks, and
#           recommends are not installed here)
#           testssl.sh (the TLS conformance scan of testssl.test)
#           valgrind (callgrind-budget.test and make bench's instruction
#           counts) stunnel4 (make bench compares tlsfilter with it)
#           fail2ban (fail2ban-regex and a private fail2ban-server for
#           fail2ban.test; its system service is stopped below) rsyslog (a
#           private rsyslogd writes the /var/log/mail.log format for
#           fail2ban.test; its system service is stopped below)
#           python3-aiosmtpd (a real SMTP server behind --starttls smtp,
#           starttls-smtp.test, next to the private Postfix)
#           dovecot-pop3d (the POP3 half of the private Dovecot behind
#           --starttls imap and pop3, starttls-dovecot.test)
#           strace (listener.test: the listener's system calls show that it
#           never reads a client's byte)
#   package: debhelper dpkg-dev fakeroot (dpkg-buildpackage of debian/, for
#           package.test) lintian (package.test: no error or warning)
set -eu

PKGS="autoconf automake libtool pkg-config make gcc libc6-dev
libgnutls28-dev libwrap0-dev libseccomp-dev
gnutls-bin openssl ca-certificates socat xinetd curl netbase python3
util-linux coreutils procps iproute2 dovecot-imapd systemd faketime
cppcheck clang libclang-rt-14-dev haproxy postfix swaks libnet-ssleay-perl testssl.sh
valgrind stunnel4 fail2ban rsyslog python3-aiosmtpd dovecot-pop3d strace
debhelper dpkg-dev fakeroot lintian"

missing=
for p in $PKGS; do
	st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
	[ "$st" = installed ] || missing="$missing $p"
done

if [ -z "$missing" ]; then
	echo "deps.sh: all build and test dependencies are installed"
	exit 0
fi

echo "deps.sh: installing:$missing"
if [ "$(id -u)" -ne 0 ]; then
	echo "deps.sh: not root: install these first:$missing" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# postfix asks its debconf question (general type of mail configuration)
# even when noninteractive unless the answer is given: "No configuration"
# installs it without a main.cf of the site's and without starting it.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing
# xinetd's package starts the system daemon; the tests run their own instance
# and need nothing from it. The same goes for dovecot-imapd: exec.test runs
# only its imap binary, with a private configuration.
# The same for haproxy and postfix: proxy-haproxy.test and proxy-mail.test
# run private instances on free high loopback ports, each with its own
# configuration (postfix: own config and queue directories). The system's
# own services are of no use to the tests and would hold ports 25, 143,
# 993...: stop and disable them where the packages started them.
# fail2ban's package enables its sshd jail (firewall rules) and rsyslog's
# takes /dev/log: fail2ban.test runs private instances of both instead.
for svc in haproxy postfix dovecot xinetd fail2ban rsyslog; do
	pkg=$svc
	[ "$svc" = dovecot ] && pkg=dovecot-imapd
	case "$missing " in
	*" $pkg "*) ;;
	*) continue ;; # not installed by this run: the site's own service
	esac
	if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
		systemctl disable --now "$svc" >/dev/null 2>&1 || true
	elif [ -x "/etc/init.d/$svc" ]; then
		"/etc/init.d/$svc" stop >/dev/null 2>&1 || true
	fi
done
