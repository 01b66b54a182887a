/*
 * unit-options.c: the command line as stunnel 3, Webmin and the seeds'
 * xinetd files write it, and the refusals.
 */
#include "config.h"

#include <stdarg.h>
#include <syslog.h>
#include <sysexits.h>

#include "options.h"
#include "tap.h"

static enum options_result parse(struct config *cfg, char *err, size_t len, ...)
{
    char *argv[32];
    int argc = 0;
    va_list ap;
    char *a;

    argv[argc++] = (char *)"tlsfilter";
    va_start(ap, len);
    while ((a = va_arg(ap, char *)) != NULL && argc < 31)
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    return options_parse(argc, argv, cfg, err, len);
}

#define PARSE(...) parse(&cfg, err, sizeof err, __VA_ARGS__, (char *)NULL)

int main(void)
{
    struct config cfg;
    char err[256];
    int fac, lvl;
    unsigned secs;

    /* The seeds' xinetd line. */
    TAP_OK(PARSE("-r", "imap", "-s", "nobody", "-g", "nobody", "-p",
                 "/usr/share/ssl/certs/stunnel.pem") == OPTIONS_RUN,
           "seeds' xinetd server_args parse");
    TAP_STREQ(cfg.connect, "imap", "-r imap kept as written");
    TAP_STREQ(cfg.user, "nobody", "-s nobody");
    TAP_STREQ(cfg.group, "nobody", "-g nobody");
    TAP_STREQ(cfg.cert_file, "/usr/share/ssl/certs/stunnel.pem", "-p path");
    TAP_OK(cfg.key_file == NULL, "no separate key unless --key");

    /* Defaults. */
    TAP_OK(PARSE("-r", "25") == OPTIONS_RUN, "-r 25 alone is enough");
    TAP_STREQ(cfg.cert_file, OPTIONS_DEFAULT_CERT, "compiled-in default certificate");
    TAP_STREQ(cfg.service, "tlsfilter", "default syslog ident");
    TAP_OK(!cfg.service_set && !cfg.cert_set, "-N and -p not marked as given");
    TAP_OK(cfg.log_facility == LOG_DAEMON && cfg.log_level == LOG_NOTICE,
           "default daemon.notice");
    TAP_OK(cfg.timeout_idle > 29 * 60, "idle timeout outlasts IMAP IDLE's 29 minutes");
    TAP_OK(cfg.timeout_handshake >= 10 && cfg.timeout_handshake < 100,
           "handshake timeout in the tens of seconds");
    TAP_STREQ(cfg.priority, OPTIONS_DEFAULT_PRIORITY, "default priority");

    /* Long options. */
    TAP_OK(PARSE("--connect", "[::1]:143", "--cert", "c.pem", "--key", "k.pem", "--bind",
                 "127.0.0.2", "--priority", "NORMAL", "--service", "imaps", "--log-file",
                 "/tmp/x", "--timeout-handshake", "5", "--timeout-idle", "60",
                 "--timeout-close", "3", "--timeout-connect", "2") == OPTIONS_RUN,
           "every long option parses");
    TAP_OK(cfg.timeout_handshake == 5 && cfg.timeout_idle == 60 && cfg.timeout_close == 3 &&
               cfg.timeout_connect == 2,
           "timeouts stored");
    TAP_STREQ(cfg.key_file, "k.pem", "--key stored");
    TAP_STREQ(cfg.bind_addr, "127.0.0.2", "--bind stored");

    /* -D as stunnel 3 takes it. */
    TAP_OK(PARSE("-r", "25", "-D", "mail.info") == OPTIONS_RUN, "-D mail.info");
    TAP_OK(cfg.log_facility == LOG_MAIL && cfg.log_level == LOG_INFO, "mail.info stored");
    TAP_OK(PARSE("-r", "25", "-D", "7") == OPTIONS_RUN && cfg.log_level == LOG_DEBUG,
           "-D 7 is debug");
    TAP_OK(PARSE("-r", "25", "-D", "local3.warning") == OPTIONS_RUN &&
               cfg.log_facility == LOG_LOCAL3 && cfg.log_level == LOG_WARNING,
           "-D local3.warning");
    TAP_OK(PARSE("-r", "25", "-D", "8") == OPTIONS_ERROR && strstr(err, "-D 8") != NULL,
           "-D 8 refused, message names it");
    TAP_OK(PARSE("-r", "25", "-D", "bogus.info") == OPTIONS_ERROR, "unknown facility refused");
    TAP_OK(options_parse_log_level("mail.", &fac, &lvl) < 0, "facility without level refused");

    /* Refusals that name the flag. */
    TAP_OK(PARSE("-d", "993", "-r", "143") == OPTIONS_ERROR && strstr(err, "-d") != NULL &&
               strstr(err, "per-connection") != NULL,
           "-d refused: daemon mode makes no sense here");
    TAP_OK(PARSE("-T", "-r", "143") == OPTIONS_ERROR && strstr(err, "-T") != NULL,
           "-T refused");
    TAP_OK(PARSE("-r", "143", "-l", "/bin/cat") == OPTIONS_ERROR && strstr(err, "-r") != NULL &&
               strstr(err, "-l") != NULL,
           "-r and -l together refused");
    TAP_OK(PARSE("-l", "cat") == OPTIONS_ERROR && strstr(err, "absolute") != NULL,
           "-l with a relative path refused");
    TAP_OK(PARSE("-l", "/usr/sbin/imapd", "--", "imapd", "-x") == OPTIONS_RUN &&
               cfg.exec_argv != NULL && strcmp(cfg.exec_argv[0], "imapd") == 0 &&
               strcmp(cfg.exec_argv[1], "-x") == 0 && cfg.exec_argv[2] == NULL && !cfg.exec_pty,
           "stunnel 3's -l PROGRAM -- ARGV0 ARGS: the whole argv after --");
    TAP_OK(PARSE("-L", "/usr/sbin/pppd") == OPTIONS_RUN && cfg.exec_pty &&
               cfg.exec_argv == NULL,
           "-L: the program on a pty");
    TAP_OK(PARSE("-c", "-l", "/bin/cat") == OPTIONS_ERROR, "-c with -l refused");
    TAP_OK(PARSE("-c", "-r", "mail.example.org:993") == OPTIONS_RUN && cfg.client_mode &&
               cfg.verify_level == -1,
           "-c: client mode, verification not weakened by default");
    TAP_OK(PARSE("-c", "-r", "993", "-v", "0") == OPTIONS_RUN && cfg.verify_level == 0,
           "-c -v 0 turns verification off explicitly");
    TAP_OK(PARSE("-r", "993", "-v", "2") == OPTIONS_ERROR && strstr(err, "-v 2") != NULL &&
               strstr(err, "-A") != NULL,
           "-v 2 without a CA to verify clients with refused, naming -A");
    TAP_OK(PARSE("-r", "993", "-v", "require", "-A", "ca.pem") == OPTIONS_RUN &&
               cfg.verify_level == 2,
           "-v require -A CAFILE");
    TAP_OK(PARSE("-r", "993", "-v", "1", "-A", "ca.pem", "--allow-client", "san=a@b.c") ==
               OPTIONS_ERROR,
           "--allow-client with -v 1 refused (it would trust unverified certificates)");
    TAP_OK(PARSE("-r", "993", "-v", "2", "-A", "ca.pem", "--allow-client", "cn=alice") ==
                   OPTIONS_ERROR &&
               strstr(err, "cn=alice") != NULL,
           "--allow-client with an unknown rule kind refused, naming it");
    TAP_OK(PARSE("-r", "993", "-v", "2", "-A", "ca.pem", "--allow-client", "san=a@b.c",
                 "--allow-client", "sha256=AB:CD") == OPTIONS_RUN &&
               cfg.n_allow_client == 2,
           "--allow-client is repeatable");
    TAP_OK(PARSE("-r", "993", "--cert", "rsa.pem", "--cert", "ecdsa.pem", "-p", "other.pem",
                 "--sni-strict") == OPTIONS_RUN &&
               strcmp(cfg.cert_file, "rsa.pem") == 0 && cfg.n_more_certs == 2 &&
               strcmp(cfg.more_certs[1], "other.pem") == 0 && cfg.sni_strict,
           "--cert is repeatable (first, then the others in order); --sni-strict");
    TAP_OK(PARSE("-r", "993", "--cert", "a.pem", "--cert", "b.pem", "--key", "k.pem") ==
                   OPTIONS_ERROR &&
               strstr(err, "--key") != NULL,
           "--key with several --cert refused");
    TAP_OK(PARSE("-c", "-r", "993", "--alpn", "imap") == OPTIONS_ERROR &&
               strstr(err, "--alpn") != NULL,
           "--alpn in client mode refused, not ignored");
    TAP_OK(PARSE("-r", "993", "-A", "ca.pem") == OPTIONS_ERROR && strstr(err, "-v") != NULL,
           "-A in server mode without -v refused, not ignored");
    TAP_OK(PARSE("-r", "993", "--server-name", "x") == OPTIONS_ERROR,
           "--server-name in server mode refused, not ignored");
    TAP_OK(PARSE("-r", "993", "-N", "imap s") == OPTIONS_ERROR && strstr(err, "-N") != NULL,
           "-N with a space refused (hosts.allow could not name it)");
    TAP_OK(PARSE("--generate-ticket-key", "/tmp/k") == OPTIONS_GENERATE_TICKET_KEY &&
               strcmp(cfg.ticket_key, "/tmp/k") == 0,
           "--generate-ticket-key FILE");
    TAP_OK(PARSE("-r", "993", "-v", "9") == OPTIONS_ERROR, "-v 9 refused");
    TAP_OK(PARSE("-r", "143", "--chroot", "jail") == OPTIONS_ERROR,
           "relative --chroot refused");
    TAP_OK(PARSE("-r", "143", "-t", "300") == OPTIONS_RUN && cfg.session_timeout == 300,
           "-t sets the ticket lifetime");
    TAP_OK(PARSE("-r", "143", "-t", "0") == OPTIONS_ERROR, "-t 0 refused");
    TAP_OK(PARSE("-r", "143", "--frobnicate") == OPTIONS_ERROR &&
               strstr(err, "--frobnicate") != NULL,
           "unknown long option named");
    TAP_OK(PARSE("-r", "143", "-X") == OPTIONS_ERROR && strstr(err, "-X") != NULL,
           "unknown short option named");
    TAP_OK(PARSE("-r") == OPTIONS_ERROR && strstr(err, "-r") != NULL &&
               strstr(err, "argument") != NULL,
           "missing argument named");
    TAP_OK(PARSE("-p", "x.pem") == OPTIONS_ERROR && strstr(err, "-r") != NULL,
           "no backend refused");
    TAP_OK(PARSE("-r", "143", "stray") == OPTIONS_CONFIG_ERROR && strstr(err, "stray") != NULL,
           "one trailing argument is a configuration file, and a missing one is named");
    TAP_OK(PARSE("-r", "143", "one", "two") == OPTIONS_ERROR && strstr(err, "one") != NULL,
           "two trailing arguments refused");
    TAP_OK(PARSE("-r", "143", "--timeout-idle", "12x") == OPTIONS_ERROR &&
               strstr(err, "--timeout-idle") != NULL,
           "trailing garbage in a number refused");
    TAP_OK(PARSE("-r", "143", "--timeout-idle", "0") == OPTIONS_ERROR, "zero timeout refused");
    TAP_OK(PARSE("-r", "143", "--timeout-close", "-1") == OPTIONS_ERROR,
           "negative timeout refused");
    TAP_OK(PARSE("-r", "1\n43") == OPTIONS_ERROR, "control character in -r refused");
    TAP_OK(options_parse_seconds("99999999999999999999", &secs) < 0, "overflow refused");
    TAP_OK(options_parse_seconds("604800", &secs) == 0 && secs == 604800, "a week is fine");

    /* The listener's limits (options_set_limit(), which the configuration file uses too). */
    TAP_OK(PARSE("-r", "143", "--max-connections", "1", "--max-per-source", "0", "--max-rate",
                 "65536") == OPTIONS_RUN &&
               cfg.max_connections == 1 && cfg.max_per_source == 0 && cfg.max_rate == 65536,
           "--max-connections 1, --max-per-source 0, --max-rate 65536");
    TAP_OK(PARSE("-r", "143", "--max-connections", "0") == OPTIONS_ERROR &&
               strcmp(err, "--max-connections 0: expected a number (1-65536)") == 0,
           "--max-connections 0 refused: %s", err);
    TAP_OK(PARSE("-r", "143", "--max-rate", "65537") == OPTIONS_ERROR &&
               strcmp(err, "--max-rate 65537: expected a number (0-65536)") == 0,
           "--max-rate 65537 refused: %s", err);
    TAP_OK(PARSE("-r", "143", "--max-per-source", "-1") == OPTIONS_ERROR &&
               strstr(err, "--max-per-source") != NULL,
           "--max-per-source -1 refused");

    /* Accepted with a note, never silently. */
    TAP_OK(PARSE("-r", "143", "-P", "/var/run/x.pid") == OPTIONS_RUN && cfg.n_notes == 1 &&
               strstr(cfg.notes[0], "-P") != NULL,
           "-P accepted with a note to log");

    /* What does not run a connection. */
    TAP_OK(PARSE("-V") == OPTIONS_VERSION, "-V");
    TAP_OK(PARSE("--help") == OPTIONS_HELP, "--help");
    TAP_OK(PARSE("--check", "-r", "143") == OPTIONS_CHECK, "--check");
    TAP_OK(strstr(options_usage, "--connect") != NULL, "usage lists --connect");

    return tap_done();
}
