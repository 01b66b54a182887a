/*
 * main.c: the life of one connection, one call per step.
 *
 *   options -> log -> credentials -> peer -> resolve backend -> key process
 *   -> drop privileges -> TLS handshake -> connect backend -> relay -> summary line -> exit
 *
 * With --starttls the backend comes before TLS:
 *
 *   ... drop privileges -> connect backend -> plaintext phase (starttls.c)
 *   -> TLS handshake -> relay -> summary line -> exit
 *
 * Each step that fails writes one log line naming the peer and the reason,
 * and exits with its <sysexits.h> status, listed in tlsfilter(8).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "access.h"
#include "backend.h"
#include "identity.h"
#include "listener.h"
#include "log.h"
#include "options.h"
#include "peer.h"
#include "privs.h"
#include "proxy.h"
#include "relay.h"
#include "sandbox.h"
#include "starttls.h"
#include "tls.h"

static double seconds_since(const struct timespec *start)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (now.tv_nsec - start->tv_nsec) / 1e9;
}

/*
 * The environment of an exec'd program, in the names its peers use:
 * stunnel's, ucspi-tcp's and mod_ssl's. Only what is known is set.
 */
static char **exec_environment(const struct peer *p, struct tls *tls, bool tls_on)
{
    /* On the heap, not static: a session with a TCP backend (the most
     * common kind) should not carry 4 KiB of it in its private memory. */
    char(*vars)[300] = malloc(14 * sizeof *vars);
    static char *env[15];
    const struct identity *id = tls_identity(tls);
    size_t n = 0;

    if (vars == NULL)
        return env; /* an empty environment */

#define ENV_ADD(...) snprintf(vars[n], sizeof vars[n], __VA_ARGS__), env[n] = vars[n], n++
    ENV_ADD("PROTO=TCP");
    if (p->known) {
        ENV_ADD("REMOTE_HOST=%s", p->addr);
        ENV_ADD("TCPREMOTEIP=%s", p->addr);
        if (p->port[0]) {
            ENV_ADD("REMOTE_PORT=%s", p->port);
            ENV_ADD("TCPREMOTEPORT=%s", p->port);
        }
    }
    if (p->local_addr[0]) {
        ENV_ADD("TCPLOCALIP=%s", p->local_addr);
        if (p->local_port[0])
            ENV_ADD("TCPLOCALPORT=%s", p->local_port);
    }
    /* --starttls: the program starts before TLS, and knows nothing of it. */
    if (tls_on) {
        ENV_ADD("SSL_PROTOCOL=%s", tls_protocol(tls));
        ENV_ADD("SSL_CIPHER=%s", tls_suite(tls));
        ENV_ADD("SSL_CLIENT_VERIFY=%s", id->verify);
    }
    if (tls_on && id->subject[0]) {
        ENV_ADD("SSL_CLIENT_S_DN=%s", id->subject);
        ENV_ADD("SSL_CLIENT_I_DN=%s", id->issuer);
        ENV_ADD("SSL_CLIENT_CERT_SHA256=%s", id->sha256);
    }
#undef ENV_ADD
    env[n] = NULL;
    return env;
}

/*
 * A usage or configuration-file error: the message to stderr if that is not
 * the socket, and to the log.
 */
/* Not inlined, here and in check(): their buffers would sit in main()'s
 * frame, under which every connection's steps run, and make each
 * connection's stack a page deeper (private memory, held all session). */
__attribute__((noinline)) static int usage_error(const struct config *cfg, const char *msg,
                                                 int status)
{
    char reason[600];

    log_open(cfg);
    log_stderr_write("tlsfilter: ");
    log_stderr_write(msg);
    log_stderr_write(status == EX_USAGE ? "\nTry 'tlsfilter --help'.\n" : "\n");
    log_msg(LOG_ERR, "event=%s reason=%s", status == EX_USAGE ? "usage-error" : "config-error",
            log_value(msg, reason, sizeof reason));
    return status;
}

/* --check: everything a connection would load, plus the costly checks. */
__attribute__((noinline)) static int check(const struct config *cfg)
{
    struct backend b;
    struct tls *t;
    char err[512];
    int bad = 0;

    /* A server always has a certificate; a client only when -p was given. */
    if (!cfg->client_mode || cfg->cert_set)
        bad = tls_check(cfg, stdout);
    /* Then everything a connection loads: CAs, CRL, ticket key, OCSP, ALPN. */
    if (!cfg->client_mode) {
        t = tls_new(cfg, -1, -1, err, sizeof err);
        if (t == NULL) {
            printf("error: %s\n", err);
            bad = -1;
        } else {
            if (tls_warning(t) != NULL)
                printf("warning: %s\n", tls_warning(t));
            printf("ok: a connection's credentials load\n");
            if (tls_check_key_process(t, stdout) < 0)
                bad = -1;
            tls_free(t);
        }
    }
    if (cfg->client_mode) {
        t = tls_new_client(cfg, "localhost", -1, -1, err, sizeof err);
        if (t == NULL) {
            printf("error: %s\n", err);
            bad = -1;
        } else {
            printf("ok: %s\n", cfg->verify_level == 0
                                   ? "server certificates are NOT verified (-v 0)"
                                   : "trusted CA certificates loaded");
            if (cfg->cert_set && tls_check_key_process(t, stdout) < 0)
                bad = -1;
            tls_free(t);
        }
    }

    if (privs_check(cfg, err, sizeof err) < 0) {
        printf("error: %s\n", err);
        bad = -1;
    } else if (cfg->user != NULL || cfg->group != NULL || cfg->chroot_dir != NULL) {
        printf("ok: user, group and chroot directory exist\n");
    }
    printf("%s: TCP wrappers %s\n", access_available() ? "ok" : "note",
           access_available() ? "are checked" : "are not built in");
    printf("%s: seccomp sandbox %s\n", sandbox_available() && cfg->sandbox ? "ok" : "note",
           !sandbox_available() ? "is not built in"
           : cfg->sandbox       ? "is on"
                                : "is off (--sandbox no, or sandbox = no in the file)");
    if (cfg->exec_path != NULL) {
        char inside[4096];
        snprintf(inside, sizeof inside, "%s%s", cfg->chroot_dir ? cfg->chroot_dir : "",
                 cfg->exec_path);
        if (access(inside, X_OK) < 0) {
            printf("error: program %s: %s\n", inside, strerror(errno));
            bad = -1;
        } else {
            printf("ok: program %s is executable\n", inside);
        }
    } else if (backend_resolve(cfg, &b, err, sizeof err) != 0) {
        printf("error: backend %s\n", err);
        bad = -1;
    } else {
        printf("ok: backend %s resolves\n", cfg->connect);
        backend_free(&b);
    }
    printf("%s\n", bad ? "configuration has errors" : "configuration ok");
    return bad ? EX_CONFIG : 0;
}

/* How long a refused or failed client may keep sending after our alert. */
#define LINGER_MS 500

/* Set by SIGTERM, SIGHUP and SIGINT: the relay ends and logs. */
static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

/* One connection: what the steps below hand each other. */
struct conn {
    struct config cfg;
    struct peer peer;
    struct backend backend;
    struct tls *tls;
    int bfd;       /* the backend: socket, socketpair or pty */
    pid_t program; /* -l: the program's pid */
    struct timespec start;
    bool tls_on;        /* the client's side speaks TLS (always, without --starttls) */
    bool ended;         /* --starttls: the conversation ended before TLS */
    struct starttls st; /* --starttls: the plaintext phase's state */
    struct starttls_result *sr;
    unsigned char early[PROXY_HEADER_MAX]; /* --starttls: client bytes read with the */
    size_t n_early;                        /* PROXY header, plaintext for the phase */
};

/* Secrets first: credentials are read before anything else happens. */
static int load_credentials(struct conn *c)
{
    char err[512], reason[600], host[256], port[64];
    const char *name = c->cfg.server_name;

    if (c->cfg.client_mode && name == NULL) {
        /* The server must prove the name we connect to (or localhost). */
        if (backend_split(c->cfg.connect, host, sizeof host, port, sizeof port, err,
                          sizeof err) == 0 &&
            host[0] != '\0')
            name = host;
        else
            name = "localhost";
    }
    c->tls = c->cfg.client_mode ? tls_new_client(&c->cfg, name, -1, -1, err, sizeof err)
                                : tls_new(&c->cfg, 0, 1, err, sizeof err);
    if (c->tls != NULL && tls_warning(c->tls) != NULL)
        log_msg(LOG_WARNING, "event=warning reason=%s",
                log_value(tls_warning(c->tls), reason, sizeof reason));
    if (c->tls != NULL)
        return 0;
    log_msg(LOG_ERR, "event=config-error reason=%s", log_value(err, reason, sizeof reason));
    return EX_CONFIG;
}

/* The listener: the certificate and key parsed once, for every child. */
static int prepare_credentials(struct conn *c)
{
    char err[512], reason[600];

    if (tls_prepare(c->tls, err, sizeof err) == 0)
        return 0;
    log_msg(LOG_ERR, "event=config-error reason=%s", log_value(err, reason, sizeof reason));
    return EX_CONFIG;
}

/*
 * How the key process (or the listener's key holder) started, as a step: 0,
 * or its one log line (with the peer once there is one) and 71.
 */
static int key_process_status(struct conn *c, bool with_peer)
{
    char err[512], reason[600];
    int r = tls_key_process(c->tls, err, sizeof err);

    if (r == 0)
        return 0;
    log_msg(LOG_ERR, "event=%s%s%s reason=%s", r == -2 ? "privilege-error" : "system-error",
            with_peer ? " peer=" : "", with_peer ? c->peer.text : "",
            log_value(err, reason, sizeof reason));
    return EX_OSERR;
}

/*
 * The listener's key holder must be there before it accepts: one that
 * could not start (a user that does not exist, no fork) fails the listener
 * at its start, as a certificate that does not parse does, rather than
 * every connection later.
 */
static int holder_started(struct conn *c)
{
    return key_process_status(c, false);
}

/*
 * tls_check() of the files as they are now, in a child of its own, its
 * findings in text: the listener, which holds no private key (its key
 * holder does), never parses one. 0 when all is well.
 */
static int check_in_child(const struct config *cfg, char *text, size_t size)
{
    size_t got = 0;
    ssize_t r;
    int fds[2], st = 0;
    pid_t pid;

    text[0] = '\0';
    if (pipe2(fds, O_CLOEXEC) < 0)
        return -1;
    pid = fork();
    if (pid == 0) {
        FILE *out = fdopen(fds[1], "w");
        close(fds[0]);
        _exit(out == NULL || tls_check(cfg, out) != 0 || fclose(out) != 0 ? 1 : 0);
    }
    close(fds[1]);
    /* Read to the end (a child is never left blocked on a full pipe),
     * keeping what fits. */
    for (;;) {
        char more[512];
        bool room = got + 1 < size;

        r = read(fds[0], room ? text + got : more, room ? size - 1 - got : sizeof more);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0 || pid < 0)
            break;
        if (room)
            got += (size_t)r;
    }
    text[got] = '\0';
    close(fds[0]);
    while (pid > 0 && waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    return pid > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

/*
 * The listener's SIGHUP: new connections get the files as they are now; a
 * file that no longer loads (or parses: tls_check()) keeps the old ones,
 * with the reason in an error line. Running sessions keep what they had.
 */
static int reload_credentials(void *p)
{
    struct conn *c = p;
    struct tls *old = c->tls;
    char text[4096], *line, reason[600];

    if ((!c->cfg.client_mode || c->cfg.cert_set) &&
        check_in_child(&c->cfg, text, sizeof text) != 0) {
        line = strstr(text, "error: ");
        if (line != NULL)
            line[strcspn(line, "\n")] = '\0';
        log_msg(LOG_ERR, "event=reload-failed reason=%s",
                log_value(line != NULL ? line + 7 : "the files do not load", reason,
                          sizeof reason));
        return -1;
    }
    if (load_credentials(c) != 0 || prepare_credentials(c) != 0 || holder_started(c) != 0) {
        if (c->tls != old)
            tls_free(c->tls);
        c->tls = old;
        log_msg(LOG_ERR, "event=reload-failed reason=\"the old credentials are kept\"");
        return -1;
    }
    tls_free(old);
    log_msg(LOG_NOTICE, "event=reloaded");
    return 0;
}

/* The listener, before each fork: the child's link to the key holder. */
static int holder_link(void *p)
{
    struct conn *c = p;

    return tls_holder_link(c->tls);
}

/*
 * The listener reaped a child that is not a session: a key holder. An old
 * one (a reload replaced it) ending is expected. The current one ending is
 * not: it is logged, and a new one is started from the files, as at SIGHUP;
 * if that fails, the listener stops (its connections could not sign).
 */
static int reaped(void *p, pid_t pid, int st)
{
    struct conn *c = p;
    char how[32];

    if (!tls_holder_is(c->tls, pid))
        return 0;
    if (WIFSIGNALED(st))
        snprintf(how, sizeof how, "signal=SIG%s",
                 sigabbrev_np(WTERMSIG(st)) ? sigabbrev_np(WTERMSIG(st)) : "?");
    else
        snprintf(how, sizeof how, "status=%d", WEXITSTATUS(st));
    log_msg(LOG_ERR,
            "event=key-holder-ended pid=%ld %s reason=\"starting a new one from the files\"",
            (long)pid, how);
    if (reload_credentials(c) < 0 || holder_started(c) != 0)
        return -1;
    return 0;
}

/* A step's status for "done, and all is well": the process exits 0. */
#define DONE (-1)

/* Who is calling: from the socket or the launcher's environment. */
static int identify_peer(struct conn *c)
{
    peer_identify(&c->peer);
    return 0;
}

/* Who is calling, and may they? A refused client gets no TLS byte. */
static int check_access(struct conn *c)
{
    char service[128], value[160];

    if (access_allowed(&c->cfg, &c->peer, access_service(&c->cfg, service, sizeof service)))
        return 0;
    log_msg(LOG_WARNING, "event=refused peer=%s service=%s reason=tcp-wrappers", c->peer.text,
            log_value(service, value, sizeof value));
    return EX_NOPERM;
}

/*
 * --accept-proxy: only a listed balancer may speak first. Nothing is read
 * yet: the header is read once privileges are dropped.
 */
static int check_balancer(struct conn *c)
{
    char err[512], reason[600];
    size_t i;

    peer_identify(&c->peer);
    if (c->peer.gone && !c->peer.known) {
        /* Reset before we could even ask who it was: a balancer's check. */
        log_msg(LOG_INFO, "event=health-check peer=unknown reason=\"reset before the start\"");
        return DONE;
    }
    for (i = 0; c->peer.known && i < c->cfg.n_proxy_from; i++)
        if (proxy_net_match(c->cfg.proxy_from[i], c->peer.addr))
            break;
    if (!c->peer.known || i == c->cfg.n_proxy_from) {
        log_msg(LOG_WARNING, "event=refused peer=%s reason=proxy-not-allowed", c->peer.text);
        return EX_NOPERM;
    }
    if (access_check_jail(&c->cfg, err, sizeof err) < 0) {
        log_msg(LOG_ERR, "event=config-error peer=%s reason=%s", c->peer.text,
                log_value(err, reason, sizeof reason));
        return EX_CONFIG;
    }
    return 0;
}

/*
 * The balancer's PROXY header: from here on its source address is the
 * client's. A balancer that closes without a byte was checking our port.
 */
static int read_proxy_header(struct conn *c)
{
    unsigned char rest[PROXY_HEADER_MAX];
    char err[300], reason[400];
    size_t n = 0;

    switch (peer_read_proxy(&c->peer, c->cfg.timeout_handshake, rest, &n, err, sizeof err)) {
    case 1:
        if (c->cfg.starttls) {
            memcpy(c->early, rest, n);
            c->n_early = n;
        } else {
            tls_preload(c->tls, rest, n);
        }
        return 0;
    case 0:
        log_msg(LOG_INFO, "event=health-check peer=%s", c->peer.text);
        return DONE;
    default:
        log_msg(LOG_WARNING, "event=refused peer=%s reason=%s", c->peer.text,
                log_value(err, reason, sizeof reason));
        return EX_NOPERM;
    }
}

/* Names are resolved before the chroot, where /etc is gone. */
static int resolve_backend(struct conn *c)
{
    char err[512], reason[600];
    int status = c->cfg.exec_path != NULL
                     ? backend_program(&c->cfg, &c->backend)
                     : backend_resolve(&c->cfg, &c->backend, err, sizeof err);

    if (status != 0)
        log_msg(LOG_ERR, "event=%s peer=%s reason=%s",
                status == EX_CONFIG ? "config-error" : "backend-failed", c->peer.text,
                log_value(err, reason, sizeof reason));
    return status;
}

/*
 * The private keys went to a process of their own, which only signs
 * (forked as soon as the files were read: tls_new()); from here on this
 * process has none (--key-process no: it keeps them). Its failure to
 * start is reported here, with the peer.
 */
static int start_key_process(struct conn *c)
{
    return key_process_status(c, true);
}

/* Then privileges; only then is a byte read from anyone. */
static int drop_privileges(struct conn *c)
{
    char err[512], reason[600];

    if (privs_drop(&c->cfg, err, sizeof err) < 0) {
        log_msg(LOG_ERR, "event=privilege-error peer=%s reason=%s", c->peer.text,
                log_value(err, reason, sizeof reason));
        return EX_OSERR;
    }
    if (peer_prepare(&c->peer) < 0) {
        log_msg(LOG_ERR, "event=system-error peer=%s reason=\"fd 0/1: %s\"", c->peer.text,
                strerror(errno));
        return EX_OSERR;
    }
    return 0;
}

/*
 * Then the sandbox (sandbox.c), before the first byte read from anyone:
 * the backend still to be connected is the only socket it allows, and a -l
 * program's process is started now, to wait for its environment, so that
 * no fork or exec is left to allow. --starttls and -c open the backend
 * before they read a byte: their list has no socket at all.
 */
static int enter_sandbox(struct conn *c)
{
    char err[512], reason[600];
    bool opened = c->bfd > 0; /* fds 0/1 are the client's: a backend is never 0 */
    enum sandbox_connect conn = SANDBOX_CONNECT_NONE;

    if (!c->cfg.sandbox)
        return 0;
    if (!opened && c->cfg.exec_path != NULL &&
        backend_prespawn(&c->cfg, &c->backend, err, sizeof err) < 0) {
        log_msg(LOG_ERR, "event=backend-failed peer=%s backend=%s reason=%s", c->peer.text,
                c->backend.text, log_value(err, reason, sizeof reason));
        return EX_UNAVAILABLE;
    }
    if (!opened && c->cfg.exec_path == NULL)
        conn = c->backend.is_unix ? SANDBOX_CONNECT_UNIX : SANDBOX_CONNECT_INET;
    if (sandbox_enter(&c->cfg, conn, err, sizeof err) < 0) {
        log_msg(LOG_ERR, "event=system-error peer=%s reason=%s", c->peer.text,
                log_value(err, reason, sizeof reason));
        return EX_OSERR;
    }
    return 0;
}

static int handshake(struct conn *c)
{
    char reason[600], dn[300];

    switch (tls_handshake(c->tls, c->cfg.timeout_handshake)) {
    case TLS_HANDSHAKE_OK:
        return 0;
    case TLS_HANDSHAKE_TIMEOUT:
        log_msg(LOG_WARNING,
                "event=handshake-timeout peer=%s seconds=%u reason=\"no handshake within %u "
                "seconds\"",
                c->peer.text, c->cfg.timeout_handshake, c->cfg.timeout_handshake);
        return EX_TEMPFAIL;
    case TLS_HANDSHAKE_REFUSED:
        log_msg(LOG_WARNING, "event=refused peer=%s reason=%s%s%s", c->peer.text,
                log_value(tls_error(c->tls), reason, sizeof reason),
                tls_identity(c->tls)->subject[0] ? " client_dn=" : "",
                tls_identity(c->tls)->subject[0]
                    ? log_value(tls_identity(c->tls)->subject, dn, sizeof dn)
                    : "");
        if (!c->cfg.client_mode)
            peer_linger(&c->peer, LINGER_MS);
        return EX_NOPERM;
    case TLS_HANDSHAKE_CONFIG:
        log_msg(LOG_ERR, "event=config-error peer=%s reason=%s", c->peer.text,
                log_value(tls_error(c->tls), reason, sizeof reason));
        return EX_CONFIG;
    case TLS_HANDSHAKE_FAILED:
    default:
        log_msg(LOG_WARNING, "event=handshake-failed peer=%s reason=%s", c->peer.text,
                log_value(tls_error(c->tls), reason, sizeof reason));
        if (!c->cfg.client_mode)
            peer_linger(&c->peer, LINGER_MS);
        return EX_PROTOCOL;
    }
}

/* --proxy-protocol: the client's address and the TLS facts, first thing. */
static int send_proxy_header(struct conn *c, char *err, size_t errlen)
{
    unsigned char hdr[PROXY_HEADER_MAX];
    struct proxy_tls facts;
    const struct peer *p = &c->peer;
    bool with_tls;
    int n;

    /* Only v2 carries them: v1 is spared parsing the certificates. */
    /* With --starttls the header goes before TLS: no TLS facts then. */
    with_tls = c->cfg.proxy_protocol == 2 && c->tls_on;
    if (with_tls)
        tls_proxy_facts(c->tls, &facts);
    n = proxy_build(c->cfg.proxy_protocol, p->known ? p->addr : NULL, p->port,
                    p->local_addr[0] ? p->local_addr : NULL, p->local_port,
                    with_tls ? &facts : NULL, hdr, sizeof hdr);
    if (n < 0) {
        snprintf(err, errlen, "PROXY header too long");
    } else if (backend_send(c->bfd, hdr, (size_t)n, c->cfg.timeout_connect, err, errlen) == 0) {
        return c->bfd;
    }
    close(c->bfd);
    return -1;
}

/* Connect to the backend, or start the program. */
static int open_backend(struct conn *c)
{
    char err[512], reason[600];

    if (c->cfg.exec_path != NULL)
        c->bfd =
            backend_spawn(&c->cfg, &c->backend, exec_environment(&c->peer, c->tls, c->tls_on),
                          &c->program, err, sizeof err);
    else
        c->bfd = backend_connect(&c->backend, c->cfg.timeout_connect, err, sizeof err);
    if (c->bfd >= 0 && c->cfg.proxy_protocol)
        c->bfd = send_proxy_header(c, err, sizeof err);
    if (c->bfd >= 0)
        return 0;
    log_msg(LOG_ERR, "event=backend-failed peer=%s backend=%s reason=%s", c->peer.text,
            c->backend.text, log_value(err, reason, sizeof reason));
    if (!c->cfg.client_mode) {
        /* --starttls: the client hears it in its protocol, in clear. */
        if (c->tls_on)
            tls_close_write(c->tls);
        else if (write(1, starttls_unavailable(c->cfg.starttls),
                       strlen(starttls_unavailable(c->cfg.starttls))) < 0)
            errno = 0; /* the client is gone: nothing more to tell it */
        peer_linger(&c->peer, LINGER_MS);
    }
    return EX_UNAVAILABLE;
}

/*
 * --starttls: the plaintext conversation up to STARTTLS, the upgrade, or
 * the end. Bytes the client sent after STARTTLS and before TLS are thrown
 * away and counted (discarded=N), with a notice naming the peer.
 */
static int plaintext_phase(struct conn *c)
{
    static struct starttls_result sr;
    char reason[300], err[160];

    c->sr = &sr;
    starttls_init(&c->st, c->cfg.starttls, !c->cfg.starttls_optional);
    switch (starttls_run(&c->st, c->bfd, c->early, c->n_early, c->cfg.timeout_handshake,
                         c->peer.text, &sr)) {
    case STARTTLS_GO_TLS:
        if (sr.discarded > 0)
            log_msg(LOG_NOTICE,
                    "event=discarded peer=%s starttls=%s discarded=%llu reason=\"bytes after "
                    "STARTTLS, before TLS: never relayed\"",
                    c->peer.text, starttls_proto_name(c->cfg.starttls), sr.discarded);
        tls_preload(c->tls, sr.pre, sr.n_pre);
        return 0;
    case STARTTLS_GO_PLAIN:
        /* Opportunistic: what is left of both sides, then the relay in clear
         * (which sees a side that failed here as gone). */
        if (sr.n_pre > 0 && backend_send(c->bfd, sr.pre, sr.n_pre, c->cfg.timeout_connect, err,
                                         sizeof err) == 0)
            sr.to_backend += sr.n_pre;
        if (sr.n_back > 0 &&
            backend_send(1, sr.back, sr.n_back, c->cfg.timeout_connect, err, sizeof err) == 0)
            sr.to_client += sr.n_back;
        return 0;
    case STARTTLS_ENDED:
        c->ended = true;
        return 0;
    case STARTTLS_FAILED:
    default:
        log_msg(sr.status == EX_UNAVAILABLE ? LOG_ERR : LOG_WARNING,
                "event=starttls-failed peer=%s starttls=%s backend=%s discarded=%llu "
                "refused=%u reason=%s",
                c->peer.text, starttls_proto_name(c->cfg.starttls), c->backend.text,
                sr.discarded, sr.refusals, log_value(sr.reason, reason, sizeof reason));
        if (sr.status == EX_PROTOCOL)
            peer_linger(&c->peer, LINGER_MS);
        return sr.status;
    }
}

/* --starttls: the handshake, when the client asked for it. */
static int upgrade(struct conn *c)
{
    int status;

    if (c->ended || c->st.state == STARTTLS_S_HANDOVER)
        return 0;
    status = handshake(c);
    c->tls_on = status == 0;
    return status;
}

/* Relay until both directions are closed, then the summary line. */
static int relay(struct conn *c)
{
    struct relay_end client = {.rfd = 0, .wfd = 1};
    struct relay_end backend = {.rfd = c->bfd, .wfd = c->bfd, .pty = c->cfg.exec_pty};
    struct relay_result res;
    const struct identity *id;
    char sni[300], alpn[300], dn[300], reason[200], program[32];
    int status;
    bool broke, tls_on = c->tls_on || c->cfg.client_mode;

    if (c->cfg.client_mode)
        backend.tls = c->tls;
    else if (c->tls_on)
        client.tls = c->tls;
    /* The handshake's buffers are freed: give their pages back, so that an
     * idle session (IMAP IDLE for hours) holds only what it uses. */
    malloc_trim(0);
    if (c->ended) {
        /* --starttls: the conversation ended in clear, before any relay. */
        memset(&res, 0, sizeof res);
        res.end = "ok";
        client.how = c->sr->client_how;
        backend.how = c->sr->backend_how;
        snprintf(res.detail, sizeof res.detail, "%s", c->sr->reason);
        status = 0;
    } else {
        /* --starttls, once TLS is on: a second STARTTLS is ours to answer,
         * and the backend's offer of it is taken out (stfilter.c). */
        static struct stfilter filter;

        if (c->cfg.starttls && c->tls_on)
            stfilter_init(&filter, c->cfg.starttls);
        status = relay_run(&client, &backend, c->cfg.starttls && c->tls_on ? &filter : NULL,
                           c->cfg.timeout_idle, c->cfg.timeout_close, &stop_requested, &res);
    }
    if (c->sr != NULL) {
        res.to_backend += c->sr->to_backend;
        res.to_client += c->sr->to_client;
    }
    /* The client is done with us: let it go before waiting for a program,
     * and close the program's end (EOF on a socketpair, a hangup on a pty). */
    /* The alert for a client that broke the protocol goes out before the
     * close, not overtaken by a reset for what it sent after it. */
    broke = !c->cfg.client_mode && strcmp(client.how, "protocol-error") == 0;
    if (c->program > 0) {
        if (broke)
            peer_linger(&c->peer, LINGER_MS);
        close(0);
        close(1);
        close(c->bfd);
    }
    id = tls_identity(c->tls);
    log_msg(LOG_NOTICE,
            "event=close peer=%s version=%s cipher=%s sni=%s alpn=%s resumed=%s "
            "client_cert=%s%s%s%s%s backend=%s to_backend=%llu to_client=%llu duration=%.3f "
            "client=%s backend=%s end=%s tls=%s discarded=%llu%s%s%s%s%s%s%s%s",
            c->peer.text, tls_on ? tls_version(c->tls) : "-", tls_on ? tls_cipher(c->tls) : "-",
            log_value(c->cfg.client_mode || !tls_on ? NULL : tls_server_name(c->tls), sni,
                      sizeof sni),
            log_value(tls_on ? tls_alpn(c->tls) : NULL, alpn, sizeof alpn),
            tls_on && tls_resumed(c->tls) ? "yes" : "no", id->verify,
            id->subject[0] ? " client_dn=" : "",
            id->subject[0] ? log_value(id->subject, dn, sizeof dn) : "",
            id->subject[0] ? " client_sha256=" : "", id->sha256, c->backend.text,
            res.to_backend, res.to_client, seconds_since(&c->start), client.how, backend.how,
            res.end, tls_on ? "yes" : "no", c->sr != NULL ? c->sr->discarded : 0ULL,
            tls_alert_sent(c->tls) != NULL ? " alert=" : "",
            tls_alert_sent(c->tls) != NULL ? tls_alert_sent(c->tls) : "",
            res.detail[0] ? " reason=" : "",
            res.detail[0] ? log_value(res.detail, reason, sizeof reason) : "",
            c->program > 0 ? " program=" : "",
            c->program > 0
                ? backend_reap(c->program, c->cfg.timeout_close, program, sizeof program)
                : "",
            c->peer.via[0] ? " via=" : "", c->peer.via);
    if (broke && c->program <= 0)
        peer_linger(&c->peer, LINGER_MS);
    return status;
}

/* Client mode: the TLS session runs over the backend socket. */
static int client_handshake(struct conn *c)
{
    tls_attach(c->tls, c->bfd, c->bfd);
    return handshake(c);
}

/* Implicit TLS: the client speaks TLS once the handshake is done. */
static int implicit_handshake(struct conn *c)
{
    int status = handshake(c);

    c->tls_on = status == 0;
    return status;
}

typedef int step_fn(struct conn *);

/* Server mode: only a client that completed the handshake reaches the backend. */
static step_fn *const server_steps[] = {
    load_credentials,  identify_peer,   check_access,  resolve_backend,
    start_key_process, drop_privileges, enter_sandbox, implicit_handshake,
    open_backend,      relay,           NULL};
/* --starttls: the backend first, then its plaintext, then (maybe) TLS. */
static step_fn *const starttls_steps[] = {
    load_credentials,  identify_peer,   check_access, resolve_backend,
    start_key_process, drop_privileges, open_backend, enter_sandbox,
    plaintext_phase,   upgrade,         relay,        NULL};
/*
 * --accept-proxy: the balancer is checked before anything is read; the
 * header is read with privileges dropped, and TCP wrappers judge the
 * address it carries. libwrap reads hosts.allow then: the sandbox comes
 * after that check, before the client's first byte (the header is the
 * balancer's, from a --proxy-from address).
 */
static step_fn *const proxy_steps[] = {load_credentials,  check_balancer,  resolve_backend,
                                       start_key_process, drop_privileges, read_proxy_header,
                                       check_access,      enter_sandbox,   implicit_handshake,
                                       open_backend,      relay,           NULL};
static step_fn *const proxy_starttls_steps[] = {load_credentials,
                                                check_balancer,
                                                resolve_backend,
                                                start_key_process,
                                                drop_privileges,
                                                read_proxy_header,
                                                check_access,
                                                open_backend,
                                                enter_sandbox,
                                                plaintext_phase,
                                                upgrade,
                                                relay,
                                                NULL};
/* Client mode (-c): plaintext on fd 0/1, TLS towards the server. */
static step_fn *const client_steps[] = {
    load_credentials,  identify_peer,   check_access, resolve_backend,
    start_key_process, drop_privileges, open_backend, enter_sandbox,
    client_handshake,  relay,           NULL};

int main(int argc, char **argv)
{
    static struct conn c;
    step_fn *const *steps;
    char err[512];
    size_t i;
    int status = 0, lfd;

    clock_gettime(CLOCK_MONOTONIC, &c.start);
    /* A peer gone mid-write must be an error return, not a signal. */
    signal(SIGPIPE, SIG_IGN);
    /* No SA_RESTART: a stop signal interrupts poll() and the relay logs. */
    {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_stop_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGHUP, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
    }

    switch (options_parse(argc, argv, &c.cfg, err, sizeof err)) {
    case OPTIONS_VERSION:
        printf("tlsfilter %s (stunnel 3.26 compatible)\n"
               "default certificate: %s\n"
               "TCP wrappers: %s\n"
               "sandbox: %s\n",
               PACKAGE_VERSION, OPTIONS_DEFAULT_CERT, access_available() ? "yes" : "no",
               sandbox_available() ? "seccomp" : "not built in");
#ifdef TEST_HOOKS
        printf("test hooks: yes (a test build: never for production)\n");
#endif
        return 0;
    case OPTIONS_HELP:
        fputs(options_usage, stdout);
        return 0;
    case OPTIONS_ERROR:
        return usage_error(&c.cfg, err, EX_USAGE);
    case OPTIONS_CONFIG_ERROR:
        return usage_error(&c.cfg, err, EX_CONFIG);
    case OPTIONS_CHECK:
        return check(&c.cfg);
    case OPTIONS_GENERATE_TICKET_KEY:
        if (tls_generate_ticket_key(c.cfg.ticket_key, err, sizeof err) < 0) {
            log_stderr_write("tlsfilter: ");
            log_stderr_write(err);
            log_stderr_write("\n");
            return EX_CANTCREAT;
        }
        return 0;
    case OPTIONS_RUN:
        break;
    }
    if (log_open(&c.cfg) < 0)
        log_msg(LOG_ERR, "event=config-error reason=\"cannot open log file %s\"",
                c.cfg.log_file);
    for (i = 0; i < c.cfg.n_notes; i++)
        log_msg(LOG_NOTICE, "event=note reason=\"%s\"", c.cfg.notes[i]);

    /* The life of one connection, each step logging its own failure. */
    if (c.cfg.client_mode)
        steps = client_steps;
    else if (c.cfg.starttls)
        steps = c.cfg.accept_proxy ? proxy_starttls_steps : starttls_steps;
    else
        steps = c.cfg.accept_proxy ? proxy_steps : server_steps;
    i = 0;
    /*
     * xinetd wait = yes, systemd Accept=no: credentials once, in the parent,
     * then a child per connection runs the rest of the steps on it.
     */
    if ((lfd = listener_find()) >= 0) {
        static const struct listener_ops ops = {
            .ctx = &c, .reload = reload_credentials, .link = holder_link, .reaped = reaped};
        bool child;
        int link_fd = -1;

        c.cfg.listener = true;
        if ((status = steps[0](&c)) != 0 || (status = prepare_credentials(&c)) != 0)
            return status;
        if ((status = holder_started(&c)) != 0)
            return status;
        status = listener_run(&c.cfg, lfd, &ops, &child, &link_fd);
        if (!child) {
            tls_holder_stop(c.tls);
            return status;
        }
        clock_gettime(CLOCK_MONOTONIC, &c.start);
        tls_child(c.tls, link_fd);
        i = 1;
    }
    for (; steps[i] != NULL; i++) {
        status = steps[i](&c);
        if (status != 0)
            break;
    }
    return status == DONE ? 0 : status;
}
