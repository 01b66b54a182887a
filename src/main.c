/*
 * main.c: the life of one connection, one call per step.
 *
 *   options -> log -> credentials -> peer -> resolve backend -> drop privileges
 *   -> TLS handshake -> connect backend -> relay -> summary line -> exit
 *
 * Each step that fails writes one log line naming the peer and the reason,
 * and exits with its <sysexits.h> status, listed in tlsfilter(8).
 */
#include "config.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "access.h"
#include "backend.h"
#include "log.h"
#include "options.h"
#include "peer.h"
#include "privs.h"
#include "relay.h"
#include "tls.h"

static double seconds_since(const struct timespec *start)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (now.tv_nsec - start->tv_nsec) / 1e9;
}

/* A usage error: the message to stderr if that is not the socket, and to the log. */
static int usage_error(const struct config *cfg, const char *msg)
{
    log_open(cfg);
    log_stderr_write("tlsfilter: ");
    log_stderr_write(msg);
    log_stderr_write("\nTry 'tlsfilter --help'.\n");
    log_msg(LOG_ERR, "event=usage-error reason=\"%s\"", msg);
    return EX_USAGE;
}

/* --check: everything a connection would load, plus the costly checks. */
static int check(const struct config *cfg)
{
    struct backend b;
    char err[256];
    int bad = tls_check(cfg, stdout);

    if (backend_resolve(cfg, &b, err, sizeof err) != 0) {
        printf("error: backend %s\n", err);
        bad = -1;
    } else {
        printf("ok: backend %s resolves\n", cfg->connect);
        backend_free(&b);
    }
    printf("%s\n", bad ? "configuration has errors" : "configuration ok");
    return bad ? EX_CONFIG : 0;
}

int main(int argc, char **argv)
{
    struct config cfg;
    struct peer peer;
    struct backend backend;
    struct relay_end client_end, backend_end;
    struct relay_result res;
    struct timespec start;
    struct tls *tls;
    char err[512], sni[300], reason[400], service[128];
    size_t i;
    int bfd, status;

    clock_gettime(CLOCK_MONOTONIC, &start);
    /* A client gone mid-write must be an error return, not a signal. */
    signal(SIGPIPE, SIG_IGN);

    switch (options_parse(argc, argv, &cfg, err, sizeof err)) {
    case OPTIONS_VERSION:
        printf("tlsfilter %s (stunnel 3.26 compatible)\n"
               "default certificate: %s\n",
               PACKAGE_VERSION, OPTIONS_DEFAULT_CERT);
        return 0;
    case OPTIONS_HELP:
        fputs(options_usage, stdout);
        return 0;
    case OPTIONS_ERROR:
        return usage_error(&cfg, err);
    case OPTIONS_CHECK:
        return check(&cfg);
    case OPTIONS_RUN:
        break;
    }

    if (log_open(&cfg) < 0)
        log_msg(LOG_ERR, "event=config-error reason=\"cannot open log file %s\"",
                cfg.log_file);
    for (i = 0; i < cfg.n_notes; i++)
        log_msg(LOG_NOTICE, "event=note reason=\"%s\"", cfg.notes[i]);

    /* Secrets first: credentials are read before anything else happens. */
    tls = tls_new(&cfg, 0, 1, err, sizeof err);
    if (tls == NULL) {
        log_msg(LOG_ERR, "event=config-error reason=%s", log_value(err, reason, sizeof reason));
        return EX_CONFIG;
    }

    /* Who is calling, and may they? Refused clients get no TLS byte. */
    peer_identify(&peer);
    if (!access_allowed(&cfg, &peer, access_service(&cfg, service, sizeof service))) {
        log_msg(LOG_WARNING, "event=refused peer=%s service=%s reason=tcp-wrappers", peer.text,
                log_value(service, reason, sizeof reason));
        return EX_NOPERM;
    }
    status = backend_resolve(&cfg, &backend, err, sizeof err);
    if (status != 0) {
        log_msg(LOG_ERR, "event=%s peer=%s reason=%s",
                status == EX_CONFIG ? "config-error" : "backend-failed", peer.text,
                log_value(err, reason, sizeof reason));
        return status;
    }

    /* Then privileges; only then is a byte read from the client. */
    if (privs_drop(&cfg, err, sizeof err) < 0) {
        log_msg(LOG_ERR, "event=privilege-error peer=%s reason=%s", peer.text,
                log_value(err, reason, sizeof reason));
        return EX_OSERR;
    }
    if (peer_prepare(&peer) < 0) {
        log_msg(LOG_ERR, "event=system-error peer=%s reason=\"cannot set fd 0/1 non-blocking\"",
                peer.text);
        return EX_OSERR;
    }

    switch (tls_handshake(tls, cfg.timeout_handshake)) {
    case TLS_HANDSHAKE_OK:
        break;
    case TLS_HANDSHAKE_TIMEOUT:
        log_msg(LOG_WARNING, "event=handshake-timeout peer=%s seconds=%u", peer.text,
                cfg.timeout_handshake);
        return EX_TEMPFAIL;
    case TLS_HANDSHAKE_FAILED:
        log_msg(LOG_WARNING, "event=handshake-failed peer=%s reason=%s", peer.text,
                log_value(tls_error(tls), reason, sizeof reason));
        return EX_PROTOCOL;
    }

    /* Only a client that completed the handshake reaches the backend. */
    bfd = backend_connect(&backend, cfg.timeout_connect, err, sizeof err);
    if (bfd < 0) {
        log_msg(LOG_ERR, "event=backend-failed peer=%s backend=%s reason=%s", peer.text,
                backend.text, log_value(err, reason, sizeof reason));
        tls_close_write(tls);
        return EX_UNAVAILABLE;
    }

    client_end = (struct relay_end){.rfd = 0, .wfd = 1, .tls = tls};
    backend_end = (struct relay_end){.rfd = bfd, .wfd = bfd};
    status = relay_run(&client_end, &backend_end, cfg.timeout_idle, cfg.timeout_close, &res);
    log_msg(LOG_NOTICE,
            "event=close peer=%s version=%s cipher=%s sni=%s backend=%s to_backend=%llu "
            "to_client=%llu duration=%.3f client=%s backend=%s end=%s%s%s",
            peer.text, tls_version(tls), tls_cipher(tls),
            log_value(tls_server_name(tls), sni, sizeof sni), backend.text, res.to_backend,
            res.to_client, seconds_since(&start), client_end.how, backend_end.how, res.end,
            res.detail[0] ? " reason=" : "",
            res.detail[0] ? log_value(res.detail, reason, sizeof reason) : "");
    return status;
}
