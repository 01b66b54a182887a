/*
 * tlsload.c: the benchmark's load generator, a GnuTLS client.
 *
 * Every connection does what a mail client's short session does: TCP
 * connect, TLS handshake, read the backend's greeting line, send one line,
 * read it back (the backend, bench/echod.c, echoes: a connection whose line
 * does not come back byte for byte counts as failed), send close_notify and
 * wait for the server's end. No certificate is verified (a benchmark, not a client).
 *
 *   tlsload conn -p PORT [-n N] [-T SECS] [-P WORKERS] [--save F] [--load F]
 *            [--times FILE] [--expect-resumed]
 *       N connections (or as many as fit in SECS), by WORKERS processes at
 *       once. Prints one line: conns= failures= resumed= secs= cps=
 *       fb_median_ms= fb_p99_ms= (fb = time from connect() to the
 *       greeting's first byte). --times FILE appends each first-byte time
 *       in microseconds, one a line. --save F writes the first
 *       connection's session (its ticket) to F, that first connection not
 *       counted (without -n and -T, it is the only one); --load F offers it
 *       on every connection (resumption), --expect-resumed fails unless
 *       every one was resumed.
 *   tlsload bulk -p PORT -b BYTES
 *       After the greeting, sends BYTES and reads BYTES back at the same time
 *       (full duplex, one non-blocking poll() loop), checking every byte
 *       that comes back against what was sent. Prints bytes= secs= mbps=
 *       (MB/s = 10^6 bytes per second, one direction).
 *   tlsload idle -p PORT
 *       Handshake, greeting, then prints "ready" and holds the connection
 *       idle until its stdin ends; then closes.
 *
 * Common options: -H HOST (127.0.0.1), -V 1.2|1.3 (TLS version, 1.3).
 * Exit status: 0 when every connection worked, 1 otherwise, 2 usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#define LINE "a001 NOOP benchmark line\r\n"
#define PATTERN_SIZE (64 * 1024)
#define CHUNK (16 * 1024)
#define IO_TIMEOUT_MS 30000

static const char *opt_host = "127.0.0.1";
static int opt_port;
static const char *opt_prio = "NORMAL:-VERS-ALL:+VERS-TLS1.3";
static gnutls_certificate_credentials_t cred;
static gnutls_datum_t resume_data;

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *why)
{
    fprintf(stderr, "tlsload: %s: %s\n", what, why);
    exit(1);
}

static int tcp_connect(void)
{
    struct sockaddr_in sa;
    int fd, one = 1;

    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons(opt_port);
    if (inet_pton(AF_INET, opt_host, &sa.sin_addr) != 1)
        die(opt_host, "not an IPv4 address");
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static gnutls_session_t tls_new(int fd, int use_resume)
{
    gnutls_session_t s;
    const char *errpos;

    if (gnutls_init(&s, GNUTLS_CLIENT) < 0)
        die("gnutls_init", "failed");
    if (gnutls_priority_set_direct(s, opt_prio, &errpos) < 0)
        die("priority", errpos);
    gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, cred);
    gnutls_server_name_set(s, GNUTLS_NAME_DNS, "localhost", 9);
    if (use_resume && resume_data.size > 0)
        gnutls_session_set_data(s, resume_data.data, resume_data.size);
    gnutls_transport_set_int(s, fd);
    gnutls_handshake_set_timeout(s, IO_TIMEOUT_MS);
    gnutls_record_set_timeout(s, IO_TIMEOUT_MS);
    return s;
}

/* Read one line, up to its '\n' (it may come in several records), into
 * line (NUL-terminated, cut at size - 1); -1 on error or when more than the
 * line came. */
static int read_line(gnutls_session_t s, double *first_byte, char *line, size_t size)
{
    char buf[4096];
    size_t have = 0;
    ssize_t r;
    char *nl;

    for (;;) {
        r = gnutls_record_recv(s, buf, sizeof buf);
        if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
            continue;
        if (r <= 0)
            return -1;
        if (first_byte != NULL && *first_byte == 0)
            *first_byte = now();
        if (line != NULL && have + 1 < size) {
            size_t n = (size_t)r < size - 1 - have ? (size_t)r : size - 1 - have;
            memcpy(line + have, buf, n);
            have += n;
            line[have] = 0;
        }
        nl = memchr(buf, '\n', r);
        if (nl != NULL)
            return nl == buf + r - 1 ? 0 : -1;
    }
}

/* Send close_notify, then read until the server's close_notify or EOF. */
static void close_session(gnutls_session_t s)
{
    char buf[4096];
    ssize_t r;

    gnutls_bye(s, GNUTLS_SHUT_WR);
    do
        r = gnutls_record_recv(s, buf, sizeof buf);
    while (r > 0 || r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED);
}

/* One short session; *fb = seconds from connect() to the greeting. */
static int one_conn(int use_resume, int save, double *fb, int *resumed)
{
    double t0 = now(), t1 = 0;
    char echo[sizeof LINE + 16];
    gnutls_session_t s;
    int fd, ret, rc = -1;

    fd = tcp_connect();
    if (fd < 0)
        return -1;
    s = tls_new(fd, use_resume);
    do
        ret = gnutls_handshake(s);
    while (ret < 0 && !gnutls_error_is_fatal(ret));
    if (ret < 0) {
        fprintf(stderr, "tlsload: handshake: %s\n", gnutls_strerror(ret));
        goto out;
    }
    if (read_line(s, &t1, NULL, 0) < 0)
        goto out;
    if (gnutls_record_send(s, LINE, sizeof LINE - 1) != sizeof LINE - 1)
        goto out;
    /* the backend echoes: the same line must come back */
    if (read_line(s, NULL, echo, sizeof echo) < 0 || strcmp(echo, LINE) != 0) {
        fprintf(stderr, "tlsload: the line did not come back\n");
        goto out;
    }
    *fb = t1 - t0;
    *resumed = gnutls_session_is_resumed(s);
    if (save && gnutls_session_get_data2(s, &resume_data) < 0)
        resume_data.size = 0;
    close_session(s);
    rc = 0;
out:
    gnutls_deinit(s);
    close(fd);
    return rc;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

/* One worker: connections until n are done or the deadline passes; each
 * result (fb in us, or -1 for a failure, or -2 - fb for a resumed one) is
 * written to out as an int32. */
static void worker(int out, long n, double deadline, int use_resume)
{
    long i;
    int32_t v;
    double fb;
    int resumed;

    for (i = 0; (n == 0 || i < n) && (deadline == 0 || now() < deadline); i++) {
        if (one_conn(use_resume, 0, &fb, &resumed) < 0)
            v = -1;
        else
            v = (int32_t)(fb * 1e6);
        if (v >= 0 && resumed)
            v = -2 - v;
        if (write(out, &v, sizeof v) != sizeof v)
            exit(1);
    }
}

static int run_conn(long n, double secs, int workers, const char *save, const char *load,
                    const char *times, int expect_resumed)
{
    double t0, elapsed, *fbs = NULL;
    long count = 0, fail = 0, resumed = 0, cap = 0;
    int pipes[64], w, i;
    pid_t pids[64];
    FILE *tf = NULL;

    if (load != NULL) {
        FILE *f = fopen(load, "rb");
        long size;

        if (f == NULL || fseek(f, 0, SEEK_END) < 0 || (size = ftell(f)) <= 0)
            die(load, "cannot read the saved session");
        rewind(f);
        resume_data.data = malloc(size);
        resume_data.size = (unsigned)size;
        if (fread(resume_data.data, 1, size, f) != (size_t)size)
            die(load, "short read");
        fclose(f);
    }
    if (save != NULL) {
        double fb;
        int r;

        if (one_conn(0, 1, &fb, &r) < 0 || resume_data.size == 0)
            die(save, "the first connection gave no session to save");
        FILE *f = fopen(save, "wb");
        if (f == NULL || fwrite(resume_data.data, 1, resume_data.size, f) != resume_data.size ||
            fclose(f) != 0)
            die(save, strerror(errno));
        if (n == 0 && secs == 0) {
            printf("saved=%s resumed=%d\n", save, r);
            return 0;
        }
    }
    if (workers < 1 || workers > 64)
        die("-P", "1..64 workers");
    t0 = now();
    for (w = 0; w < workers; w++) {
        int p[2];

        if (pipe(p) < 0)
            die("pipe", strerror(errno));
        pids[w] = fork();
        if (pids[w] < 0)
            die("fork", strerror(errno));
        if (pids[w] == 0) {
            close(p[0]);
            worker(p[1], n == 0 ? 0 : n / workers + (w < n % workers), secs > 0 ? t0 + secs : 0,
                   load != NULL);
            _exit(0);
        }
        close(p[1]);
        pipes[w] = p[0];
    }
    if (times != NULL) {
        tf = fopen(times, "a");
        if (tf == NULL)
            die(times, strerror(errno));
    }
    for (w = 0; w < workers; w++) {
        int32_t v;

        while (read(pipes[w], &v, sizeof v) == sizeof v) {
            count++;
            if (v == -1) {
                fail++;
                continue;
            }
            if (v <= -2) {
                resumed++;
                v = -2 - v;
            }
            if (count > cap) {
                cap = cap ? cap * 2 : 1024;
                fbs = realloc(fbs, cap * sizeof *fbs);
                if (fbs == NULL)
                    die("realloc", "out of memory");
            }
            fbs[count - fail - 1] = v / 1e3;
            if (tf != NULL)
                fprintf(tf, "%d\n", (int)v);
        }
        close(pipes[w]);
    }
    for (w = 0; w < workers; w++) {
        int st;

        waitpid(pids[w], &st, 0);
    }
    elapsed = now() - t0;
    if (tf != NULL)
        fclose(tf);
    i = (int)(count - fail);
    if (i > 0)
        qsort(fbs, i, sizeof *fbs, cmp_double);
    printf("conns=%ld failures=%ld resumed=%ld secs=%.3f cps=%.1f fb_median_ms=%.3f "
           "fb_p99_ms=%.3f\n",
           count, fail, resumed, elapsed, (count - fail) / elapsed, i > 0 ? fbs[i / 2] : 0.0,
           i > 0 ? fbs[(int)(i * 0.99) < i ? (int)(i * 0.99) : i - 1] : 0.0);
    free(fbs);
    if (fail > 0 || count == 0)
        return 1;
    if (expect_resumed && resumed != count)
        return 1;
    return 0;
}

/* Full duplex: send `bytes` and read `bytes` back at once, checking them. */
/* Connect, shake hands and read the greeting line; any failure ends the
 * program (bulk and idle have nothing to count without them). */
static gnutls_session_t open_greeted(int *fdp)
{
    gnutls_session_t s;
    int ret, fd = tcp_connect();

    if (fd < 0)
        die("connect", strerror(errno));
    s = tls_new(fd, 0);
    do
        ret = gnutls_handshake(s);
    while (ret < 0 && !gnutls_error_is_fatal(ret));
    if (ret < 0)
        die("handshake", gnutls_strerror(ret));
    if (read_line(s, NULL, NULL, 0) < 0)
        die("greeting", "none");
    *fdp = fd;
    return s;
}

static int run_bulk(unsigned long long bytes)
{
    static unsigned char pattern[PATTERN_SIZE], buf[CHUNK];
    unsigned long long sent = 0, got = 0;
    unsigned int x = 12345;
    gnutls_session_t s;
    struct pollfd pfd;
    double t0, t1;
    int fd, retry = 0, flags;
    size_t i, len = 0;

    for (i = 0; i < PATTERN_SIZE; i++) {
        x = x * 1103515245 + 12345;
        pattern[i] = x >> 16;
    }
    s = open_greeted(&fd);
    flags = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    t0 = now();
    while (got < bytes) {
        pfd.fd = fd;
        pfd.events = POLLIN | (sent < bytes ? POLLOUT : 0);
        /* decrypted bytes poll() cannot see come first */
        if (gnutls_record_check_pending(s) == 0 && poll(&pfd, 1, IO_TIMEOUT_MS) <= 0)
            die("bulk", "timed out");
        if (sent < bytes && (pfd.revents & POLLOUT)) {
            if (!retry) {
                len = CHUNK;
                if (bytes - sent < len)
                    len = bytes - sent;
            }
            ssize_t w = gnutls_record_send(s, pattern + sent % PATTERN_SIZE, len);
            if (w == GNUTLS_E_AGAIN || w == GNUTLS_E_INTERRUPTED) {
                retry = 1;
            } else if (w < 0) {
                die("send", gnutls_strerror(w));
            } else {
                retry = 0;
                sent += w;
            }
        }
        for (;;) {
            ssize_t r = gnutls_record_recv(s, buf, sizeof buf);
            if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
                break;
            if (r <= 0)
                die("recv", r == 0 ? "early end" : gnutls_strerror(r));
            for (i = 0; i < (size_t)r;) {
                size_t off = (got + i) % PATTERN_SIZE, n = PATTERN_SIZE - off;
                if (n > (size_t)r - i)
                    n = r - i;
                if (memcmp(buf + i, pattern + off, n) != 0)
                    die("bulk", "the bytes that came back differ from those sent");
                i += n;
            }
            got += r;
            if (got > sent)
                die("bulk", "more bytes came back than were sent");
            if (gnutls_record_check_pending(s) == 0)
                break;
        }
    }
    t1 = now();
    fcntl(fd, F_SETFL, flags);
    close_session(s);
    gnutls_deinit(s);
    close(fd);
    printf("bytes=%llu secs=%.3f mbps=%.1f\n", bytes, t1 - t0, bytes / (t1 - t0) / 1e6);
    return 0;
}

static int run_idle(void)
{
    gnutls_session_t s;
    char c;
    int fd;

    s = open_greeted(&fd);
    printf("ready\n");
    fflush(stdout);
    while (read(0, &c, 1) > 0)
        ;
    close_session(s);
    gnutls_deinit(s);
    close(fd);
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: tlsload conn|bulk|idle -p PORT [-H HOST] [-V 1.2|1.3] [-n N] "
                    "[-T SECS] [-P WORKERS] [-b BYTES] [--save F] [--load F] [--times F] "
                    "[--expect-resumed]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *mode, *save = NULL, *load = NULL, *times = NULL;
    long n = 0;
    double secs = 0;
    int workers = 1, expect_resumed = 0, i;
    unsigned long long bytes = 64ULL << 20;

    if (argc < 2)
        usage();
    mode = argv[1];
    for (i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(a, "--expect-resumed") == 0) {
            expect_resumed = 1;
            continue;
        }
        if (v == NULL)
            usage();
        i++;
        if (strcmp(a, "-p") == 0)
            opt_port = (int)strtol(v, NULL, 10);
        else if (strcmp(a, "-H") == 0)
            opt_host = v;
        else if (strcmp(a, "-V") == 0)
            opt_prio = strcmp(v, "1.2") == 0 ? "NORMAL:-VERS-ALL:+VERS-TLS1.2"
                                             : "NORMAL:-VERS-ALL:+VERS-TLS1.3";
        else if (strcmp(a, "-n") == 0)
            n = strtol(v, NULL, 10);
        else if (strcmp(a, "-T") == 0)
            secs = strtod(v, NULL);
        else if (strcmp(a, "-P") == 0)
            workers = (int)strtol(v, NULL, 10);
        else if (strcmp(a, "-b") == 0)
            bytes = strtoull(v, NULL, 10);
        else if (strcmp(a, "--save") == 0)
            save = v;
        else if (strcmp(a, "--load") == 0)
            load = v;
        else if (strcmp(a, "--times") == 0)
            times = v;
        else
            usage();
    }
    if (opt_port <= 0 || opt_port > 65535)
        usage();
    signal(SIGPIPE, SIG_IGN);
    if (gnutls_certificate_allocate_credentials(&cred) < 0)
        die("credentials", "cannot allocate");
    if (strcmp(mode, "conn") == 0) {
        if (n == 0 && secs == 0 && save == NULL)
            n = 1;
        return run_conn(n, secs, workers, save, load, times, expect_resumed);
    }
    if (strcmp(mode, "bulk") == 0)
        return run_bulk(bytes);
    if (strcmp(mode, "idle") == 0)
        return run_idle();
    usage();
    return 2;
}
