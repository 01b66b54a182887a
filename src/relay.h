/*
 * relay.h: moving bytes both ways between the client and the backend.
 */
#ifndef TLSFILTER_RELAY_H
#define TLSFILTER_RELAY_H

#include <signal.h>
#include <stdbool.h>

#include "tls.h"

/*
 * One end of the relay: a pair of non-blocking fds (one socket twice, or two
 * pipes), with a TLS session over them or not. In server mode the client is
 * the TLS end; in client mode (-c) the backend is.
 */
struct relay_end {
    int rfd, wfd;
    struct tls *tls; /* NULL: plaintext */
    bool pty;        /* a pseudo-terminal: one fd that cannot be half-closed */
    const char *how; /* out: how it ended: notify, eof, reset, alert, protocol-error,
                      * error, timeout, closed, hangup */
};

struct relay_result {
    unsigned long long to_backend; /* plaintext bytes accepted by the backend side */
    unsigned long long to_client;  /* plaintext bytes accepted by the client side */
    const char *end;   /* ok, idle-timeout, close-timeout, terminated, protocol-error */
    char detail[160];  /* the error behind a reset or a protocol error, for the log */
};

/*
 * Relay between client and backend until both directions are closed: a
 * direction closes when its reader saw the end and its buffer is written
 * out, and then its writer is half-closed (close_notify where TLS, then
 * shutdown(SHUT_WR)). Ends early after idle_sec seconds without a byte
 * moving, or close_sec seconds after one direction closed while the other
 * stays open, or when *stop is set by a signal handler (end=terminated).
 * Memory is bounded by two fixed buffers.
 * An end whose TLS broke the protocol is sent the alert its error calls for
 * and is not read any more: the bytes it sent before the error are still
 * delivered (end=protocol-error).
 * Returns 0, EX_TEMPFAIL when a timeout or a signal ended the relay, or
 * EX_PROTOCOL after a protocol error.
 */
int relay_run(struct relay_end *client, struct relay_end *backend, unsigned idle_sec,
              unsigned close_sec, const volatile sig_atomic_t *stop, struct relay_result *res);

#endif
