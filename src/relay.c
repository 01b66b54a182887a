/*
 * relay.c: the poll() loop, after OpenBSD netcat's readwrite().
 *
 * One table of four named slots (client in, client out, backend in, backend
 * out), one fixed buffer per direction, and the poll events derived from the
 * buffers' state on every pass. The relay never exits in the middle of a
 * write: a failure closes the affected direction and the exit test at the
 * top of the loop ends it once both directions are closed.
 */
#include "config.h"

#include "relay.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#define BUF_SIZE (64 * 1024)
#define TLS_RECORD_MAX (16 * 1024)

enum { POLL_CLIENT_IN, POLL_CLIENT_OUT, POLL_BACKEND_IN, POLL_BACKEND_OUT, POLL_SLOTS };

struct buffer {
    size_t start, end;
    unsigned char data[BUF_SIZE];
};

/* One direction: a reader, a buffer, a writer. */
struct direction {
    struct buffer buf;
    bool reading; /* the reader may still give bytes */
    bool writing; /* the writer is not yet half-closed */
};

static size_t buf_len(const struct buffer *b)
{
    return b->end - b->start;
}

/* Free space at the end, compacting first when that makes more. */
static size_t buf_room(struct buffer *b)
{
    if (b->start == b->end) {
        b->start = b->end = 0;
    } else if (b->start > 0 && b->end == BUF_SIZE) {
        memmove(b->data, b->data + b->start, b->end - b->start);
        b->end -= b->start;
        b->start = 0;
    }
    return BUF_SIZE - b->end;
}

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Half-close towards the client. fd 0 and fd 1 may be one socket: close(1)
 * would send no FIN while fd 0 is open, so shutdown(); pipes get close(). */
static void client_shutdown(int cout)
{
    if (shutdown(cout, SHUT_WR) < 0 && errno == ENOTSOCK)
        close(cout);
}

int relay_run(struct tls *t, int cin, int cout, int bfd, unsigned idle_sec,
              unsigned close_sec, struct relay_result *res)
{
    /* c2b: client to backend; b2c: backend to client. Static: 128 KiB is
     * more than a stack frame should hold, and there is one relay. */
    static struct direction c2b, b2c;
    struct pollfd pfd[POLL_SLOTS];
    long long last_activity = now_ms(), one_closed_at = 0;
    bool read_wants_write = false; /* a TLS read waits for fd 1 to be writable */
    int status = 0;

    memset(res, 0, sizeof *res);
    res->client = res->backend = "open";
    res->end = "ok";
    c2b.reading = c2b.writing = b2c.reading = b2c.writing = true;
    c2b.buf.start = c2b.buf.end = b2c.buf.start = b2c.buf.end = 0;

    for (;;) {
        bool c2b_done, b2c_done, pending;
        long long now, deadline;
        int n;

        /* The client is done sending and all of it reached the backend:
         * tell the backend with a FIN; its reply may still come. */
        if (!c2b.reading && buf_len(&c2b.buf) == 0 && c2b.writing) {
            shutdown(bfd, SHUT_WR);
            c2b.writing = false;
        }
        /* The backend is done and all of it reached the client: close_notify,
         * then a FIN; the client's remaining data may still come. */
        if (!b2c.reading && buf_len(&b2c.buf) == 0 && b2c.writing) {
            int r = tls_close_write(t);
            if (r != TLS_IO_AGAIN) {
                client_shutdown(cout);
                b2c.writing = false;
            }
        }
        /* Both directions closed: the connection is over. */
        c2b_done = !c2b.reading && !c2b.writing;
        b2c_done = !b2c.reading && !b2c.writing;
        if (c2b_done && b2c_done)
            break;
        /* One direction closed: the other has close_sec seconds left. */
        now = now_ms();
        if ((c2b_done || b2c_done) && one_closed_at == 0)
            one_closed_at = now;

        /* Poll events from buffer state. Decrypted bytes inside GnuTLS are
         * invisible to poll(): then do not wait at all. */
        pending = c2b.reading && buf_room(&c2b.buf) > 0 && tls_pending(t);
        pfd[POLL_CLIENT_IN].fd = cin;
        pfd[POLL_CLIENT_IN].events =
            (c2b.reading && buf_room(&c2b.buf) > 0 && !read_wants_write) ? POLLIN : 0;
        pfd[POLL_CLIENT_OUT].fd = cout;
        pfd[POLL_CLIENT_OUT].events =
            (b2c.writing && (buf_len(&b2c.buf) > 0 || !b2c.reading)) || read_wants_write
                ? POLLOUT
                : 0;
        pfd[POLL_BACKEND_IN].fd = bfd;
        pfd[POLL_BACKEND_IN].events = (b2c.reading && buf_room(&b2c.buf) > 0) ? POLLIN : 0;
        pfd[POLL_BACKEND_OUT].fd = bfd;
        pfd[POLL_BACKEND_OUT].events = (c2b.writing && buf_len(&c2b.buf) > 0) ? POLLOUT : 0;
        for (n = 0; n < POLL_SLOTS; n++) {
            pfd[n].revents = 0;
            if (pfd[n].events == 0)
                pfd[n].fd = -1;
        }

        deadline = last_activity + (long long)idle_sec * 1000;
        if (one_closed_at != 0 && one_closed_at + (long long)close_sec * 1000 < deadline)
            deadline = one_closed_at + (long long)close_sec * 1000;
        if (pending)
            n = poll(pfd, POLL_SLOTS, 0);
        else
            n = poll(pfd, POLL_SLOTS, deadline > now ? (int)(deadline - now) : 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            snprintf(res->detail, sizeof res->detail, "poll: %s", strerror(errno));
            break;
        }
        /* Nothing moved before the deadline: end, naming the timeout. */
        if (n == 0 && !pending) {
            bool idle = one_closed_at == 0 ||
                        last_activity + (long long)idle_sec * 1000 <=
                            one_closed_at + (long long)close_sec * 1000;
            res->end = idle ? "idle-timeout" : "close-timeout";
            if (c2b.reading)
                res->client = "timeout";
            if (b2c.reading)
                res->backend = "timeout";
            status = EX_TEMPFAIL;
            break;
        }

        /* Client to c2b: decrypt while there is room and GnuTLS has bytes. */
        if (pending || pfd[POLL_CLIENT_IN].revents ||
            (read_wants_write && pfd[POLL_CLIENT_OUT].revents)) {
            read_wants_write = false;
            while (c2b.reading && buf_room(&c2b.buf) > 0) {
                ssize_t r = tls_read(t, c2b.buf.data + c2b.buf.end, buf_room(&c2b.buf));
                if (r > 0) {
                    c2b.buf.end += (size_t)r;
                    last_activity = now_ms();
                    continue;
                }
                if (r == TLS_IO_AGAIN) {
                    read_wants_write = tls_wants_write(t);
                    break;
                }
                c2b.reading = false;
                if (r == 0) {
                    res->client = "notify";
                } else if (r == TLS_IO_EOF) {
                    res->client = "eof";
                } else {
                    /* A broken TLS session can carry nothing either way. */
                    res->client = "reset";
                    snprintf(res->detail, sizeof res->detail, "client: %s", tls_error(t));
                    b2c.writing = b2c.reading = false;
                    b2c.buf.start = b2c.buf.end = 0;
                }
            }
        }

        /* c2b to the backend: write what we have, as much as it takes. */
        while (c2b.writing && buf_len(&c2b.buf) > 0) {
            ssize_t w = write(bfd, c2b.buf.data + c2b.buf.start, buf_len(&c2b.buf));
            if (w > 0) {
                c2b.buf.start += (size_t)w;
                res->to_backend += (unsigned long long)w;
                last_activity = now_ms();
                continue;
            }
            if (w < 0 && (errno == EAGAIN || errno == EINTR))
                break;
            /* The backend takes no more: drop this direction. */
            res->backend = "reset";
            snprintf(res->detail, sizeof res->detail, "backend: %s", strerror(errno));
            c2b.writing = c2b.reading = false;
            c2b.buf.start = c2b.buf.end = 0;
        }

        /* Backend to b2c. */
        if (pfd[POLL_BACKEND_IN].revents) {
            ssize_t r = read(bfd, b2c.buf.data + b2c.buf.end, buf_room(&b2c.buf));
            if (r > 0) {
                b2c.buf.end += (size_t)r;
                last_activity = now_ms();
            } else if (r == 0) {
                b2c.reading = false;
                if (strcmp(res->backend, "open") == 0)
                    res->backend = "eof";
            } else if (errno != EAGAIN && errno != EINTR) {
                b2c.reading = false;
                res->backend = "reset";
                snprintf(res->detail, sizeof res->detail, "backend: %s", strerror(errno));
                /* Nothing can reach a reset backend any more. */
                c2b.writing = c2b.reading = false;
                c2b.buf.start = c2b.buf.end = 0;
            }
        }

        /* b2c to the client: one record per call, at most 16 KiB each. */
        while (b2c.writing && buf_len(&b2c.buf) > 0) {
            size_t len = buf_len(&b2c.buf);
            ssize_t w = tls_write(t, b2c.buf.data + b2c.buf.start,
                                  len < TLS_RECORD_MAX ? len : TLS_RECORD_MAX);
            if (w > 0) {
                b2c.buf.start += (size_t)w;
                res->to_client += (unsigned long long)w;
                last_activity = now_ms();
                continue;
            }
            if (w == TLS_IO_AGAIN)
                break;
            res->client = "reset";
            snprintf(res->detail, sizeof res->detail, "client: %s", tls_error(t));
            b2c.writing = b2c.reading = false;
            b2c.buf.start = b2c.buf.end = 0;
            c2b.reading = false;
        }
    }
    /* A side we stopped listening to before it said anything was closed by us. */
    if (strcmp(res->client, "open") == 0)
        res->client = "closed";
    if (strcmp(res->backend, "open") == 0)
        res->backend = "closed";
    return status;
}
