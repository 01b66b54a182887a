#!/bin/sh
# bench/breakdown.sh — where one connection's instructions went, by phase,
# from callgrind output files (make bench copies them to bench/callgrind/):
#   sh bench/breakdown.sh bench/callgrind/tlsfilter-ecdsa-no.* bench/callgrind/floor-ecdsa-no.*
# Phases (inclusive counts, callgrind_annotate --inclusive=yes):
#   loader       _dl_start: mapping and relocating the shared libraries
#   constructors _dl_init: the libraries' initialisers (GnuTLS's ASN.1 trees)
#   credentials  tlsfilter's tls_new (incl. its load_credentials), the floor's
#                gnutls_certificate_set_x509_key_file2 + priority + gnutls_init
#   handshake    gnutls_handshake
#   relay        tlsfilter's relay(), the floor's main() minus the above
#   exit         exit(): atexit handlers and the libraries' destructors
#   rest         everything else in main() (options, log, access check, ...)
set -eu
for f in "$@"; do
	callgrind_annotate --inclusive=yes --threshold=100 "$f" 2>/dev/null | awk -v file="$(basename "$f")" '
		function num(s) { gsub(",", "", s); return s + 0 }
		/PROGRAM TOTALS/ { total = num($1) }
		/rtld.c:_dl_start / { loader = num($1) }
		/dl-init.c:_dl_init / { ctor = num($1) }
		/main.c:main |\?\?\?:main / && !mainv { mainv = num($1) }
		/tls.c:tls_new / { cred = num($1) }
		/:gnutls_certificate_set_x509_key_file2 / { fcred += num($1) }
		/:gnutls_priority_set_direct / { fcred += num($1) }
		/:gnutls_init / { fcred += num($1) }
		/:gnutls_handshake / && !hs { hs = num($1) }
		/main.c:relay / { relay = num($1) }
		/exit.c:exit / && !ex { ex = num($1) }
		END {
			if (!cred) { cred = fcred; relay = mainv - cred - hs; rest = 0 }
			else rest = mainv - cred - hs - relay
			other = total - loader - ctor - mainv - ex
			printf "%-28s total %10d  loader %9d  constructors %8d  credentials %9d  handshake %9d  relay %8d  rest-of-main %8d  exit %7d  other %7d\n",
				file, total, loader, ctor, cred, hs, relay, rest, ex, other
		}'
done
