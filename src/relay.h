/*
 * relay.h: moving bytes both ways between the TLS client and the backend.
 */
#ifndef TLSFILTER_RELAY_H
#define TLSFILTER_RELAY_H

#include "tls.h"

struct relay_result {
    unsigned long long to_backend; /* plaintext bytes written to the backend */
    unsigned long long to_client;  /* plaintext bytes accepted by TLS for the client */
    const char *client;  /* how the client ended: notify, eof, reset, timeout, closed */
    const char *backend; /* how the backend ended: eof, reset, timeout, closed */
    const char *end;     /* ok, idle-timeout or close-timeout */
    char detail[160];    /* the error behind a reset, for the log */
};

/*
 * Relay between the TLS session on fds cin/cout and the backend socket bfd
 * (all non-blocking) until both directions are closed: a direction closes
 * when its reader saw the end and its buffer is written out, and then its
 * writer is half-closed (shutdown(SHUT_WR) on the backend; close_notify and
 * shutdown(SHUT_WR) towards the client). Ends early after idle_sec seconds
 * without a byte moving, or close_sec seconds after one direction closed
 * while the other stays open. Memory is bounded by two fixed buffers.
 * Returns 0, or EX_TEMPFAIL when a timeout ended the relay.
 */
int relay_run(struct tls *t, int cin, int cout, int bfd, unsigned idle_sec,
              unsigned close_sec, struct relay_result *res);

#endif
