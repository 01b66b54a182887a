/*
 * options.c: stunnel 3 flags and GNU long options into one struct config.
 *
 * Options are checked as they are parsed: numbers through strtol with range
 * checks, unknown flags and flags that make no sense for a per-connection
 * program refused with a message that names them. Nothing here prints or
 * exits; main() decides where a message may go (stderr can be the client's
 * socket).
 */
#include "config.h"

#include "options.h"
#include "conffile.h"
#include "proxy.h"
#include "starttls.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>

const char options_usage[] =
    "Usage: tlsfilter [OPTIONS] -r [HOST:]PORT\n"
    "       tlsfilter [OPTIONS] -l PROGRAM [-- ARGV0 ARGS...]\n"
    "       tlsfilter STUNNEL-CONFIG-FILE\n"
    "Run a TLS server handshake on fd 0/1 (started by inetd, xinetd, systemd\n"
    "or socat), then relay the plaintext to a backend service.\n"
    "\n"
    "  -r, --connect [HOST:]PORT|/PATH  backend (PORT may be a service name)\n"
    "  -l, --exec PROGRAM       start PROGRAM on a socketpair instead of -r\n"
    "  -L, --exec-pty PROGRAM   the same on a pseudo-terminal\n"
    "  -I, --bind ADDR          local address for the backend connection\n"
    "  -p, --cert FILE          key, certificate and chain in one PEM file\n"
    "                           (default " OPTIONS_DEFAULT_CERT ")\n"
    "                           (repeatable: chosen by SNI and the client's key types)\n"
    "      --key FILE           private key in its own PEM file\n"
    "      --sni-strict         refuse server names no certificate is for\n"
    "  -C, --priority STRING    GnuTLS priority string\n"
    "  -c, --client             client mode: plaintext on fd 0/1, TLS towards -r\n"
    "  -A, --ca-file FILE       CA certificates: for client certificates (-v 1..3),\n"
    "                           or for the server's in client mode (-c)\n"
    "  -a, --ca-dir DIR         a directory of CA certificates, the same way\n"
    "  -v, --verify LEVEL       server mode: client certificates, 0 none, 1 verify\n"
    "                           if presented, 2 require, 3 require and match -A/-a;\n"
    "                           client mode: 0 turns server verification off\n"
    "      --server-name NAME   name to send (SNI) and verify in client mode\n"
    "      --crl-file FILE      revoked client certificates (PEM)\n"
    "      --allow-client RULE  subject=DN, san=NAME or sha256=HEX (repeatable)\n"
    "      --alpn LIST          accepted ALPN protocols, comma-separated\n"
    "      --ocsp-response FILE OCSP response to staple (DER or PEM)\n"
    "      --ticket-key FILE    share session tickets with other processes\n"
    "      --generate-ticket-key FILE  write a new ticket key (mode 0600)\n"
    "  -t, --session-timeout SECS  ticket lifetime (default 21600)\n"
    "  -s, --user USER          run as USER after loading the credentials\n"
    "  -g, --group GROUP        run as GROUP after loading the credentials\n"
    "      --chroot DIR         change root to DIR after loading the credentials\n"
    "      --key-process yes|no the private keys in a process of their own that\n"
    "                           only signs (default yes)\n"
    "      --hosts-allow FILE   TCP wrappers allow table (default /etc/hosts.allow)\n"
    "      --hosts-deny FILE    TCP wrappers deny table (default /etc/hosts.deny)\n"
    "  -N, --service NAME       syslog ident and TCP wrappers service name\n"
    "  -D, --log-level [FACILITY.]LEVEL  syslog facility and level\n"
    "                           (default daemon.notice)\n"
    "  -o, --log-file FILE      log to FILE instead of syslog\n"
    "  -f, --log-stderr         log to stderr (ignored when it is the socket)\n"
    "      --proxy-protocol v1|v2  send a PROXY header to the backend (-r)\n"
    "      --accept-proxy       read a PROXY header (v1 or v2) before TLS ...\n"
    "      --proxy-from ADDR[/PREFIX]  ... from these balancers only (repeatable)\n"
    "      --starttls smtp|imap|pop3  plaintext first: relay the backend's\n"
    "                           protocol, answer STARTTLS (STLS), then TLS\n"
    "                           (ports 25, 587, 143, 110)\n"
    "      --starttls-optional  a client that never sends STARTTLS is relayed\n"
    "                           in clear (port 25); default: it must upgrade\n"
    "      --starttls-required  the default: nothing but the upgrade before TLS\n"
    "      --timeout-handshake SECS  (default 30; with --starttls, the plaintext\n"
    "                           phase has as long again)\n"
    "      --timeout-connect SECS    (default 10)\n"
    "      --timeout-idle SECS       (default 1860)\n"
    "      --timeout-close SECS      (default 60)\n"
    "      --max-connections N  listener (xinetd wait = yes, systemd Accept=no):\n"
    "                           sessions at once (default 64)\n"
    "      --max-per-source N   ... from one client address (default: no limit)\n"
    "      --max-rate N         ... new connections per second (default: no limit)\n"
    "      --exit-idle SECS     ... exit after SECS without a session (default: never)\n"
    "      --config FILE        read an stunnel 4/5 configuration file; options\n"
    "                           after it override it, options before it do not\n"
    "      --sandbox yes|no     the seccomp sandbox and resource limits around\n"
    "                           the network process (default yes)\n"
    "      --check              check the options and credentials, then exit\n"
    "  -V, --version            print the version and exit\n"
    "  -h, --help               print this help and exit\n"
    "\n"
    "Exit status: 0 ok, 64 usage, 69 backend unavailable, 71 system error,\n"
    "73 cannot create (--generate-ticket-key), 75 timeout, 76 TLS failure,\n"
    "77 refused, 78 configuration.\n";

enum {
    OPT_KEY = 256,
    OPT_CHECK,
    OPT_TIMEOUT_HANDSHAKE,
    OPT_TIMEOUT_CONNECT,
    OPT_TIMEOUT_IDLE,
    OPT_TIMEOUT_CLOSE,
    OPT_CHROOT,
    OPT_HOSTS_ALLOW,
    OPT_HOSTS_DENY,
    OPT_CONFIG,
    OPT_SERVER_NAME,
    OPT_CRL_FILE,
    OPT_ALLOW_CLIENT,
    OPT_ALPN,
    OPT_OCSP,
    OPT_TICKET_KEY,
    OPT_GENERATE_TICKET_KEY,
    OPT_SNI_STRICT,
    OPT_PROXY_PROTOCOL,
    OPT_ACCEPT_PROXY,
    OPT_PROXY_FROM,
    OPT_STARTTLS,
    OPT_STARTTLS_OPTIONAL,
    OPT_STARTTLS_REQUIRED,
    OPT_MAX_CONNECTIONS,
    OPT_MAX_PER_SOURCE,
    OPT_MAX_RATE,
    OPT_EXIT_IDLE,
    OPT_KEY_PROCESS,
    OPT_SANDBOX,
};

static const struct option long_options[] = {
    {"cert", required_argument, NULL, 'p'},
    {"key", required_argument, NULL, OPT_KEY},
    {"connect", required_argument, NULL, 'r'},
    {"bind", required_argument, NULL, 'I'},
    {"exec", required_argument, NULL, 'l'},
    {"exec-pty", required_argument, NULL, 'L'},
    {"priority", required_argument, NULL, 'C'},
    {"service", required_argument, NULL, 'N'},
    {"log-level", required_argument, NULL, 'D'},
    {"log-file", required_argument, NULL, 'o'},
    {"log-stderr", no_argument, NULL, 'f'},
    {"user", required_argument, NULL, 's'},
    {"group", required_argument, NULL, 'g'},
    {"check", no_argument, NULL, OPT_CHECK},
    {"chroot", required_argument, NULL, OPT_CHROOT},
    {"key-process", required_argument, NULL, OPT_KEY_PROCESS},
    {"hosts-allow", required_argument, NULL, OPT_HOSTS_ALLOW},
    {"hosts-deny", required_argument, NULL, OPT_HOSTS_DENY},
    {"config", required_argument, NULL, OPT_CONFIG},
    {"client", no_argument, NULL, 'c'},
    {"ca-file", required_argument, NULL, 'A'},
    {"ca-dir", required_argument, NULL, 'a'},
    {"verify", required_argument, NULL, 'v'},
    {"server-name", required_argument, NULL, OPT_SERVER_NAME},
    {"crl-file", required_argument, NULL, OPT_CRL_FILE},
    {"allow-client", required_argument, NULL, OPT_ALLOW_CLIENT},
    {"alpn", required_argument, NULL, OPT_ALPN},
    {"sni-strict", no_argument, NULL, OPT_SNI_STRICT},
    {"ocsp-response", required_argument, NULL, OPT_OCSP},
    {"ticket-key", required_argument, NULL, OPT_TICKET_KEY},
    {"generate-ticket-key", required_argument, NULL, OPT_GENERATE_TICKET_KEY},
    {"session-timeout", required_argument, NULL, 't'},
    {"timeout-handshake", required_argument, NULL, OPT_TIMEOUT_HANDSHAKE},
    {"timeout-connect", required_argument, NULL, OPT_TIMEOUT_CONNECT},
    {"timeout-idle", required_argument, NULL, OPT_TIMEOUT_IDLE},
    {"timeout-close", required_argument, NULL, OPT_TIMEOUT_CLOSE},
    {"proxy-protocol", required_argument, NULL, OPT_PROXY_PROTOCOL},
    {"accept-proxy", no_argument, NULL, OPT_ACCEPT_PROXY},
    {"proxy-from", required_argument, NULL, OPT_PROXY_FROM},
    {"starttls", required_argument, NULL, OPT_STARTTLS},
    {"starttls-optional", no_argument, NULL, OPT_STARTTLS_OPTIONAL},
    {"starttls-required", no_argument, NULL, OPT_STARTTLS_REQUIRED},
    {"max-connections", required_argument, NULL, OPT_MAX_CONNECTIONS},
    {"max-per-source", required_argument, NULL, OPT_MAX_PER_SOURCE},
    {"max-rate", required_argument, NULL, OPT_MAX_RATE},
    {"exit-idle", required_argument, NULL, OPT_EXIT_IDLE},
    {"sandbox", required_argument, NULL, OPT_SANDBOX},
    {"version", no_argument, NULL, 'V'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* Short flags: every stunnel 3 flag is listed so that the refusal can name it. */
static const char short_options[] = "+:p:r:I:C:N:D:o:fs:g:P:Vhd:Tl:L:cA:a:v:t:";

static const struct {
    const char *name;
    int value;
} facilities[] = {
    {"auth", LOG_AUTH},     {"authpriv", LOG_AUTHPRIV}, {"cron", LOG_CRON},
    {"daemon", LOG_DAEMON}, {"ftp", LOG_FTP},           {"kern", LOG_KERN},
    {"lpr", LOG_LPR},       {"mail", LOG_MAIL},         {"news", LOG_NEWS},
    {"syslog", LOG_SYSLOG}, {"user", LOG_USER},         {"uucp", LOG_UUCP},
    {"local0", LOG_LOCAL0}, {"local1", LOG_LOCAL1},     {"local2", LOG_LOCAL2},
    {"local3", LOG_LOCAL3}, {"local4", LOG_LOCAL4},     {"local5", LOG_LOCAL5},
    {"local6", LOG_LOCAL6}, {"local7", LOG_LOCAL7},
};

static const char *const levels[] = {"emerg",   "alert",  "crit", "err",
                                     "warning", "notice", "info", "debug"};

static int fail(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *errbuf, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* A strictly parsed decimal in [min, max]; 0 or -1. */
static int parse_long(const char *arg, long min, long max, long *out)
{
    char *end;
    long v;

    if (arg == NULL || *arg == '\0')
        return -1;
    errno = 0;
    v = strtol(arg, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int options_parse_seconds(const char *arg, unsigned *out)
{
    long v;

    if (parse_long(arg, 0, 7L * 86400, &v) < 0)
        return -1;
    *out = (unsigned)v;
    return 0;
}

int options_set_limit(struct config *cfg, enum options_limit which, const char *arg, char *why,
                      size_t whylen)
{
    unsigned *field = which == OPTIONS_MAX_CONNECTIONS  ? &cfg->max_connections
                      : which == OPTIONS_MAX_PER_SOURCE ? &cfg->max_per_source
                                                        : &cfg->max_rate;
    long min = which == OPTIONS_MAX_CONNECTIONS ? 1 : 0, v;

    if (parse_long(arg, min, 65536, &v) < 0) {
        snprintf(why, whylen, "expected a number (%ld-65536)", min);
        return -1;
    }
    *field = (unsigned)v;
    return 0;
}

static int parse_level(const char *s, int *level)
{
    long v;
    size_t i;

    if (parse_long(s, 0, 7, &v) == 0) {
        *level = (int)v;
        return 0;
    }
    for (i = 0; i < sizeof levels / sizeof levels[0]; i++)
        if (strcasecmp(s, levels[i]) == 0) {
            *level = (int)i;
            return 0;
        }
    if (strcasecmp(s, "error") == 0) {
        *level = LOG_ERR;
        return 0;
    }
    if (strcasecmp(s, "warn") == 0) {
        *level = LOG_WARNING;
        return 0;
    }
    return -1;
}

int options_parse_log_level(const char *arg, int *facility, int *level)
{
    const char *dot = strchr(arg, '.');
    size_t i;

    if (dot != NULL) {
        size_t n = (size_t)(dot - arg);
        for (i = 0; i < sizeof facilities / sizeof facilities[0]; i++)
            if (strlen(facilities[i].name) == n && strncasecmp(arg, facilities[i].name, n) == 0)
                break;
        if (i == sizeof facilities / sizeof facilities[0])
            return -1;
        if (parse_level(dot + 1, level) < 0)
            return -1;
        *facility = facilities[i].value;
        return 0;
    }
    return parse_level(arg, level);
}

void options_note(struct config *cfg, const char *note)
{
    if (cfg->n_notes < sizeof cfg->notes / sizeof cfg->notes[0])
        cfg->notes[cfg->n_notes++] = note;
}

static void set_defaults(struct config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->cert_file = OPTIONS_DEFAULT_CERT;
    cfg->priority = OPTIONS_DEFAULT_PRIORITY;
    cfg->service = "tlsfilter";
    cfg->log_facility = LOG_DAEMON;
    cfg->log_level = LOG_NOTICE;
    cfg->timeout_handshake = 30;
    cfg->timeout_connect = 10;
    cfg->timeout_idle = 1860; /* longer than IMAP IDLE's 29 minutes */
    cfg->timeout_close = 60;
    cfg->max_connections = 64; /* systemd's MaxConnections= default */
    cfg->libwrap = true;
    cfg->sandbox = true;
    cfg->verify_level = -1;
    cfg->session_timeout = OPTIONS_DEFAULT_SESSION_TIMEOUT;
    cfg->key_process = true;
}

int options_parse_starttls(const char *name)
{
    if (strcasecmp(name, "smtp") == 0)
        return STARTTLS_SMTP;
    if (strcasecmp(name, "imap") == 0)
        return STARTTLS_IMAP;
    if (strcasecmp(name, "pop3") == 0)
        return STARTTLS_POP3;
    return STARTTLS_OFF;
}

/* A syslog ident and TCP wrappers daemon name. */
static bool name_ok(const char *s)
{
    size_t n = strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+-");

    return n > 0 && n <= 64 && s[n] == '\0';
}

/* A non-empty string without control characters (it may reach a log line). */
static bool printable(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return false;
    return true;
}

static const char *flag_name(int c, char *buf, size_t len)
{
    size_t i;

    for (i = 0; long_options[i].name != NULL; i++)
        if (long_options[i].val == c && c >= 256) {
            snprintf(buf, len, "--%s", long_options[i].name);
            return buf;
        }
    snprintf(buf, len, "-%c", c);
    return buf;
}

/* Checks across options, once all are read. 0, or -1 with a message. */
static int validate(const struct config *cfg, char *errbuf, size_t errlen)
{
    if (cfg->connect == NULL && cfg->exec_path == NULL) {
        return fail(errbuf, errlen, "no backend: give -r [HOST:]PORT or -l PROGRAM%s",
                    cfg->config_file != NULL ? " (connect = or exec = in the file)" : "");
    }
    if (cfg->connect != NULL && cfg->exec_path != NULL) {
        return fail(errbuf, errlen, "give -r or -l, not both");
    }
    if ((cfg->connect != NULL && !printable(cfg->connect)) || !printable(cfg->service) ||
        (cfg->bind_addr != NULL && !printable(cfg->bind_addr))) {
        return fail(errbuf, errlen, "empty value or control character in -r, -N or -I");
    }
    /* Client certificates: verified against our CA list, never the system's. */
    if (!cfg->client_mode && cfg->verify_level > 0 && cfg->ca_file == NULL &&
        cfg->ca_dir == NULL) {
        return fail(errbuf, errlen, "-v %d needs -A CAFILE or -a CADIR to verify clients with",
                    cfg->verify_level);
    }
    /* An allow-list over unverified certificates would trust what anyone can make. */
    if (cfg->n_allow_client > 0 && (cfg->client_mode || cfg->verify_level < 2)) {
        return fail(errbuf, errlen,
                    "--allow-client needs -v 2 or -v 3 (and is for server mode)");
    }
    if (cfg->session_timeout == 0) {
        return fail(errbuf, errlen, "-t must be at least 1 second");
    }
    if (cfg->client_mode && cfg->exec_path != NULL) {
        return fail(errbuf, errlen,
                    "-c needs -r: a client-mode TLS connection goes to a server");
    }
    if (cfg->timeout_handshake == 0 || cfg->timeout_connect == 0 || cfg->timeout_idle == 0 ||
        cfg->timeout_close == 0) {
        return fail(errbuf, errlen, "timeouts must be at least 1 second");
    }
    if (!name_ok(cfg->service))
        return fail(errbuf, errlen,
                    "-N %s: a service name is letters, digits and . _ + - (hosts.allow "
                    "splits on spaces and commas)",
                    cfg->service);
    if (cfg->n_more_certs > 0 && (cfg->key_file != NULL || cfg->ocsp_file != NULL))
        return fail(errbuf, errlen,
                    "--key and --ocsp-response go with a single --cert (put each key in "
                    "its certificate's file)");
    /* Options that would do nothing in this mode are refused, not ignored. */
    if (!cfg->client_mode && cfg->verify_level <= 0 && (cfg->ca_file || cfg->ca_dir))
        return fail(errbuf, errlen,
                    "-A and -a verify client certificates in server mode: give -v 1, 2 or 3");
    if (!cfg->client_mode && cfg->server_name != NULL)
        return fail(errbuf, errlen, "--server-name is for client mode (-c)");
    if (cfg->crl_file != NULL && cfg->verify_level == 0)
        return fail(errbuf, errlen, "--crl-file with -v 0 would check nothing");
    if (cfg->crl_file != NULL && !cfg->client_mode && cfg->verify_level < 0)
        return fail(errbuf, errlen, "--crl-file checks client certificates: give -v 1, 2 or 3");
    if ((cfg->sni_strict || cfg->n_more_certs > 0) && cfg->ocsp_file != NULL)
        return fail(errbuf, errlen,
                    "--ocsp-response goes with a single --cert and without --sni-strict");
    if (cfg->client_mode &&
        (cfg->alpn || cfg->ticket_key || cfg->ocsp_file || cfg->sni_strict ||
         cfg->n_more_certs || cfg->session_timeout != OPTIONS_DEFAULT_SESSION_TIMEOUT))
        return fail(errbuf, errlen,
                    "--alpn, --ticket-key, -t, --ocsp-response, --sni-strict and several "
                    "--cert are for server mode");
    if (cfg->accept_proxy && cfg->n_proxy_from == 0)
        return fail(errbuf, errlen,
                    "--accept-proxy needs --proxy-from ADDR[/PREFIX]: the balancers whose "
                    "headers are believed");
    if (!cfg->accept_proxy && cfg->n_proxy_from > 0)
        return fail(errbuf, errlen, "--proxy-from goes with --accept-proxy");
    if (cfg->client_mode && (cfg->accept_proxy || cfg->proxy_protocol))
        return fail(errbuf, errlen, "--accept-proxy and --proxy-protocol are for server mode");
    if (cfg->exec_path != NULL && cfg->proxy_protocol)
        return fail(errbuf, errlen,
                    "--proxy-protocol is for -r: a -l program gets the client's address in "
                    "REMOTE_HOST");
    if (cfg->starttls_optional && cfg->starttls == STARTTLS_OFF)
        return fail(errbuf, errlen, "--starttls-optional goes with --starttls PROTOCOL");
    if (cfg->starttls != STARTTLS_OFF && cfg->client_mode)
        return fail(errbuf, errlen,
                    "--starttls (protocol = smtp, imap, pop3) is for server mode: -c speaks "
                    "TLS from the first byte");
#ifndef HAVE_LIBWRAP
    if (cfg->hosts_allow != NULL || cfg->hosts_deny != NULL)
        return fail(errbuf, errlen,
                    "--hosts-allow/--hosts-deny: this tlsfilter is built without TCP wrappers");
#endif
    return 0;
}

enum options_result options_parse(int argc, char **argv, struct config *cfg, char *errbuf,
                                  size_t errlen)
{
    enum options_result result = OPTIONS_RUN;
    bool file_form = false;
    char name[32];
    unsigned *timeout;
    int c;

    set_defaults(cfg);
    errbuf[0] = '\0';
    opterr = 0;
    /* 0, not 1: glibc then forgets all of a previous call's state (the unit
     * tests and the fuzzer call this more than once in one process). */
    optind = 0;
    /*
     * stunnel 4/5's inetd form, "stunnel FILE": a user moving from stunnel
     * changes only the program in the xinetd file. There are no options then.
     */
    if (argc == 2 && argv[1][0] != '-') {
        if (conffile_load(argv[1], cfg, errbuf, errlen) < 0)
            return OPTIONS_CONFIG_ERROR;
        file_form = true;
    }
    while (!file_form &&
           (c = getopt_long(argc, argv, short_options, long_options, NULL)) != -1) {
        timeout = NULL;
        switch (c) {
        case 'p':
            if (!cfg->cert_set) {
                cfg->cert_file = optarg;
                cfg->cert_set = true;
            } else if (cfg->n_more_certs < sizeof cfg->more_certs / sizeof cfg->more_certs[0]) {
                cfg->more_certs[cfg->n_more_certs++] = optarg;
            } else {
                fail(errbuf, errlen, "--cert %s: at most %zu certificates", optarg,
                     1 + sizeof cfg->more_certs / sizeof cfg->more_certs[0]);
                return OPTIONS_ERROR;
            }
            break;
        case OPT_SNI_STRICT:
            cfg->sni_strict = true;
            break;
        case OPT_KEY:
            cfg->key_file = optarg;
            break;
        case 'r':
            cfg->connect = optarg;
            break;
        case 'I':
            cfg->bind_addr = optarg;
            break;
        case 'C':
            cfg->priority = optarg;
            break;
        case 'N':
            cfg->service = optarg;
            cfg->service_set = true;
            break;
        case OPT_CHROOT:
            if (optarg[0] != '/') {
                fail(errbuf, errlen, "--chroot %s: must be an absolute path", optarg);
                return OPTIONS_ERROR;
            }
            cfg->chroot_dir = optarg;
            break;
        case OPT_KEY_PROCESS:
        case OPT_SANDBOX:
            if (strcmp(optarg, "yes") != 0 && strcmp(optarg, "no") != 0) {
                fail(errbuf, errlen, "%s %s: expected yes or no",
                     flag_name(c, name, sizeof name), optarg);
                return OPTIONS_ERROR;
            }
            *(c == OPT_KEY_PROCESS ? &cfg->key_process : &cfg->sandbox) = optarg[0] == 'y';
            break;
        case OPT_HOSTS_ALLOW:
            cfg->hosts_allow = optarg;
            break;
        case OPT_HOSTS_DENY:
            cfg->hosts_deny = optarg;
            break;
        case OPT_CONFIG:
            /* In order: the file overrides options before it, not after it. */
            if (conffile_load(optarg, cfg, errbuf, errlen) < 0)
                return OPTIONS_CONFIG_ERROR;
            break;
        case 'D':
            if (options_parse_log_level(optarg, &cfg->log_facility, &cfg->log_level) < 0) {
                fail(errbuf, errlen, "-D %s: expected [FACILITY.]LEVEL, such as mail.info or 5",
                     optarg);
                return OPTIONS_ERROR;
            }
            break;
        case 'o':
            cfg->log_file = optarg;
            break;
        case 'f':
            cfg->log_stderr = true;
            break;
        case 's':
            cfg->user = optarg;
            break;
        case 'g':
            cfg->group = optarg;
            break;
        case 'P':
            options_note(cfg, "-P ignored: a per-connection process writes no pid file");
            break;
        case OPT_CHECK:
            result = OPTIONS_CHECK;
            cfg->check = true;
            break;
        case OPT_TIMEOUT_HANDSHAKE:
            timeout = &cfg->timeout_handshake;
            break;
        case OPT_TIMEOUT_CONNECT:
            timeout = &cfg->timeout_connect;
            break;
        case OPT_TIMEOUT_IDLE:
            timeout = &cfg->timeout_idle;
            break;
        case OPT_TIMEOUT_CLOSE:
            timeout = &cfg->timeout_close;
            break;
        case 'V':
            return OPTIONS_VERSION;
        case 'h':
            return OPTIONS_HELP;
        case 'd':
        case 'T':
            fail(errbuf, errlen,
                 "-%c makes no sense for a per-connection program: tlsfilter is "
                 "started by inetd, xinetd, systemd or socat",
                 c);
            return OPTIONS_ERROR;
        case 'l':
        case 'L':
            if (optarg[0] != '/') {
                fail(errbuf, errlen, "-%c %s: the program needs an absolute path", c, optarg);
                return OPTIONS_ERROR;
            }
            cfg->exec_path = optarg;
            cfg->exec_pty = c == 'L';
            break;
        case 'c':
            cfg->client_mode = true;
            break;
        case 'A':
            cfg->ca_file = optarg;
            break;
        case 'a':
            cfg->ca_dir = optarg;
            break;
        case OPT_SERVER_NAME:
            cfg->server_name = optarg;
            break;
        case 'v': {
            long v;
            if (parse_long(optarg, 0, 3, &v) == 0)
                cfg->verify_level = (int)v;
            else if (strcmp(optarg, "none") == 0)
                cfg->verify_level = 0;
            else if (strcmp(optarg, "optional") == 0)
                cfg->verify_level = 1;
            else if (strcmp(optarg, "require") == 0)
                cfg->verify_level = 2;
            else {
                fail(errbuf, errlen, "-v %s: expected 0-3, none, optional or require", optarg);
                return OPTIONS_ERROR;
            }
            break;
        }
        case 't':
            timeout = &cfg->session_timeout;
            break;
        case OPT_CRL_FILE:
            cfg->crl_file = optarg;
            break;
        case OPT_ALLOW_CLIENT:
            if (strncmp(optarg, "subject=", 8) != 0 && strncmp(optarg, "san=", 4) != 0 &&
                strncmp(optarg, "sha256=", 7) != 0) {
                fail(errbuf, errlen,
                     "--allow-client %s: expected subject=DN, san=NAME or sha256=FINGERPRINT",
                     optarg);
                return OPTIONS_ERROR;
            }
            if (cfg->n_allow_client == sizeof cfg->allow_client / sizeof cfg->allow_client[0]) {
                fail(errbuf, errlen, "--allow-client: at most %zu rules",
                     sizeof cfg->allow_client / sizeof cfg->allow_client[0]);
                return OPTIONS_ERROR;
            }
            cfg->allow_client[cfg->n_allow_client++] = optarg;
            break;
        case OPT_ALPN:
            cfg->alpn = optarg;
            break;
        case OPT_PROXY_PROTOCOL:
            if (strcmp(optarg, "v1") == 0 || strcmp(optarg, "1") == 0) {
                cfg->proxy_protocol = 1;
            } else if (strcmp(optarg, "v2") == 0 || strcmp(optarg, "2") == 0) {
                cfg->proxy_protocol = 2;
            } else {
                fail(errbuf, errlen, "--proxy-protocol %s: expected v1 or v2", optarg);
                return OPTIONS_ERROR;
            }
            break;
        case OPT_ACCEPT_PROXY:
            cfg->accept_proxy = true;
            break;
        case OPT_PROXY_FROM:
            if (!proxy_net_valid(optarg)) {
                fail(errbuf, errlen, "--proxy-from %s: expected ADDR or ADDR/PREFIX", optarg);
                return OPTIONS_ERROR;
            }
            if (cfg->n_proxy_from == sizeof cfg->proxy_from / sizeof cfg->proxy_from[0]) {
                fail(errbuf, errlen, "--proxy-from: at most %zu",
                     sizeof cfg->proxy_from / sizeof cfg->proxy_from[0]);
                return OPTIONS_ERROR;
            }
            cfg->proxy_from[cfg->n_proxy_from++] = optarg;
            break;
        case OPT_STARTTLS:
            cfg->starttls = options_parse_starttls(optarg);
            if (cfg->starttls == STARTTLS_OFF) {
                fail(errbuf, errlen, "--starttls %s: expected smtp, imap or pop3", optarg);
                return OPTIONS_ERROR;
            }
            break;
        case OPT_STARTTLS_OPTIONAL:
            cfg->starttls_optional = true;
            break;
        case OPT_STARTTLS_REQUIRED:
            cfg->starttls_optional = false;
            break;
        case OPT_MAX_CONNECTIONS:
        case OPT_MAX_PER_SOURCE:
        case OPT_MAX_RATE: {
            char why[64];
            if (options_set_limit(cfg,
                                  c == OPT_MAX_CONNECTIONS  ? OPTIONS_MAX_CONNECTIONS
                                  : c == OPT_MAX_PER_SOURCE ? OPTIONS_MAX_PER_SOURCE
                                                            : OPTIONS_MAX_RATE,
                                  optarg, why, sizeof why) < 0) {
                fail(errbuf, errlen, "%s %s: %s", flag_name(c, name, sizeof name), optarg, why);
                return OPTIONS_ERROR;
            }
            break;
        }
        case OPT_EXIT_IDLE:
            timeout = &cfg->exit_idle;
            break;
        case OPT_OCSP:
            cfg->ocsp_file = optarg;
            break;
        case OPT_TICKET_KEY:
            cfg->ticket_key = optarg;
            break;
        case OPT_GENERATE_TICKET_KEY:
            cfg->ticket_key = optarg;
            result = OPTIONS_GENERATE_TICKET_KEY;
            break;
        case ':':
            fail(errbuf, errlen, "option %s needs an argument",
                 optopt ? flag_name(optopt, name, sizeof name) : argv[optind - 1]);
            return OPTIONS_ERROR;
        default:
            if (optopt != 0)
                fail(errbuf, errlen, "unknown option -%c", optopt);
            else
                fail(errbuf, errlen, "unknown option %s", argv[optind - 1]);
            return OPTIONS_ERROR;
        }
        if (timeout != NULL && options_parse_seconds(optarg, timeout) < 0) {
            fail(errbuf, errlen, "%s %s: expected a number of seconds (0-604800)",
                 flag_name(c, name, sizeof name), optarg);
            return OPTIONS_ERROR;
        }
    }
    if (file_form)
        optind = argc;
    /* stunnel 3: "-l PROGRAM -- ARGV0 ARGS..." gives the program's whole argv. */
    if (optind < argc && cfg->exec_path != NULL && strcmp(argv[optind - 1], "--") == 0) {
        cfg->exec_argv = argv + optind;
    } else if (optind == argc - 1 && cfg->config_file == NULL && argv[optind][0] != '-') {
        /* "tlsfilter --check FILE": the file form after options. */
        if (conffile_load(argv[optind], cfg, errbuf, errlen) < 0)
            return OPTIONS_CONFIG_ERROR;
    } else if (optind < argc) {
        fail(errbuf, errlen, "unexpected argument '%s'", argv[optind]);
        return OPTIONS_ERROR;
    }
    if (result == OPTIONS_GENERATE_TICKET_KEY && optind < argc) {
        fail(errbuf, errlen, "unexpected argument '%s'", argv[optind]);
        return OPTIONS_ERROR;
    }
    if (result == OPTIONS_GENERATE_TICKET_KEY)
        return result;
    if (validate(cfg, errbuf, errlen) < 0)
        return cfg->config_file != NULL ? OPTIONS_CONFIG_ERROR : OPTIONS_ERROR;
    return result;
}
