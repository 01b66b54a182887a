# tests/dovecot.sh — a private Dovecot (IMAP and POP3, ssl = no) for the
# tests that put tlsfilter in front of a real mail server. Sourced after
# lib.sh; needs root (Dovecot drops to nobody for the mail).
#
# dovecot_start: starts it on two free loopback ports, with one user,
# tuser / tpass-42 (AUTH PLAIN and LOGIN; disable_plaintext_auth = yes, which
# Dovecot waives for connections from loopback, tlsfilter's).
# Sets DV_IMAP and DV_POP3 (ports) and DVLOG (its log); returns 1 (with the
# log as diagnostics) when it does not listen within 15 s.
dovecot_start() {
	local d=$T/dv
	mkdir -p "$d/run" "$d/state" "$d/mail"
	chown nobody:nogroup "$d/mail"
	chmod 755 "$d"
	chmod 711 "$T"
	echo 'tuser:{PLAIN}tpass-42::::' >"$d/users"
	DV_IMAP=$(free_port)
	DV_POP3=$(free_port)
	DVLOG=$d/dovecot.log
	cat >"$d/dovecot.conf" <<-EOF
		instance_name = tlsf-$TEST_NAME-$$
		base_dir = $d/run
		state_dir = $d/state
		listen = 127.0.0.1
		protocols = imap pop3
		ssl = no
		disable_plaintext_auth = yes
		auth_mechanisms = plain
		auth_verbose = yes
		log_path = $DVLOG
		info_log_path = $DVLOG
		mail_location = maildir:$d/mail/%u
		passdb {
		  driver = passwd-file
		  args = scheme=PLAIN $d/users
		}
		userdb {
		  driver = passwd-file
		  args = $d/users
		  default_fields = uid=nobody gid=nogroup home=$d/mail/%u
		}
		service imap-login {
		  inet_listener imap {
		    address = 127.0.0.1
		    port = $DV_IMAP
		  }
		  inet_listener imaps {
		    port = 0
		  }
		}
		service pop3-login {
		  inet_listener pop3 {
		    address = 127.0.0.1
		    port = $DV_POP3
		  }
		  inet_listener pop3s {
		    port = 0
		  }
		}
	EOF
	: >"$DVLOG"
	spawn /usr/sbin/dovecot -F -c "$d/dovecot.conf"
	wait_listen "$DV_IMAP" 15 && wait_listen "$DV_POP3" 15 && return 0
	diag_file "$DVLOG"
	return 1
}
