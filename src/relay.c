/*
 * relay.c: the poll() loop, after OpenBSD netcat's readwrite().
 *
 * Two ends (client, backend), each plaintext or TLS; one fixed buffer per
 * direction; one table of four named poll slots whose events are derived
 * from the buffers' state on every pass. The end_* helpers give plain fds
 * and TLS sessions one return convention, so the loop does not care which
 * end speaks TLS. The relay never exits in the middle of a write: a failure
 * closes what it affects and the exit test at the top of the loop ends it
 * once both directions are closed.
 */
#include "config.h"

#include "relay.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#define BUF_SIZE (64 * 1024)

enum { POLL_CLIENT_IN, POLL_CLIENT_OUT, POLL_BACKEND_IN, POLL_BACKEND_OUT, POLL_SLOTS };

/* One direction: bytes read from `from`, buffered, written to `to`. */
struct direction {
    struct relay_end *from, *to;
    bool reading;          /* `from` may still give bytes */
    bool writing;          /* `to` is not yet half-closed */
    bool read_wants_write; /* a TLS read on `from` waits for from->wfd */
    unsigned long long *count;
    size_t start, end;
    unsigned char *data; /* BUF_SIZE bytes */
};

/* --- the ends: plain fds and TLS behind one convention ------------------ */

/* > 0 bytes, 0 at a clean end (FIN, close_notify), or TLS_IO_AGAIN/EOF/ERROR. */
static ssize_t end_read(struct relay_end *e, void *buf, size_t len, char *err, size_t errlen)
{
    ssize_t r;

    if (e->tls != NULL) {
        r = tls_read(e->tls, buf, len);
        if (r == TLS_IO_ERROR)
            snprintf(err, errlen, "%s", tls_error(e->tls));
        return r;
    }
    r = read(e->rfd, buf, len);
    if (r >= 0)
        return r;
    if (errno == EAGAIN || errno == EINTR)
        return TLS_IO_AGAIN;
    if (errno == EIO)
        return 0; /* a pseudo-terminal whose program has gone: its end of file */
    snprintf(err, errlen, "%s", strerror(errno));
    return TLS_IO_ERROR;
}

/* > 0 bytes taken, TLS_IO_AGAIN or TLS_IO_ERROR. */
static ssize_t end_write(struct relay_end *e, const void *buf, size_t len, char *err,
                         size_t errlen)
{
    ssize_t w;

    if (e->tls != NULL) {
        w = tls_write(e->tls, buf, len);
        if (w == TLS_IO_ERROR)
            snprintf(err, errlen, "%s", tls_error(e->tls));
        return w;
    }
    w = write(e->wfd, buf, len);
    if (w > 0)
        return w;
    if (w < 0 && (errno == EAGAIN || errno == EINTR))
        return TLS_IO_AGAIN;
    snprintf(err, errlen, "%s", w == 0 ? "wrote nothing" : strerror(errno));
    return TLS_IO_ERROR;
}

/*
 * Half-close towards e: close_notify first where TLS (0 or TLS_IO_AGAIN),
 * then a FIN. The read and write fds may be one socket, where close(wfd)
 * would send no FIN while rfd is open, hence shutdown(); pipes get close().
 */
static int end_close_write(struct relay_end *e)
{
    if (e->tls != NULL && tls_close_write(e->tls) == TLS_IO_AGAIN)
        return TLS_IO_AGAIN;
    if (shutdown(e->wfd, SHUT_WR) < 0 && errno == ENOTSOCK)
        close(e->wfd);
    return 0;
}

static bool end_pending(struct relay_end *e)
{
    return e->tls != NULL && tls_pending(e->tls);
}

/* Records made from earlier data still wait for the socket. */
static bool end_out_pending(struct relay_end *e)
{
    return e->tls != NULL && tls_out_pending(e->tls);
}

/* --- buffers ------------------------------------------------------------- */

static size_t buf_len(const struct direction *d)
{
    return d->end - d->start;
}

/* Free space at the end, compacting first when that makes more. */
static size_t buf_room(struct direction *d)
{
    if (d->start == d->end) {
        d->start = d->end = 0;
    } else if (d->start > 0 && d->end == BUF_SIZE) {
        memmove(d->data, d->data + d->start, d->end - d->start);
        d->end -= d->start;
        d->start = 0;
    }
    return BUF_SIZE - d->end;
}

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * An end is gone both ways (reset, broken TLS): stop reading it, and drop
 * what was waiting to be written to it. What it sent before stays in
 * from_e's buffer and is still delivered to the other end. The close line
 * says how (e->how); a peer that broke the protocol ends the session as a
 * TLS failure (end=protocol-error, EX_PROTOCOL).
 */
static void end_lost(struct relay_end *e, struct direction *from_e, struct direction *to_e,
                     struct relay_result *res)
{
    e->how = e->tls != NULL ? tls_failure(e->tls) : "reset";
    if (strcmp(e->how, "protocol-error") == 0)
        res->end = "protocol-error";
    from_e->reading = false;
    to_e->reading = to_e->writing = false;
    to_e->start = to_e->end = 0;
}

/* Read from d->from into d's buffer while there is room and data. */
static void pump_in(struct direction *d, struct direction *other, long long *activity,
                    struct relay_result *res)
{
    char err[128];

    d->read_wants_write = false;
    while (d->reading && buf_room(d) > 0) {
        ssize_t r = end_read(d->from, d->data + d->end, buf_room(d), err, sizeof err);

        if (r > 0) {
            d->end += (size_t)r;
            *activity = now_ms();
            /* Go on while TLS holds more; else poll() again rather than
             * find out by a read() that says EAGAIN. */
            if (!end_pending(d->from))
                break;
            continue;
        }
        if (r == TLS_IO_AGAIN) {
            d->read_wants_write = d->from->tls != NULL && tls_wants_write(d->from->tls);
            return;
        }
        d->reading = false;
        if (r == 0) {
            d->from->how = d->from->tls != NULL ? "notify" : "eof";
        } else if (r == TLS_IO_EOF) {
            d->from->how = "eof";
        } else {
            snprintf(res->detail, sizeof res->detail, "%s", err);
            end_lost(d->from, d, other, res);
        }
    }
}

/* Write d's buffer to d->to as far as it takes it. */
static void pump_out(struct direction *d, struct direction *other, long long *activity,
                     struct relay_result *res)
{
    char err[128];

    /* Records made from the last batch go first. */
    if (d->writing && end_out_pending(d->to)) {
        int f = tls_flush(d->to->tls);

        if (f == TLS_IO_AGAIN)
            return;
        if (f == TLS_IO_ERROR) {
            snprintf(res->detail, sizeof res->detail, "%s", tls_error(d->to->tls));
            end_lost(d->to, other, d, res);
            return;
        }
        *activity = now_ms();
    }
    while (d->writing && buf_len(d) > 0) {
        ssize_t w = end_write(d->to, d->data + d->start, buf_len(d), err, sizeof err);

        if (w > 0) {
            d->start += (size_t)w;
            *d->count += (unsigned long long)w;
            *activity = now_ms();
            continue;
        }
        if (w == TLS_IO_AGAIN)
            return;
        snprintf(res->detail, sizeof res->detail, "%s", err);
        end_lost(d->to, other, d, res);
    }
}

int relay_run(struct relay_end *client, struct relay_end *backend, unsigned idle_sec,
              unsigned close_sec, const volatile sig_atomic_t *stop, struct relay_result *res)
{
    /* Static: 128 KiB is more than a stack frame should hold; one relay runs.
     * Apart from the structures, so that setting those up does not write
     * (and make private) pages that a short session never fills. */
    static unsigned char c2b_data[BUF_SIZE], b2c_data[BUF_SIZE];
    static struct direction c2b, b2c;
    struct direction *dirs[2] = {&c2b, &b2c};
    struct pollfd pfd[POLL_SLOTS];
    long long activity = now_ms(), one_closed_at = 0;
    int status = 0, i;

    memset(res, 0, sizeof *res);
    res->end = "ok";
    client->how = backend->how = "open";
    c2b = (struct direction){.from = client,
                             .to = backend,
                             .reading = true,
                             .writing = true,
                             .count = &res->to_backend,
                             .data = c2b_data};
    b2c = (struct direction){.from = backend,
                             .to = client,
                             .reading = true,
                             .writing = true,
                             .count = &res->to_client,
                             .data = b2c_data};

    for (;;) {
        bool pending = false;
        long long now, deadline;
        int n;

        /* A reader is done and its bytes are all written: half-close the
         * writer, so the other side sees the end; its reply may still come. */
        for (i = 0; i < 2; i++) {
            struct direction *d = dirs[i], *other = dirs[1 - i];

            if (d->reading || buf_len(d) > 0 || !d->writing)
                continue;
            if (!d->to->pty) {
                if (end_close_write(d->to) == 0)
                    d->writing = false;
                continue;
            }
            /* A terminal has no half-close: the session is over for the
             * program, as when a modem hangs up. Take what it has already
             * written; closing the pty then sends it SIGHUP. */
            d->writing = false;
            pump_in(other, d, &activity, res);
            other->reading = false;
            if (strcmp(d->to->how, "open") == 0)
                d->to->how = "hangup";
        }
        /* Both directions closed: the connection is over. */
        if (!c2b.reading && !c2b.writing && !b2c.reading && !b2c.writing)
            break;
        /* One direction closed: the other has close_sec seconds left. */
        now = now_ms();
        if (one_closed_at == 0 &&
            ((!c2b.reading && !c2b.writing) || (!b2c.reading && !b2c.writing)))
            one_closed_at = now;

        /* Poll events from buffer state. Decrypted bytes inside GnuTLS are
         * invisible to poll(): when there are some, do not wait at all. */
        for (i = 0; i < 2; i++) {
            struct direction *d = dirs[i];
            bool room = d->reading && buf_room(d) > 0;
            struct pollfd *in = &pfd[d->from == client ? POLL_CLIENT_IN : POLL_BACKEND_IN];
            struct pollfd *out = &pfd[d->to == client ? POLL_CLIENT_OUT : POLL_BACKEND_OUT];

            pending |= room && end_pending(d->from);
            in->fd = d->from->rfd;
            in->events = room && !d->read_wants_write ? POLLIN : 0;
            out->fd = d->to->wfd;
            out->events =
                d->writing && (buf_len(d) > 0 || !d->reading || end_out_pending(d->to)) ? POLLOUT
                                                                                           : 0;
        }
        /* A TLS read that waits to write polls its own end's write fd. */
        if (c2b.read_wants_write)
            pfd[POLL_CLIENT_OUT].events |= POLLOUT;
        if (b2c.read_wants_write)
            pfd[POLL_BACKEND_OUT].events |= POLLOUT;
        for (i = 0; i < POLL_SLOTS; i++) {
            pfd[i].revents = 0;
            if (pfd[i].events == 0)
                pfd[i].fd = -1;
        }

        /* Idle: nothing moved for idle_sec. Once one direction is closed, the
         * other may stay silent for close_sec only (an active transfer goes on). */
        deadline = activity + (long long)idle_sec * 1000;
        if (one_closed_at != 0) {
            long long quiet_since = activity > one_closed_at ? activity : one_closed_at;
            if (quiet_since + (long long)close_sec * 1000 < deadline)
                deadline = quiet_since + (long long)close_sec * 1000;
        }
        n = poll(pfd, POLL_SLOTS, pending ? 0 : deadline > now ? (int)(deadline - now) : 0);
        /* A signal to stop (the launcher ending the session): end here, so
         * that the summary line is still written. */
        if (n < 0 && errno == EINTR && *stop) {
            res->end = "terminated";
            status = EX_TEMPFAIL;
            break;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(res->detail, sizeof res->detail, "poll: %s", strerror(errno));
            break;
        }
        /* Nothing moved before the deadline: end, naming the timeout. */
        if (n == 0 && !pending) {
            if (strcmp(res->end, "ok") == 0)
                res->end = deadline == activity + (long long)idle_sec * 1000 ? "idle-timeout"
                                                                             : "close-timeout";
            if (c2b.reading)
                client->how = "timeout";
            if (b2c.reading)
                backend->how = "timeout";
            status = EX_TEMPFAIL;
            break;
        }

        /* Each direction: read what is there, then write what we have. */
        for (i = 0; i < 2; i++) {
            struct direction *d = dirs[i], *other = dirs[1 - i];
            int in = d->from == client ? POLL_CLIENT_IN : POLL_BACKEND_IN;
            int out = d->from == client ? POLL_CLIENT_OUT : POLL_BACKEND_OUT;

            if (pfd[in].revents || end_pending(d->from) ||
                (d->read_wants_write && pfd[out].revents))
                pump_in(d, other, &activity, res);
            pump_out(d, other, &activity, res);
        }
    }
    /* A side we stopped listening to before it said anything was closed by us. */
    if (strcmp(client->how, "open") == 0)
        client->how = "closed";
    if (strcmp(backend->how, "open") == 0)
        backend->how = "closed";
    if (strcmp(res->end, "protocol-error") == 0)
        status = EX_PROTOCOL;
    return status;
}
