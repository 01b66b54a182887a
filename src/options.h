/*
 * options.h: the one configuration structure, filled from the command line.
 *
 * Every other module reads its settings from a struct config handed to it;
 * nothing reads argv or a global option variable.
 */
#ifndef TLSFILTER_OPTIONS_H
#define TLSFILTER_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif
/* The certificate used when -p is not given (Webmin's "compiled-in default"). */
#define OPTIONS_DEFAULT_CERT SYSCONFDIR "/tlsfilter/tlsfilter.pem"

/*
 * The default priority: TLS 1.2 and 1.3 only, AEAD ciphers only, ECDHE only
 * (no RSA key exchange, no finite-field groups: a client offering only
 * FFDHE8192 would cost the server a CPU-second), X25519 first, then the
 * other elliptic-curve groups, GnuTLS's GROUP-EC-ALL: P-256, P-384, P-521,
 * X448 (so that a client offering only one of the last two is served too),
 * and the server's order wins. GROUP-EC-ALL is one token where the four
 * groups would be four: each costs a few thousand instructions to parse, in
 * every process (callgrind, one X25519 connection: 7,760,551 with this
 * string, 7,766,308 with the older X25519:P-256:P-384 one).
 */
#define OPTIONS_DEFAULT_PRIORITY                                \
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"                \
    ":-CIPHER-ALL:+AES-256-GCM:+AES-128-GCM:+CHACHA20-POLY1305" \
    ":-MAC-ALL:+AEAD:-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA"           \
    ":-GROUP-ALL:+GROUP-X25519:+GROUP-EC-ALL"                   \
    ":%SERVER_PRECEDENCE"

/* Ticket lifetime without -t: GnuTLS's own default, 6 hours. */
#define OPTIONS_DEFAULT_SESSION_TIMEOUT 21600

enum options_result {
    OPTIONS_RUN,                 /* a connection is to be served */
    OPTIONS_CHECK,               /* --check: validate and exit */
    OPTIONS_VERSION,             /* -V: print the version and exit 0 */
    OPTIONS_GENERATE_TICKET_KEY, /* --generate-ticket-key FILE (in cfg->ticket_key) */
    OPTIONS_HELP,                /* -h: print the usage and exit 0 */
    OPTIONS_ERROR,               /* usage error: message in errbuf, exit 64 */
    OPTIONS_CONFIG_ERROR         /* a configuration file is wrong: message in errbuf, exit 78 */
};

struct config {
    const char *cert_file;     /* -p: key, certificate and chain */
    bool cert_set;             /* -p was given (client mode presents it only then) */
    const char *more_certs[7]; /* further --cert files: chosen by SNI and key type */
    size_t n_more_certs;
    bool sni_strict;            /* --sni-strict: refuse names no certificate has */
    const char *key_file;       /* --key: separate private key, or NULL */
    const char *connect;        /* -r: the backend as written */
    const char *bind_addr;      /* -I: local address for the backend, or NULL */
    const char *priority;       /* -C: GnuTLS priority string */
    const char *service;        /* -N: syslog ident and TCP wrappers service */
    bool service_set;           /* -N was given (else libwrap uses stunnel 3's rule) */
    const char *log_file;       /* -o: log to this file instead of syslog */
    const char *user;           /* -s */
    const char *group;          /* -g */
    int log_facility;           /* -D FACILITY. (LOG_DAEMON) */
    int log_level;              /* -D LEVEL (LOG_NOTICE) */
    bool log_stderr;            /* -f */
    unsigned timeout_handshake; /* seconds */
    unsigned timeout_connect;
    unsigned timeout_idle;
    unsigned timeout_close;
    const char *exec_path;        /* -l / -L: program to start instead of -r */
    char **exec_argv;             /* its argv (after "--": argv[0] included), or NULL */
    bool exec_pty;                /* -L: on a pseudo-terminal */
    bool client_mode;             /* -c: plaintext on fd 0/1, TLS towards -r */
    const char *server_name;      /* --server-name: SNI and name check in client mode */
    const char *ca_file;          /* -A */
    const char *ca_dir;           /* -a */
    int verify_level;             /* -v: 0 none ... 3; -1 unset (client mode then verifies) */
    const char *crl_file;         /* --crl-file */
    const char *allow_client[16]; /* --allow-client subject=DN | san=NAME | sha256=HEX */
    size_t n_allow_client;
    const char *alpn;           /* --alpn: comma-separated protocol names */
    const char *ocsp_file;      /* --ocsp-response FILE (DER or PEM) */
    const char *ticket_key;     /* --ticket-key FILE: resumption across processes */
    unsigned session_timeout;   /* -t: ticket lifetime in seconds */
    const char *chroot_dir;     /* --chroot */
    bool key_process;           /* --key-process: the keys sign in a process of their own */
    bool check;                 /* --check: its key process signs once with each key */
    const char *hosts_allow;    /* --hosts-allow: libwrap's allow table */
    const char *hosts_deny;     /* --hosts-deny */
    bool libwrap;               /* check TCP wrappers (default yes, when built in) */
    bool sandbox;               /* --sandbox: seccomp and limits (default yes, when built in) */
    int proxy_protocol;         /* --proxy-protocol: 0 off, 1 or 2: header to the backend */
    bool accept_proxy;          /* --accept-proxy: a PROXY header from a balancer first */
    const char *proxy_from[16]; /* --proxy-from ADDR[/PREFIX]: the balancers */
    size_t n_proxy_from;
    int starttls;            /* --starttls: enum starttls_proto (0: implicit TLS) */
    bool starttls_optional;  /* --starttls-optional: a client may stay in clear */
    const char *config_file; /* --config or the single argument */
    const char *notes[16];   /* accepted-but-ignored options, to be logged */
    size_t n_notes;
    /* The listener (xinetd wait = yes, systemd Accept=no): */
    bool listener;            /* set by main(): a listening socket was given */
    unsigned max_connections; /* sessions at once */
    unsigned max_per_source;  /* ... from one client address (0: no limit) */
    unsigned max_rate;        /* ... new connections per second (0: no limit) */
    unsigned exit_idle;       /* ... seconds without a session before exiting (0: never) */
};

/* Record a note for the log (an option accepted but without effect here). */
void options_note(struct config *cfg, const char *note);

/*
 * Fill *cfg from argv (defaults first). Returns what main() should do; on
 * OPTIONS_ERROR, errbuf holds a one-line message naming the offending option.
 * Never prints, never exits: the caller knows whether stderr is safe.
 */
enum options_result options_parse(int argc, char **argv, struct config *cfg, char *errbuf,
                                  size_t errlen);

/* The usage text printed by -h. */
extern const char options_usage[];

/* Parse "[facility.]level" (names or numbers) as -D takes it. 0 or -1. */
int options_parse_log_level(const char *arg, int *facility, int *level);

/* "smtp", "imap" or "pop3" (any case) as --starttls and protocol = take
 * them: an enum starttls_proto, or 0 (STARTTLS_OFF) for another name. */
int options_parse_starttls(const char *name);

/* Parse a number of seconds (0..86400*7), strictly. 0 or -1. */
int options_parse_seconds(const char *arg, unsigned *out);

/* The listener's limits, as --max-connections, --max-per-source, --max-rate. */
enum options_limit { OPTIONS_MAX_CONNECTIONS, OPTIONS_MAX_PER_SOURCE, OPTIONS_MAX_RATE };

/*
 * Set one listener limit of cfg from arg, strictly: max_connections
 * 1-65536 (0 would refuse every connection), the other two 0-65536 (0: no
 * limit). 0, or -1 with cfg unchanged and why set to "expected ..." (the
 * caller names the option or key and the value before it).
 */
int options_set_limit(struct config *cfg, enum options_limit which, const char *arg, char *why,
                      size_t whylen);

#endif
