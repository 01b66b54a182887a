/*
 * conffile.c: stunnel 4/5 configuration files into struct config, read as
 * stunnel's inetd mode reads them.
 *
 * A user moving from stunnel changes `server` in the xinetd file and keeps
 * the configuration file, so the syntax is stunnel's: KEY = VALUE lines,
 * comment lines starting with # or ;, whitespace trimmed around key and
 * value, keys case-insensitive, values taken whole (stunnel has no inline
 * comments either: "cert = a.pem ; x" names a file called "a.pem ; x").
 * In inetd mode stunnel serves exactly one service, so one [section] is
 * accepted and a second one is an error, not a silent choice.
 *
 * Every stunnel key is known here and is either mapped, accepted with a
 * note for the log (it would have no effect in a per-connection process:
 * the launcher listens, nothing daemonizes, there is no session cache and
 * no OpenSSL), or refused with a message that says why. Only keys whose
 * loss weakens nothing become notes: a key that checks or restricts
 * something (CRLs, OCSP, ident, checkIP, fips = yes) is refused.
 *
 * A few keys are tlsfilter's own, for what stunnel has no key for (priority,
 * the listener's limits, the key process, the sandbox): so that a service
 * can live in the file alone, without options after --config. They are
 * named after their long option in stunnel's camelCase (--max-per-source:
 * maxPerSource) and parsed by options.c's parsers, with its ranges.
 *
 * The file is applied all or nothing: it is parsed into a copy of the
 * caller's config, and the copy replaces it only once the whole file has
 * been accepted.
 */
#include "config.h"

#include "conffile.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "backend.h"

/* The longest line accepted, line terminator not counted. */
#define LINE_MAX_CHARS 1023

/* TLS versions by their minor number, as sslVersion* and options = name them. */
enum { TLS12 = 2, TLS13 = 3 };

/*
 * Everything this file allocates lives for the process once a load has
 * succeeded. The blocks are chained from a static list: they stay reachable
 * (valgrind counts them as "still reachable", not as leaks), and a failed
 * load frees exactly the blocks it allocated.
 */
struct block {
    struct block *next;
    max_align_t data[];
};
static struct block *blocks;

static void *pool_alloc(size_t size)
{
    struct block *b;

    if (size > SIZE_MAX - sizeof *b)
        return NULL;
    b = malloc(sizeof *b + size);
    if (b == NULL)
        return NULL;
    b->next = blocks;
    blocks = b;
    return b->data;
}

/* Free the blocks allocated since blocks was mark. */
static void pool_release(struct block *mark)
{
    struct block *b;

    while (blocks != NULL && blocks != mark) {
        b = blocks;
        blocks = b->next;
        free(b);
    }
}

static char *pool_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *copy = pool_alloc(n);

    if (copy != NULL)
        memcpy(copy, s, n);
    return copy;
}

/* The state of one load: the working copy and what the end-of-file checks need. */
struct parser {
    const char *path;
    unsigned line; /* the line being read; 0 for the file as a whole */
    char *err;
    size_t errlen;
    struct config cfg;   /* the working copy, the caller's on success */
    const char *section; /* the [service] seen, or NULL */
    unsigned section_line;
    bool service_given;      /* service = wins over the section's name */
    unsigned connect_line;   /* where connect = was; 0 if nowhere yet */
    unsigned exec_line;      /* where exec = was */
    unsigned exec_args_line; /* where execArgs = was */
    const char *check_host;  /* checkHost, resolved against client = at the end */
    unsigned check_host_line;
    const char *sni;
    unsigned sni_line;
    int syslog;            /* syslog = : -1 not given, else 0 or 1 */
    unsigned version_line; /* the last key that restricted TLS versions; 0 if none */
    int version_min, version_max;
    bool no_tls12, no_tls13; /* options = NO_TLSv1_2, NO_TLSv1_3 */
};

static int fail(struct parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Write "FILE:LINE: message" (or "FILE: message") into p->err; returns -1. */
static int fail(struct parser *p, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (p->line > 0)
        n = snprintf(p->err, p->errlen, "%s:%u: ", p->path, p->line);
    else
        n = snprintf(p->err, p->errlen, "%s: ", p->path);
    /* A path that fills err on its own leaves no room for the message. */
    if (n < 0 || (size_t)n >= p->errlen)
        return -1;
    va_start(ap, fmt);
    vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

/* Record a note once: two socket = lines say the same thing. */
static void note(struct parser *p, const char *text)
{
    size_t i;

    for (i = 0; i < p->cfg.n_notes; i++)
        if (strcmp(p->cfg.notes[i], text) == 0)
            return;
    options_note(&p->cfg, text);
}

static int out_of_memory(struct parser *p)
{
    return fail(p, "out of memory");
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* Trim s in place: returns its first non-space character, ends it after its last. */
static char *trim(char *s)
{
    size_t n;

    while (is_space(*s))
        s++;
    n = strlen(s);
    while (n > 0 && is_space(s[n - 1]))
        n--;
    s[n] = '\0';
    return s;
}

/*
 * Valid UTF-8 without control characters (C0, DEL, C1), tabs allowed only
 * where asked: a value may reach a log line, a path or an argv.
 */
static bool text_ok(const char *s, bool allow_tab)
{
    const unsigned char *u = (const unsigned char *)s;
    unsigned long cp;
    unsigned need, i;

    while (*u != '\0') {
        if (*u < 0x80) {
            if ((*u < 0x20 && !(allow_tab && *u == '\t')) || *u == 0x7f)
                return false;
            u++;
            continue;
        }
        if (*u >= 0xc2 && *u <= 0xdf) {
            need = 1;
            cp = *u & 0x1fu;
        } else if (*u >= 0xe0 && *u <= 0xef) {
            need = 2;
            cp = *u & 0x0fu;
        } else if (*u >= 0xf0 && *u <= 0xf4) {
            need = 3;
            cp = *u & 0x07u;
        } else {
            return false;
        }
        /* A NUL is not a continuation byte: the loop never reads past it. */
        for (i = 1; i <= need; i++) {
            if ((u[i] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (u[i] & 0x3fu);
        }
        if ((need == 2 && cp < 0x800) || (need == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff) || cp <= 0x9f)
            return false;
        u += need + 1;
    }
    return true;
}

/* A syslog ident and TCP wrappers daemon name: hosts.allow splits on spaces and commas. */
static bool name_ok(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > 64)
        return false;
    return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._+-") == n;
}

/* ---- values ---------------------------------------------------------- */

static int yes_no(struct parser *p, const char *key, const char *value, bool *out)
{
    /* stunnel compares these case-insensitively and takes nothing else. */
    *out = false;
    if (strcasecmp(value, "yes") == 0) {
        *out = true;
        return 0;
    }
    if (strcasecmp(value, "no") == 0) {
        *out = false;
        return 0;
    }
    return fail(p, "%s = %s: expected yes or no", key, value);
}

static int seconds(struct parser *p, const char *key, const char *value, unsigned *out)
{
    if (options_parse_seconds(value, out) < 0)
        return fail(p, "%s = %s: expected a number of seconds (1-604800)", key, value);
    return 0;
}

/*
 * A version as sslVersion, sslVersionMin and sslVersionMax name it: 0 for
 * "all", TLS12 or TLS13. Anything older is refused, not clamped: the user
 * asked for a protocol tlsfilter will not speak.
 */
static int tls_version(struct parser *p, const char *key, const char *value, int *out)
{
    static const char *const old[] = {"SSLv2", "SSLv3", "TLSv1", "TLSv1.0", "TLSv1.1"};
    size_t i;

    if (strcasecmp(value, "all") == 0) {
        *out = 0;
        return 0;
    }
    if (strcasecmp(value, "TLSv1.2") == 0) {
        *out = TLS12;
        return 0;
    }
    if (strcasecmp(value, "TLSv1.3") == 0) {
        *out = TLS13;
        return 0;
    }
    for (i = 0; i < sizeof old / sizeof old[0]; i++)
        if (strcasecmp(value, old[i]) == 0)
            return fail(p,
                        "%s = %s refused: tlsfilter speaks only TLS 1.2 and TLS 1.3 "
                        "(SSL 2 and 3, TLS 1.0 and 1.1 are obsolete and insecure)",
                        key, value);
    return fail(p, "%s = %s: expected all, TLSv1.2 or TLSv1.3", key, value);
}

/* ---- keys that need more than a store --------------------------------- */

static const char note_version_all[] =
    "sslVersion all means TLS 1.2 and 1.3: tlsfilter speaks nothing older";

static int on_connect(struct parser *p, const char *key, const char *value)
{
    char host[256], port[64], msg[256];

    if (p->connect_line != 0)
        return fail(p,
                    "a second connect = (the first is on line %u): stunnel's failover "
                    "list is not supported, tlsfilter has one backend",
                    p->connect_line);
    /* Checked here so that the error names the line; resolved later, by backend.c. */
    if (value[0] != '/' &&
        backend_split(value, host, sizeof host, port, sizeof port, msg, sizeof msg) < 0)
        return fail(p,
                    "%s = %s: expected [HOST:]PORT (PORT a number or service name), "
                    "[IPV6]:PORT or /PATH",
                    key, value);
    p->cfg.connect = pool_strdup(value);
    if (p->cfg.connect == NULL)
        return out_of_memory(p);
    p->connect_line = p->line;
    return 0;
}

/* An absolute path: exec = runs no PATH search, chroot = must not depend on the cwd. */
static int absolute(struct parser *p, const char *key, const char *value, const char **field)
{
    if (value[0] != '/')
        return fail(p, "%s = %s: must be an absolute path", key, value);
    *field = pool_strdup(value);
    if (*field == NULL)
        return out_of_memory(p);
    return 0;
}

static int on_exec(struct parser *p, const char *key, const char *value)
{
    if (absolute(p, key, value, &p->cfg.exec_path) < 0)
        return -1;
    p->exec_line = p->line;
    return 0;
}

static int on_cert(struct parser *p, const char *key, const char *value)
{
    p->cfg.cert_file = pool_strdup(value);
    if (p->cfg.cert_file == NULL)
        return out_of_memory(p);
    /* In client mode the certificate is presented only when one was named. */
    p->cfg.cert_set = true;
    return 0;
}

static int on_chroot(struct parser *p, const char *key, const char *value)
{
    return absolute(p, key, value, &p->cfg.chroot_dir);
}

/* stunnel's execArgs: argv[0] included, split on whitespace, no quoting. */
static int on_exec_args(struct parser *p, const char *key, const char *value)
{
    size_t words = 0, len = strlen(value) + 1, i;
    const char *s;
    char **argv, *copy, *w;

    for (s = value; *s != '\0';) {
        while (*s == ' ' || *s == '\t')
            s++;
        if (*s == '\0')
            break;
        words++;
        while (*s != '\0' && *s != ' ' && *s != '\t')
            s++;
    }
    /* One block: the NULL-terminated array, then the words it points into. */
    if (words > (SIZE_MAX - len) / sizeof *argv - 1)
        return out_of_memory(p);
    argv = pool_alloc((words + 1) * sizeof *argv + len);
    if (argv == NULL)
        return out_of_memory(p);
    copy = (char *)(argv + words + 1);
    memcpy(copy, value, len);
    w = copy;
    for (i = 0; i < words; i++) {
        while (*w == ' ' || *w == '\t')
            w++;
        argv[i] = w;
        while (*w != '\0' && *w != ' ' && *w != '\t')
            w++;
        if (*w != '\0')
            *w++ = '\0';
    }
    argv[words] = NULL;
    p->cfg.exec_argv = argv;
    p->exec_args_line = p->line;
    return 0;
}

static int on_verify(struct parser *p, const char *key, const char *value)
{
    /* stunnel 4 levels 0-3 are tlsfilter's -v levels; 4 is "the peer's certificate only". */
    if (value[1] == '\0' && value[0] >= '0' && value[0] <= '3') {
        p->cfg.verify_level = value[0] - '0';
        return 0;
    }
    if (strcmp(value, "4") == 0)
        return fail(p,
                    "%s = 4 not supported: tlsfilter always checks the chain; use "
                    "verify = 3 with the peer's certificate in CAfile",
                    key);
    return fail(p, "%s = %s: expected 0, 1, 2 or 3", key, value);
}

/* checkHost and sni: one name, resolved against client = once the file is read. */
static int one_name(struct parser *p, const char *key, const char *value, const char **name,
                    unsigned *line)
{
    if (*name != NULL && strcmp(*name, value) != 0)
        return fail(p, "a second %s = (the first is on line %u): tlsfilter checks one name",
                    key, *line);
    *name = pool_strdup(value);
    if (*name == NULL)
        return out_of_memory(p);
    *line = p->line;
    return 0;
}

static int on_check_host(struct parser *p, const char *key, const char *value)
{
    return one_name(p, key, value, &p->check_host, &p->check_host_line);
}

static int on_sni(struct parser *p, const char *key, const char *value)
{
    return one_name(p, key, value, &p->sni, &p->sni_line);
}

static int on_debug(struct parser *p, const char *key, const char *value)
{
    if (options_parse_log_level(value, &p->cfg.log_facility, &p->cfg.log_level) < 0)
        return fail(p, "%s = %s: expected [FACILITY.]LEVEL, such as 7, debug or mail.info", key,
                    value);
    return 0;
}

static int on_syslog(struct parser *p, const char *key, const char *value)
{
    bool yes;

    if (yes_no(p, key, value, &yes) < 0)
        return -1;
    p->syslog = yes;
    return 0;
}

static int on_service(struct parser *p, const char *key, const char *value)
{
    if (!name_ok(value))
        return fail(p, "%s = %s: a service name is 1-64 letters, digits, '.', '_', '+' or '-'",
                    key, value);
    p->cfg.service = pool_strdup(value);
    if (p->cfg.service == NULL)
        return out_of_memory(p);
    p->cfg.service_set = true;
    p->service_given = true;
    return 0;
}

static int on_timeout_close(struct parser *p, const char *key, const char *value)
{
    if (seconds(p, key, value, &p->cfg.timeout_close) < 0)
        return -1;
    if (p->cfg.timeout_close == 0) {
        /* stunnel's 0 is "do not wait for close_notify"; a bound of 1 s is as good. */
        p->cfg.timeout_close = 1;
        note(p, "TIMEOUTclose = 0 means 1 second: tlsfilter waits that long at most "
                "for the peer to close");
    }
    return 0;
}

static int on_ssl_version(struct parser *p, const char *key, const char *value)
{
    int v;

    if (tls_version(p, key, value, &v) < 0)
        return -1;
    if (v == 0) {
        p->version_min = TLS12;
        p->version_max = TLS13;
        note(p, note_version_all);
    } else {
        p->version_min = p->version_max = v;
    }
    p->version_line = p->line;
    return 0;
}

static int on_ssl_version_min(struct parser *p, const char *key, const char *value)
{
    int v;

    if (tls_version(p, key, value, &v) < 0)
        return -1;
    if (v == 0)
        note(p, note_version_all);
    p->version_min = v == 0 ? TLS12 : v;
    p->version_line = p->line;
    return 0;
}

static int on_ssl_version_max(struct parser *p, const char *key, const char *value)
{
    int v;

    if (tls_version(p, key, value, &v) < 0)
        return -1;
    p->version_max = v == 0 ? TLS13 : v;
    p->version_line = p->line;
    return 0;
}

/*
 * OpenSSL's SSL_OP_* names, one per line, "-NAME" clearing one. The two that
 * drop a TLS version tlsfilter speaks are honoured; those that disable what
 * tlsfilter never does already hold, and clearing one of the protocol ones
 * would enable an obsolete protocol, so that is refused; the rest tune
 * OpenSSL and are noted.
 */
static int on_options(struct parser *p, const char *key, const char *value)
{
    static const char *const obsolete[] = {"NO_SSLv2", "NO_SSLv3", "NO_TLSv1", "NO_TLSv1_1"};
    static const char *const already[] = {"NO_COMPRESSION", "NO_RENEGOTIATION",
                                          "CIPHER_SERVER_PREFERENCE", "SINGLE_DH_USE",
                                          "SINGLE_ECDH_USE"};
    bool clear = value[0] == '-';
    const char *name = clear ? value + 1 : value;
    size_t i;

    if (strcasecmp(name, "NO_TLSv1_2") == 0) {
        p->no_tls12 = !clear;
        p->version_line = p->line;
        return 0;
    }
    if (strcasecmp(name, "NO_TLSv1_3") == 0) {
        p->no_tls13 = !clear;
        p->version_line = p->line;
        return 0;
    }
    for (i = 0; i < sizeof obsolete / sizeof obsolete[0]; i++)
        if (strcasecmp(name, obsolete[i]) == 0) {
            if (clear)
                return fail(p,
                            "%s = %s refused: tlsfilter speaks only TLS 1.2 and TLS 1.3 "
                            "(SSL 2 and 3, TLS 1.0 and 1.1 are obsolete and insecure)",
                            key, value);
            return 0;
        }
    for (i = 0; i < sizeof already / sizeof already[0]; i++)
        if (strcasecmp(name, already[i]) == 0 && !clear)
            return 0;
    note(p, "options ignored: OpenSSL flags; tlsfilter refuses SSL and TLS 1.0/1.1, "
            "compression and renegotiation, and prefers its own cipher order");
    return 0;
}

static int on_renegotiation(struct parser *p, const char *key, const char *value)
{
    bool yes;

    if (yes_no(p, key, value, &yes) < 0)
        return -1;
    if (yes)
        note(p, "renegotiation = yes ignored: renegotiation is always refused");
    return 0;
}

static int on_retry(struct parser *p, const char *key, const char *value)
{
    bool yes;

    if (yes_no(p, key, value, &yes) < 0)
        return -1;
    if (yes)
        note(p, "retry = yes ignored: a backend that fails or exits ends the connection");
    return 0;
}

static int on_fips(struct parser *p, const char *key, const char *value)
{
    bool yes;

    if (yes_no(p, key, value, &yes) < 0)
        return -1;
    if (yes)
        return fail(p,
                    "%s = yes not supported: GnuTLS follows the system-wide FIPS mode "
                    "(fips=1 on the kernel command line)",
                    key);
    return 0;
}

static int on_foreground(struct parser *p, const char *key, const char *value)
{
    if (strcasecmp(value, "yes") != 0 && strcasecmp(value, "no") != 0 &&
        strcasecmp(value, "quiet") != 0)
        return fail(p, "%s = %s: expected yes, quiet or no", key, value);
    note(p, "foreground ignored: tlsfilter never detaches, and logs to syslog or to output =");
    return 0;
}

static int on_log(struct parser *p, const char *key, const char *value)
{
    if (strcasecmp(value, "append") == 0)
        return 0;
    if (strcasecmp(value, "overwrite") == 0) {
        note(p, "log = overwrite ignored: every connection appends to the output = file");
        return 0;
    }
    return fail(p, "%s = %s: expected append or overwrite", key, value);
}

static int on_protocol(struct parser *p, const char *key, const char *value)
{
    /* stunnel's "protocol = proxy": a PROXY v1 header to the backend. */
    if (strcasecmp(value, "proxy") == 0) {
        p->cfg.proxy_protocol = 1;
        return 0;
    }
    /* smtp, imap, pop3: --starttls, required as stunnel's server side is
     * (client mode refuses it: tlsfilter speaks TLS to a server at once). */
    p->cfg.starttls = options_parse_starttls(value);
    if (p->cfg.starttls != 0)
        return 0;
    return fail(p,
                "%s = %s is not supported: tlsfilter does implicit TLS and STARTTLS for "
                "smtp, imap and pop3 (server side), and proxy",
                key, value);
}

/* ---- tlsfilter's own keys ---------------------------------------------- */

/* maxConnections, maxPerSource, maxRate: options_set_limit() holds the ranges. */
static int limit(struct parser *p, const char *key, const char *value, enum options_limit which)
{
    char why[64];

    if (options_set_limit(&p->cfg, which, value, why, sizeof why) < 0)
        return fail(p, "%s = %s: %s", key, value, why);
    return 0;
}

static int on_max_connections(struct parser *p, const char *key, const char *value)
{
    return limit(p, key, value, OPTIONS_MAX_CONNECTIONS);
}

static int on_max_per_source(struct parser *p, const char *key, const char *value)
{
    return limit(p, key, value, OPTIONS_MAX_PER_SOURCE);
}

static int on_max_rate(struct parser *p, const char *key, const char *value)
{
    return limit(p, key, value, OPTIONS_MAX_RATE);
}

static int on_exit_idle(struct parser *p, const char *key, const char *value)
{
    /* Unlike the TIMEOUT keys, 0 is a value here: never exit (the default). */
    if (options_parse_seconds(value, &p->cfg.exit_idle) < 0)
        return fail(p, "%s = %s: expected a number of seconds (0-604800; 0: never)", key,
                    value);
    return 0;
}

/* ---- the key table ---------------------------------------------------- */

typedef int handler(struct parser *p, const char *key, const char *value);

enum kind {
    K_STRING,  /* a string field, copied */
    K_BOOL,    /* a bool field, yes or no */
    K_SECONDS, /* an unsigned field, 1 second or more */
    K_NOTE,    /* accepted, without effect: text goes to the log */
    K_REFUSE,  /* an error: "KEY text" */
    K_CALL     /* call */
};

struct key {
    const char *name;
    enum kind kind;
    size_t offset;    /* K_STRING, K_BOOL, K_SECONDS: the field in struct config */
    const char *text; /* K_NOTE, K_REFUSE */
    handler *call;    /* K_CALL */
};

#define STRING(n, f)                                        \
    {                                                       \
        n, K_STRING, offsetof(struct config, f), NULL, NULL \
    }
#define BOOL(n, f)                                        \
    {                                                     \
        n, K_BOOL, offsetof(struct config, f), NULL, NULL \
    }
#define SECONDS(n, f)                                        \
    {                                                        \
        n, K_SECONDS, offsetof(struct config, f), NULL, NULL \
    }
#define NOTE(n, t)            \
    {                         \
        n, K_NOTE, 0, t, NULL \
    }
#define REFUSE(n, t)            \
    {                           \
        n, K_REFUSE, 0, t, NULL \
    }
#define CALL(n, h)            \
    {                         \
        n, K_CALL, 0, NULL, h \
    }

static const char note_session[] =
    "session cache options ignored: every connection is a new process, without a cache";
static const char note_random[] = "random seeding options ignored: GnuTLS seeds itself";
static const char note_windows[] = "Windows GUI options ignored";
static const char refuse_engine[] =
    "is not supported: GnuTLS has no OpenSSL engines (a PKCS#11 URL may serve as key)";
static const char refuse_protocol[] =
    "is not supported: tlsfilter's STARTTLS needs no protocol credentials or host";
static const char refuse_ocsp[] =
    "is not supported: tlsfilter checks no OCSP responders (it staples a response file "
    "with --ocsp-response)";
static const char refuse_crl[] = "is not supported: give the CRLs in one file with CRLfile =";
static const char refuse_verify[] = "is not supported: use verify = 0, 1, 2 or 3";
static const char refuse_psk[] = "is not supported: tlsfilter uses certificates only";

static const struct key keys[] = {
    /* Mapped. */
    CALL("cert", on_cert),
    STRING("key", key_file),
    CALL("connect", on_connect),
    STRING("local", bind_addr),
    CALL("exec", on_exec),
    CALL("execArgs", on_exec_args),
    BOOL("pty", exec_pty),
    BOOL("client", client_mode),
    STRING("CAfile", ca_file),
    STRING("CApath", ca_dir),
    CALL("verify", on_verify),
    CALL("checkHost", on_check_host),
    CALL("sni", on_sni),
    STRING("setuid", user),
    STRING("setgid", group),
    CALL("chroot", on_chroot),
    CALL("debug", on_debug),
    STRING("output", log_file),
    CALL("syslog", on_syslog),
    CALL("service", on_service),
    BOOL("libwrap", libwrap),
    SECONDS("TIMEOUTidle", timeout_idle),
    CALL("TIMEOUTclose", on_timeout_close),
    SECONDS("TIMEOUTconnect", timeout_connect),
    SECONDS("TIMEOUTbusy", timeout_handshake),
    CALL("sslVersion", on_ssl_version),
    CALL("sslVersionMin", on_ssl_version_min),
    CALL("sslVersionMax", on_ssl_version_max),
    CALL("options", on_options),

    /* tlsfilter's own: stunnel has no key for these (see the top of this file). */
    STRING("priority", priority),
    CALL("maxConnections", on_max_connections),
    CALL("maxPerSource", on_max_per_source),
    CALL("maxRate", on_max_rate),
    CALL("exitIdle", on_exit_idle),
    BOOL("keyProcess", key_process),
    BOOL("sandbox", sandbox),

    /* Accepted without effect, with a note. */
    NOTE("accept", "accept ignored: the launcher (xinetd, inetd, systemd) owns the "
                   "listening socket"),
    CALL("foreground", on_foreground),
    NOTE("pid", "pid ignored: a per-connection process writes no pid file"),
    NOTE("compression", "compression ignored: TLS compression is never used"),
    NOTE("socket", "socket ignored: the launcher sets the client socket's options; the "
                   "backend connection has TCP_NODELAY"),
    NOTE("delay", "delay ignored: every connection resolves the backend anew"),
    NOTE("ciphers", "ciphers ignored: OpenSSL cipher list; use priority ="),
    NOTE("ciphersuites", "ciphersuites ignored: OpenSSL cipher list; use priority ="),
    NOTE("curve", "curves ignored: OpenSSL group list; use priority ="),
    NOTE("curves", "curves ignored: OpenSSL group list; use priority ="),
    NOTE("securityLevel", "securityLevel ignored: OpenSSL setting; use priority ="),
    CALL("renegotiation", on_renegotiation),
    CALL("retry", on_retry),
    CALL("log", on_log),
    NOTE("session", note_session),
    NOTE("sessionCacheSize", note_session),
    NOTE("sessionCacheTimeout", note_session),
    NOTE("sessiond", note_session),
    NOTE("sessionResume", note_session),
    NOTE("ticketKeySecret", note_session),
    NOTE("ticketMacSecret", note_session),
    NOTE("RNDbytes", note_random),
    NOTE("RNDfile", note_random),
    NOTE("RNDoverwrite", note_random),
    NOTE("EGD", note_random),
    NOTE("stack", "stack ignored: tlsfilter runs no threads"),
    NOTE("logId", "logId ignored: one process serves one connection"),
    NOTE("failover", "failover ignored: tlsfilter has one backend"),
    NOTE("reset", "reset ignored: connections end with a FIN"),
    NOTE("TIMEOUTocsp", "TIMEOUTocsp ignored: tlsfilter does no OCSP checks"),
    NOTE("iconActive", note_windows),
    NOTE("iconError", note_windows),
    NOTE("iconIdle", note_windows),
    NOTE("taskbar", note_windows),

    /* Refused: without them tlsfilter would do less than the file asks. */
    CALL("fips", on_fips),
    CALL("protocol", on_protocol),
    REFUSE("protocolAuthentication", refuse_protocol),
    REFUSE("protocolDomain", refuse_protocol),
    REFUSE("protocolHost", refuse_protocol),
    REFUSE("protocolPassword", refuse_protocol),
    REFUSE("protocolUsername", refuse_protocol),
    REFUSE("transparent", "makes no sense here: tlsfilter connects to the backend from "
                          "its own address"),
    REFUSE("include", "is not supported: put the whole configuration in one file"),
    REFUSE("ident", "is not supported: tlsfilter does no RFC 1413 ident checks"),
    REFUSE("redirect", "is not supported: tlsfilter has one backend"),
    REFUSE("config", "is not supported: OpenSSL configuration commands mean nothing to GnuTLS"),
    REFUSE("engine", refuse_engine),
    REFUSE("engineCtrl", refuse_engine),
    REFUSE("engineDefault", refuse_engine),
    REFUSE("engineId", refuse_engine),
    REFUSE("engineNum", refuse_engine),
    STRING("CRLfile", crl_file),
    REFUSE("CRLpath", refuse_crl),
    REFUSE("OCSP", refuse_ocsp),
    REFUSE("OCSPaia", refuse_ocsp),
    REFUSE("OCSPflag", refuse_ocsp),
    REFUSE("OCSPnonce", refuse_ocsp),
    REFUSE("OCSPrequire", refuse_ocsp),
    REFUSE("checkEmail", "is not supported: tlsfilter checks no e-mail address"),
    REFUSE("checkIP", "is not supported: tlsfilter checks no IP address in certificates"),
    REFUSE("requireCert", refuse_verify),
    REFUSE("verifyChain", refuse_verify),
    REFUSE("verifyPeer", refuse_verify),
    REFUSE("PSKidentity", refuse_psk),
    REFUSE("PSKsecrets", refuse_psk),
};

static const struct key *find_key(const char *name)
{
    size_t i;

    /* stunnel matches option names case-insensitively. */
    for (i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (strcasecmp(name, keys[i].name) == 0)
            return &keys[i];
    return NULL;
}

/* ---- lines -------------------------------------------------------------- */

static int on_section(struct parser *p, char *s)
{
    size_t n = strlen(s);
    char *name;

    if (n < 2 || s[n - 1] != ']')
        return fail(p, "a section header is [NAME]");
    s[n - 1] = '\0';
    name = trim(s + 1);
    if (!text_ok(name, false))
        return fail(p, "control character or invalid UTF-8 in a section name");
    if (p->section != NULL)
        return fail(p,
                    "inetd mode serves one service; found a second section [%s] "
                    "(the first, [%s], is on line %u): give each service its own file",
                    name, p->section, p->section_line);
    if (!name_ok(name))
        return fail(p, "[%s]: a service name is 1-64 letters, digits, '.', '_', '+' or '-'",
                    name);
    p->section = pool_strdup(name);
    if (p->section == NULL)
        return out_of_memory(p);
    p->section_line = p->line;
    return 0;
}

static int on_line(struct parser *p, char *line)
{
    char *s = trim(line), *eq, *name, *value;
    const struct key *k;
    bool flag;

    if (*s == '\0' || *s == '#' || *s == ';')
        return 0;
    if (*s == '[')
        return on_section(p, s);
    eq = strchr(s, '=');
    if (eq == NULL || eq == s)
        return fail(p, "expected KEY = VALUE or [SECTION]");
    *eq = '\0';
    name = trim(s);
    value = trim(eq + 1);
    if (!text_ok(name, false))
        return fail(p, "control character or invalid UTF-8 in an option name");
    k = find_key(name);
    if (k == NULL)
        return fail(p, "unknown option '%s'", name);
    if (*value == '\0')
        return fail(p, "%s: empty value", k->name);
    /* execArgs is split on whitespace: a tab there is a separator. */
    if (!text_ok(value, k->call == on_exec_args))
        return fail(p, "%s: control character or invalid UTF-8 in the value", k->name);

    switch (k->kind) {
    case K_STRING:
        value = pool_strdup(value);
        if (value == NULL)
            return out_of_memory(p);
        *(const char **)(void *)((char *)&p->cfg + k->offset) = value;
        return 0;
    case K_BOOL:
        if (yes_no(p, k->name, value, &flag) < 0)
            return -1;
        *(bool *)(void *)((char *)&p->cfg + k->offset) = flag;
        return 0;
    case K_SECONDS:
        if (seconds(p, k->name, value, (unsigned *)(void *)((char *)&p->cfg + k->offset)) < 0)
            return -1;
        if (*(unsigned *)(void *)((char *)&p->cfg + k->offset) == 0)
            return fail(p, "%s = 0: must be at least 1 second", k->name);
        return 0;
    case K_NOTE:
        note(p, k->text);
        return 0;
    case K_REFUSE:
        return fail(p, "%s %s", k->name, k->text);
    case K_CALL:
        return k->call(p, k->name, value);
    }
    return fail(p, "internal error: key %s", k->name);
}

/*
 * Read one line into buf (size LINE_MAX_CHARS + 2: room for a CR), without
 * its LF or CRLF. Returns 1, 0 at the end of the file, or -1 (message set).
 * Read byte by byte so that a NUL cannot hide the rest of a line.
 */
static int read_line(struct parser *p, FILE *f, char *buf, size_t size)
{
    size_t n = 0;
    int c;

    for (;;) {
        c = getc(f);
        if (c == EOF) {
            if (ferror(f))
                return fail(p, "read error: %s", strerror(errno));
            if (n == 0)
                return 0;
            break;
        }
        if (c == '\n')
            break;
        if (c == '\0')
            return fail(p, "NUL byte in the line");
        if (n + 1 >= size)
            return fail(p, "line longer than %d characters", LINE_MAX_CHARS);
        buf[n++] = (char)c;
    }
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    if (n > LINE_MAX_CHARS)
        return fail(p, "line longer than %d characters", LINE_MAX_CHARS);
    buf[n] = '\0';
    return 1;
}

/* ---- after the last line ------------------------------------------------ */

/* checkHost and sni name the backend's certificate in client mode only. */
static int finish_names(struct parser *p)
{
    if (!p->cfg.client_mode) {
        if (p->check_host != NULL) {
            p->line = p->check_host_line;
            return fail(p, "checkHost in server mode (a check of the client certificate's "
                           "host name) is not supported");
        }
        if (p->sni != NULL) {
            p->line = p->sni_line;
            return fail(p, "sni in server mode chooses among several services; inetd mode "
                           "serves one");
        }
        return 0;
    }
    if (p->check_host != NULL && p->sni != NULL && strcmp(p->check_host, p->sni) != 0) {
        p->line = p->check_host_line > p->sni_line ? p->check_host_line : p->sni_line;
        return fail(p, "checkHost %s and sni %s differ: tlsfilter sends and checks one name",
                    p->check_host, p->sni);
    }
    if (p->check_host != NULL)
        p->cfg.server_name = p->check_host;
    else if (p->sni != NULL)
        p->cfg.server_name = p->sni;
    return 0;
}

/*
 * The versions left by sslVersion*, options = NO_TLSv1_x, appended to the
 * priority string: GnuTLS reads it left to right, so ":-VERS-ALL:+VERS-..."
 * at the end decides, whatever the default or priority = said before.
 */
static int finish_versions(struct parser *p)
{
    bool tls12, tls13;
    const char *versions;
    size_t len;
    char *prio;

    if (p->version_line == 0)
        return 0;
    tls12 = p->version_min <= TLS12 && p->version_max >= TLS12 && !p->no_tls12;
    tls13 = p->version_min <= TLS13 && p->version_max >= TLS13 && !p->no_tls13;
    if (!tls12 && !tls13) {
        p->line = p->version_line;
        return fail(p, "no TLS version left: sslVersion, sslVersionMin, sslVersionMax and "
                       "options exclude both TLS 1.2 and TLS 1.3");
    }
    if (tls12 && tls13) {
        /* The default already is exactly TLS 1.2 and 1.3. */
        if (strcmp(p->cfg.priority, OPTIONS_DEFAULT_PRIORITY) == 0)
            return 0;
        versions = ":-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2";
    } else {
        versions = tls13 ? ":-VERS-ALL:+VERS-TLS1.3" : ":-VERS-ALL:+VERS-TLS1.2";
    }
    len = strlen(p->cfg.priority) + strlen(versions) + 1;
    prio = pool_alloc(len);
    if (prio == NULL)
        return out_of_memory(p);
    snprintf(prio, len, "%s%s", p->cfg.priority, versions);
    p->cfg.priority = prio;
    return 0;
}

/*
 * One backend. The file's replaces one given before it on the command line
 * (options are taken in order), so the earlier kind is cleared.
 */
static int finish_backend(struct parser *p)
{
    if (p->connect_line != 0 && p->exec_line != 0) {
        p->line = p->connect_line > p->exec_line ? p->connect_line : p->exec_line;
        return fail(p, "connect = and exec = both given (lines %u and %u): give one backend",
                    p->connect_line, p->exec_line);
    }
    if (p->exec_args_line != 0 && p->exec_line == 0 && p->cfg.exec_path == NULL) {
        p->line = p->exec_args_line;
        return fail(p, "execArgs = without exec =: execArgs is the argv of the exec = program");
    }
    if (p->connect_line != 0) {
        p->cfg.exec_path = NULL;
        p->cfg.exec_argv = NULL;
    }
    if (p->exec_line != 0) {
        p->cfg.connect = NULL;
        /* An argv from the command line belonged to the program given there. */
        if (p->exec_args_line == 0)
            p->cfg.exec_argv = NULL;
    }
    return 0;
}

static int finish(struct parser *p)
{
    char text[160];
    char *copy;

    /* Errors about the file as a whole name no line; the checks set theirs. */
    p->line = 0;
    if (finish_backend(p) < 0 || finish_names(p) < 0 || finish_versions(p) < 0)
        return -1;
    if (p->syslog == 0 && p->cfg.log_file == NULL)
        note(p, "syslog = no ignored: without output = tlsfilter logs to syslog (stderr may "
                "be the client's socket)");
    if (p->syslog == 1 && p->cfg.log_file != NULL)
        note(p, "syslog = yes ignored: with output = tlsfilter logs to that file only");
    if (p->section != NULL) {
        if (!p->service_given) {
            p->cfg.service = p->section;
            p->cfg.service_set = true;
        }
        snprintf(text, sizeof text, "[%s] accepted: inetd mode serves this one service%s",
                 p->section, p->service_given ? "" : ", and its name is the service name");
        copy = pool_strdup(text);
        if (copy == NULL)
            return out_of_memory(p);
        note(p, copy);
    }
    p->cfg.config_file = pool_strdup(p->path);
    if (p->cfg.config_file == NULL)
        return out_of_memory(p);
    return 0;
}

int conffile_load(const char *path, struct config *cfg, char *err, size_t errlen)
{
    struct block *mark = blocks;
    char line[LINE_MAX_CHARS + 2];
    struct parser p;
    FILE *f;
    char *s;
    int r;

    memset(&p, 0, sizeof p);
    p.path = path;
    p.err = err;
    p.errlen = errlen;
    p.cfg = *cfg;
    p.syslog = -1;
    p.version_min = TLS12;
    p.version_max = TLS13;
    if (errlen > 0)
        err[0] = '\0';

    f = fopen(path, "re");
    if (f == NULL)
        return fail(&p, "cannot open: %s", strerror(errno));
    for (;;) {
        p.line++;
        r = read_line(&p, f, line, sizeof line);
        if (r <= 0)
            break;
        s = line;
        /* Files written by Windows editors start with a byte order mark. */
        if (p.line == 1 && strncmp(s, "\xef\xbb\xbf", 3) == 0)
            s += 3;
        r = on_line(&p, s);
        if (r < 0)
            break;
    }
    fclose(f);
    if (r == 0)
        r = finish(&p);
    if (r < 0) {
        pool_release(mark);
        return -1;
    }
    *cfg = p.cfg;
    return 0;
}
