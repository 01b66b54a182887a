/*
 * keyproc.c: the key process. The process that parses the client's bytes
 * should not hold the private key: a read bug there (Heartbleed) would leak
 * it. So once the key files are read (as root), a child is forked that keeps
 * their text and nothing else: it gives up its privileges like the network
 * process, chroots to an empty directory, closes every descriptor but its
 * end of one socketpair, and signs what the network process asks, at most
 * KEYPROC_MAX_REQUESTS times, until the network process closes its end or
 * --timeout-handshake. The network process signs through GnuTLS's external
 * key callbacks (gnutls_privkey_import_ext4()), which ask over the
 * socketpair. RSA decryption (the RSA key exchange) is not offered: the
 * default priority has only ECDHE key exchanges.
 *
 * The wire format is ours and local (both ends are this program): a
 * request is a fixed header and the bytes to sign, an answer a status and
 * the signature. Anything else ends the key process.
 */
#include "config.h"

#include "keyproc.h"

#include "privs.h"
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define KEYPROC_MAGIC 0x6b707231u /* "kpr1" */
#define KEYPROC_OP_SIGN_DATA 1
#define KEYPROC_OP_SIGN_HASH 2
#define KEYPROC_OP_CHECK 3 /* parse key `index` now: does it load? (signs nothing) */
/* The most a handshake signs (TLS 1.3: 64 + 34 + 64 bytes; TLS 1.2 ECDHE:
 * 64 + the curve's point) and the longest signature (RSA 16384 bits). */
#define KEYPROC_MAX_DATA 2048
#define KEYPROC_MAX_SIG 2048

/* Answer statuses besides 0 (signed) and GnuTLS's negative codes. */
#define KEYPROC_READY 1
#define KEYPROC_PAST_BOUND 2
#define KEYPROC_MALFORMED 3
#define KEYPROC_TRUNCATED 4
#define KEYPROC_SETUP_FAILED 5
#define KEYPROC_BAD_KEY 6 /* the key did not parse: its GnuTLS code follows */

struct request {
    uint32_t magic;
    uint8_t op;
    uint8_t index;
    uint16_t len;
    uint32_t algo;
    uint32_t flags;
};

struct answer {
    int32_t status;
    uint32_t len;
};

/* The network side's end of the live link, for keyproc_close_inherited(). */
static int live_fd = -1;

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Read n bytes before deadline_ms: n, fewer at end of file, or -1 (timeout, error). */
static ssize_t read_full(int fd, void *buf, size_t n, long long deadline_ms)
{
    size_t got = 0;

    while (got < n) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        long long left = deadline_ms - now_ms();
        ssize_t r;

        if (left <= 0)
            return -1;
        r = poll(&pfd, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        r = read(fd, (char *)buf + got, n - got);
        if (r < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

/* flags: MSG_DONTWAIT in the key holder, which must never wait for one connection. */
static int write_full(int fd, const void *buf, size_t n, int flags)
{
    size_t done = 0;

    while (done < n) {
        ssize_t w = send(fd, (const char *)buf + done, n - done, MSG_NOSIGNAL | flags);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        done += (size_t)w;
    }
    return 0;
}

static int answer(int fd, int32_t status, const void *data, size_t len, int flags)
{
    struct answer a = {.status = status, .len = (uint32_t)len};

    if (write_full(fd, &a, sizeof a, flags) < 0)
        return -1;
    return len > 0 ? write_full(fd, data, len, flags) : 0;
}

/* Key i, parsed now if it was not yet. A GnuTLS error code. */
static int parse(struct keyproc_keys *k, unsigned i)
{
    int ret = 0;

    if (k->key[i] != NULL)
        return 0;
    ret = gnutls_privkey_init(&k->key[i]);
    if (ret >= 0)
        ret =
            gnutls_privkey_import_x509_raw(k->key[i], &k->pem[i], GNUTLS_X509_FMT_PEM, NULL, 0);
    if (ret < 0) {
        gnutls_privkey_deinit(k->key[i]);
        k->key[i] = NULL;
    }
    return ret;
}

/* Sign one request with its key (*parsed false when that did not load). */
static int sign(struct keyproc_keys *k, const struct request *rq, const gnutls_datum_t *data,
                gnutls_datum_t *sig, bool *parsed)
{
    int ret = parse(k, rq->index);

    *parsed = ret >= 0;
    if (ret < 0)
        return ret;
    if (rq->op == KEYPROC_OP_SIGN_DATA)
        return gnutls_privkey_sign_data2(k->key[rq->index], (gnutls_sign_algorithm_t)rq->algo,
                                         rq->flags, data, sig);
    return gnutls_privkey_sign_hash2(k->key[rq->index], (gnutls_sign_algorithm_t)rq->algo,
                                     rq->flags, data, sig);
}

/*
 * One connection's requests, as the key side reads them: a request is taken
 * whole (header, then its bytes) before it is answered, and only as many
 * bytes as it still needs are read, so one connection's state is all here
 * and the key holder can serve many of them from one poll() loop.
 */
struct kp_conn {
    int fd;
    long long deadline_ms;
    unsigned budget, made, checks;
    int send_flags;
    size_t got; /* bytes of the current request in buf */
    unsigned char buf[sizeof(struct request) + KEYPROC_MAX_DATA];
};

static void conn_init(struct kp_conn *c, int fd, unsigned budget, long long deadline_ms,
                      int send_flags)
{
    c->fd = fd;
    c->deadline_ms = deadline_ms;
    c->budget = budget;
    c->made = c->checks = 0;
    c->send_flags = send_flags;
    c->got = 0;
}

/* Refuse and end: the answer says why (best effort), the connection ends. */
static int refuse(struct kp_conn *c, int32_t status)
{
    answer(c->fd, status, NULL, 0, c->send_flags);
    return -1;
}

/* The request in c->buf, whole: answer it. 1 to go on, -1 to end. */
static int handle(struct keyproc_keys *k, struct kp_conn *c)
{
    struct request rq;
    gnutls_datum_t data, sig = {NULL, 0};
    bool parsed;
    int32_t ret;
    int w;

    memcpy(&rq, c->buf, sizeof rq);
    c->got = 0;
    /* Does key i load? Once per key at most: it signs nothing. */
    if (rq.op == KEYPROC_OP_CHECK) {
        if (++c->checks > k->n)
            return refuse(c, KEYPROC_PAST_BOUND);
        ret = parse(k, rq.index);
        w = ret < 0 ? answer(c->fd, KEYPROC_BAD_KEY, &ret, sizeof ret, c->send_flags)
                    : answer(c->fd, 0, NULL, 0, c->send_flags);
        return w < 0 ? -1 : 1;
    }
    /* A handshake needs so many signatures: more is not a handshake. */
    if (c->made >= c->budget)
        return refuse(c, KEYPROC_PAST_BOUND);
    data.data = c->buf + sizeof rq;
    data.size = rq.len;
    ret = sign(k, &rq, &data, &sig, &parsed);
    c->made++;
    if (ret >= 0 && sig.size > KEYPROC_MAX_SIG)
        ret = GNUTLS_E_SHORT_MEMORY_BUFFER;
    if (!parsed)
        w = answer(c->fd, KEYPROC_BAD_KEY, &ret, sizeof ret, c->send_flags);
    else
        w = answer(c->fd, ret < 0 ? ret : 0, sig.data, ret < 0 ? 0 : sig.size, c->send_flags);
    gnutls_free(sig.data);
    return w < 0 ? -1 : 1;
}

/*
 * c->fd is readable: read what the current request still needs (one read:
 * it does not block after poll() said so), and answer it once it is whole.
 * 1 to go on, 0 when the other side closed between requests (the handshake
 * is over), -1 on a refusal, a malformed or truncated request, an error.
 */
static int conn_input(struct keyproc_keys *k, struct kp_conn *c)
{
    struct request rq;
    size_t need = sizeof rq;
    ssize_t r;

    if (c->got >= sizeof rq) {
        memcpy(&rq, c->buf, sizeof rq);
        need += rq.len;
    }
    r = read(c->fd, c->buf + c->got, need - c->got);
    if (r < 0)
        return errno == EINTR || errno == EAGAIN ? 1 : -1;
    /* The network side closed its end: the handshake is over, or it sent
     * half a request. */
    if (r == 0)
        return c->got == 0 ? 0 : refuse(c, KEYPROC_TRUNCATED);
    c->got += (size_t)r;
    if (c->got == sizeof rq) {
        memcpy(&rq, c->buf, sizeof rq);
        if (rq.magic != KEYPROC_MAGIC || rq.index >= k->n ||
            (rq.op == KEYPROC_OP_CHECK
                 ? rq.len != 0
                 : (rq.op != KEYPROC_OP_SIGN_DATA && rq.op != KEYPROC_OP_SIGN_HASH) ||
                       rq.len == 0 || rq.len > KEYPROC_MAX_DATA))
            return refuse(c, KEYPROC_MALFORMED);
        need += rq.len;
    }
    return c->got == need && c->got >= sizeof rq ? handle(k, c) : 1;
}

int keyproc_serve(struct keyproc_keys *k, int fd, unsigned budget, long long deadline_ms)
{
    struct kp_conn *c = malloc(sizeof *c);
    int r = 1;

    if (c == NULL)
        return -1;
    conn_init(c, fd, budget, deadline_ms, 0);
    while (r > 0) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        long long left = deadline_ms - now_ms();
        int n;

        if (left <= 0) {
            r = -1;
            break;
        }
        n = poll(&pfd, 1, (int)left);
        if (n < 0 && errno != EINTR)
            r = -1;
        else if (n > 0)
            r = conn_input(k, c);
    }
    r = r < 0 ? -1 : (int)c->made;
    explicit_bzero(c, sizeof *c);
    free(c);
    return r;
}

void keyproc_keys_clear(struct keyproc_keys *k)
{
    size_t i;

    for (i = 0; i < k->n; i++)
        if (k->key[i] != NULL) {
            gnutls_privkey_deinit(k->key[i]);
            k->key[i] = NULL;
        }
}

/*
 * The key process's root: --chroot's directory, or (as root) a directory
 * made for it and removed while it is the current one, so that it is empty
 * and stays so (nothing can be created in a removed directory) and nothing
 * is left behind. Not root: no chroot, as for the network process.
 */
static int enter_empty_root(struct config *kcfg, char *err, size_t errlen)
{
    char dir[] = "/run/tlsfilter-key.XXXXXX";
    char dir_tmp[] = "/tmp/tlsfilter-key.XXXXXX";
    char *d;

    if (kcfg->chroot_dir != NULL || geteuid() != 0)
        return 0;
    d = mkdtemp(dir);
    if (d == NULL)
        d = mkdtemp(dir_tmp);
    if (d == NULL || chdir(d) < 0) {
        snprintf(err, errlen, "an empty directory for the key process: %s", strerror(errno));
        return -1;
    }
    if (rmdir(d) < 0) {
        snprintf(err, errlen, "rmdir %s: %s", d, strerror(errno));
        return -1;
    }
    kcfg->chroot_dir = ".";
    return 0;
}

/* The handshake's deadline from now; a plaintext phase (--starttls) and a
 * PROXY header (--accept-proxy) come first, each with as long again. */
static long long handshake_ms(const struct config *cfg)
{
    long long phases = 1 + (cfg->starttls != 0) + (cfg->accept_proxy ? 1 : 0);

    return phases * cfg->timeout_handshake * 1000;
}

/*
 * The key holder's loop: fd 0 is the listener's control socket, which
 * brings one end of a socketpair per connection (SCM_RIGHTS); each is
 * served as the per-connection key process serves its one (a request at a
 * time, the same budget, the same deadline from the moment it came),
 * none waiting for another: a request is read as far as it has come and
 * answered once whole, and an answer that does not fit the socket ends
 * that connection. When the listener closes its end (a reload made a new
 * holder, or it exits), the connections still open are finished first.
 */
static int holder_run(const struct config *cfg, struct keyproc_keys *k)
{
    size_t max = cfg->max_connections, n = 0, i;
    struct kp_conn *conns = calloc(max, sizeof *conns);
    struct pollfd *pfd = calloc(max + 1, sizeof *pfd);
    bool listening = true;

    if (conns == NULL || pfd == NULL)
        return 71;
    while (listening || n > 0) {
        long long now = now_ms(), wait = -1;
        int r;

        pfd[0].fd = listening ? 0 : -1;
        pfd[0].events = POLLIN;
        for (i = 0; i < n; i++) {
            long long left = conns[i].deadline_ms - now;
            pfd[i + 1].fd = conns[i].fd;
            pfd[i + 1].events = POLLIN;
            pfd[i + 1].revents = 0;
            if (wait < 0 || left < wait)
                wait = left < 0 ? 0 : left;
        }
        r = poll(pfd, n + 1, wait > 86400000 ? 86400000 : (int)wait);
        if (r < 0 && errno != EINTR)
            return 71;
        now = now_ms();
        /* Each connection: its bytes, its end, or its deadline. Done from
         * the last, so that the one moved into a freed slot was seen. */
        for (i = n; i-- > 0;) {
            struct kp_conn *c = &conns[i];
            int st = 1;

            if (r > 0 && pfd[i + 1].revents != 0)
                st = conn_input(k, c);
            if (st > 0 && now >= c->deadline_ms)
                st = -1;
            if (st <= 0) {
                close(c->fd);
                explicit_bzero(c->buf, sizeof c->buf);
                if (i != --n)
                    memcpy(c, &conns[n], sizeof *c);
            }
        }
        /* A new connection's end, or the listener gone. */
        if (listening && r > 0 && pfd[0].revents != 0) {
            char byte;
            union {
                struct cmsghdr h;
                char space[CMSG_SPACE(sizeof(int))];
            } u;
            struct iovec iov = {.iov_base = &byte, .iov_len = 1};
            struct msghdr m = {.msg_iov = &iov,
                               .msg_iovlen = 1,
                               .msg_control = &u,
                               .msg_controllen = sizeof u};
            struct cmsghdr *h;
            ssize_t got = recvmsg(0, &m, MSG_CMSG_CLOEXEC);
            int fd = -1;

            if (got < 0 && errno == EINTR)
                continue;
            if (got <= 0) {
                listening = false;
                continue;
            }
            h = CMSG_FIRSTHDR(&m);
            if (h != NULL && h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_RIGHTS &&
                h->cmsg_len == CMSG_LEN(sizeof(int)))
                memcpy(&fd, CMSG_DATA(h), sizeof fd);
            /* The listener sends no more than it runs sessions; one past
             * that (a second holder's overlap) is closed: its handshake fails. */
            if (fd >= 0 && n == max)
                close(fd);
            else if (fd >= 0)
                conn_init(&conns[n++], fd, KEYPROC_MAX_REQUESTS, now + handshake_ms(cfg),
                          MSG_DONTWAIT);
        }
    }
    free(pfd);
    free(conns);
    return 0;
}

/*
 * The child's life, whichever its role: forget what it must not keep,
 * keep only fd (as fd 0), give up its privileges, die with its parent,
 * enter its sandbox, say it is ready, serve; never returns.
 */
static void run_child(const struct config *cfg, struct keyproc_keys *k, unsigned budget, int fd,
                      bool holder, void (*forget)(void *), void *arg)
{
    struct config kcfg = *cfg;
    long long deadline = now_ms() + handshake_ms(cfg);
    char err[256] = "";
    pid_t parent = getppid();
    int status;

    if (forget != NULL)
        forget(arg);
    /* ps and pgrep tell the holder from the listener's sessions by name. */
    if (holder)
        prctl(PR_SET_NAME, "tlsfilter-key");
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGCHLD, SIG_DFL);
    /* Only the socketpair, as fd 0: not the client's socket, not the log. */
    if (fd != 0 && dup2(fd, 0) < 0)
        _exit(71);
    if (close_range(1, ~0U, 0) < 0) {
        int i;
        for (i = 1; i < 1024; i++)
            close(i);
    }
    if (enter_empty_root(&kcfg, err, sizeof err) < 0 ||
        privs_drop(&kcfg, err, sizeof err) < 0) {
        answer(0, KEYPROC_SETUP_FAILED, err, strlen(err), 0);
        _exit(71);
    }
    /* Killed by the kernel when the network process (or the listener)
     * ends, however it ends: that process needs no kill() (its sandbox has
     * none). Set after the drop, which clears it; a parent already gone is
     * checked for. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
        _exit(71);
    /* Its system-call sandbox (sandbox.c): after the privilege drop,
     * before the first request; it may read and write fd 0, poll, sign
     * (getrandom, memory), and exit; the holder also receives descriptors,
     * as many as the listener runs sessions. */
    if (cfg->sandbox &&
        (holder ? sandbox_enter_key_holder(cfg->max_connections, err, sizeof err)
                : sandbox_enter_key(err, sizeof err)) < 0) {
        answer(0, KEYPROC_SETUP_FAILED, err, strlen(err), 0);
        _exit(71);
    }
    answer(0, KEYPROC_READY, NULL, 0, 0);
    if (holder)
        status = holder_run(&kcfg, k);
    else
        status = keyproc_serve(k, 0, budget, deadline) < 0 ? 1 : 0;
    keyproc_keys_clear(k);
    _exit(status);
}

/* Fork a key process of either role; wait until it is ready. */
static int start(const struct config *cfg, struct keyproc_keys *k, unsigned budget, bool holder,
                 void (*forget)(void *), void *arg, int *fdp, pid_t *pidp, char *err,
                 size_t errlen)
{
    struct answer a;
    char why[256];
    int sv[2];
    pid_t pid;

    *fdp = -1;
    *pidp = 0;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        snprintf(err, errlen, "key process: socketpair: %s", strerror(errno));
        return -1;
    }
    pid = fork();
    if (pid < 0) {
        snprintf(err, errlen, "key process: fork: %s", strerror(errno));
        close(sv[0]);
        close(sv[1]);
        return -1;
    }
    if (pid == 0) {
        close(sv[0]);
        run_child(cfg, k, budget > 0 ? budget : KEYPROC_MAX_REQUESTS, sv[1], holder, forget,
                  arg);
    }
    close(sv[1]);
    *fdp = sv[0];
    *pidp = pid;
    /* Ready, or why not. */
    if (read_full(sv[0], &a, sizeof a, now_ms() + 10000) != (ssize_t)sizeof a) {
        snprintf(err, errlen, "key process: ended before it was ready");
        return -1;
    }
    if (a.status != KEYPROC_READY) {
        size_t n = a.len < sizeof why - 1 ? a.len : sizeof why - 1;
        ssize_t r = read_full(sv[0], why, n, now_ms() + 1000);

        why[r > 0 ? (size_t)r : 0] = '\0';
        snprintf(err, errlen, "key process: %s", why);
        return a.status == KEYPROC_SETUP_FAILED ? -2 : -1;
    }
    return 0;
}

int keyproc_start(const struct config *cfg, struct keyproc_keys *k, unsigned budget,
                  void (*forget)(void *), void *arg, struct keyproc_link *link, char *err,
                  size_t errlen)
{
    int r = start(cfg, k, budget, false, forget, arg, &link->fd, &link->pid, err, errlen);

    live_fd = link->fd;
    if (link->timeout_ms == 0)
        link->timeout_ms = cfg->timeout_handshake * 1000;
    if (r < 0) {
        keyproc_stop(link);
        return r;
    }
#ifdef TEST_HOOKS
    link->hook = getenv("TLSFILTER_TEST_KEYPROC");
#endif
    return 0;
}

int keyproc_holder_start(const struct config *cfg, struct keyproc_keys *k,
                         void (*forget)(void *), void *arg, struct keyproc_holder *h, char *err,
                         size_t errlen)
{
    int r = start(cfg, k, 0, true, forget, arg, &h->ctl, &h->pid, err, errlen);

    /* It said why, ended, or never answered: reaped, but never waited for
     * long (a stuck one dies with us: PR_SET_PDEATHSIG). */
    if (r < 0)
        keyproc_holder_stop(h, 1000);
    return r;
}

int keyproc_holder_link(struct keyproc_holder *h, char *err, size_t errlen)
{
    union {
        struct cmsghdr h;
        char space[CMSG_SPACE(sizeof(int))];
    } u;
    char byte = 'c';
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    struct msghdr m = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &u, .msg_controllen = sizeof u};
    struct cmsghdr *c;
    int sv[2];

    if (h->ctl < 0) {
        snprintf(err, errlen, "key process: the listener's key holder is not running");
        return -1;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        snprintf(err, errlen, "key process: socketpair: %s", strerror(errno));
        return -1;
    }
    memset(&u, 0, sizeof u);
    c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &sv[1], sizeof(int));
    /* The holder reads its control socket between signatures: a full
     * socket means it is stuck, and this connection goes without. */
    if (sendmsg(h->ctl, &m, MSG_NOSIGNAL | MSG_DONTWAIT) != 1) {
        snprintf(err, errlen, "key process: the listener's key holder: %s", strerror(errno));
        close(sv[0]);
        close(sv[1]);
        return -1;
    }
    close(sv[1]);
    return sv[0];
}

void keyproc_holder_release(struct keyproc_holder *h)
{
    if (h->ctl >= 0)
        close(h->ctl);
    h->ctl = -1;
}

void keyproc_holder_stop(struct keyproc_holder *h, unsigned ms)
{
    long long until = now_ms() + ms;
    pid_t r;

    keyproc_holder_release(h);
    while (h->pid > 0) {
        r = waitpid(h->pid, NULL, WNOHANG);
        if (r == h->pid || (r < 0 && errno != EINTR) || now_ms() >= until)
            break;
        poll(NULL, 0, 10);
    }
    h->pid = 0;
}

void keyproc_attach(const struct config *cfg, struct keyproc_link *link, int fd)
{
    link->fd = fd;
    link->pid = 0;
    live_fd = fd;
    if (link->timeout_ms == 0)
        link->timeout_ms = cfg->timeout_handshake * 1000;
#ifdef TEST_HOOKS
    /* stall-if:FILE: this child stalls in the middle of its request if
     * FILE exists now (before the sandbox: it may look at files). */
    link->hook = getenv("TLSFILTER_TEST_KEYPROC");
    if (link->hook != NULL && strncmp(link->hook, "stall-if:", 9) == 0)
        link->hook = access(link->hook + 9, F_OK) == 0 ? "stall" : NULL;
#endif
}

/* How long a key process told to go may take to exit before we go on without it. */
#define KEYPROC_EXIT_MS 500

void keyproc_close_inherited(void)
{
    if (live_fd >= 0)
        close(live_fd);
    live_fd = -1;
}

void keyproc_stop(struct keyproc_link *link)
{
    struct pollfd pfd = {.fd = link->fd, .events = POLLIN};
    char c;

    bool gone = false;

    /*
     * The end of file tells it to exit, and its end of the socketpair
     * closes as it does. One that does not (stopped, stuck in a signature,
     * or saying more) cannot hold us here: we go on, and the kernel kills
     * it when this process ends (PR_SET_PDEATHSIG in run_child()).
     */
    if (link->fd >= 0 && link->pid > 0) {
        shutdown(link->fd, SHUT_WR);
        gone = poll(&pfd, 1, KEYPROC_EXIT_MS) > 0 && read(link->fd, &c, 1) == 0;
    }
    if (link->fd >= 0)
        close(link->fd);
    if (live_fd == link->fd)
        live_fd = -1;
    link->fd = -1;
    /* Reaped, so that no zombie outlives the handshake (one that is still
     * there is reaped by init once it is killed). */
    while (link->pid > 0 && waitpid(link->pid, NULL, gone ? 0 : WNOHANG) < 0 && errno == EINTR)
        ;
    link->pid = 0;
}

/* The network side --------------------------------------------------------- */

static int link_fail(struct keyproc_link *l, const char *why)
{
    if (l->err != NULL)
        snprintf(l->err, l->errlen, "key process: %s", why);
    return GNUTLS_E_PK_SIGN_FAILED;
}

/* A key that did not load in the key process: a configuration error. */
static int bad_key(struct keyproc_key *kk, int32_t code)
{
    struct keyproc_link *l = kk->link;

    l->bad_key = true;
    if (l->err != NULL)
        snprintf(l->err, l->errlen, "cannot load the key of %s: %s",
                 kk->name != NULL ? kk->name : "?", gnutls_strerror(code));
    return GNUTLS_E_PK_SIGN_FAILED;
}

int keyproc_check(struct keyproc_key *kk)
{
    struct keyproc_link *l = kk->link;
    struct request rq = {
        .magic = KEYPROC_MAGIC, .op = KEYPROC_OP_CHECK, .index = (uint8_t)kk->index};
    struct answer a;
    int32_t code = GNUTLS_E_INTERNAL_ERROR;

    if (l->fd < 0)
        return link_fail(l, "not running");
    if (write_full(l->fd, &rq, sizeof rq, 0) < 0 ||
        read_full(l->fd, &a, sizeof a, now_ms() + l->timeout_ms) != (ssize_t)sizeof a)
        return link_fail(l, "no answer (it ended or was killed)");
    if (a.status == KEYPROC_BAD_KEY) {
        if (a.len == sizeof code)
            read_full(l->fd, &code, sizeof code, now_ms() + l->timeout_ms);
        return bad_key(kk, code);
    }
    if (a.status != 0 || a.len != 0)
        return link_fail(l, "refused to check a key");
    return 0;
}

/* One request, its answer: the signature in sig (gnutls_malloc'd). */
static int ask(struct keyproc_key *kk, uint8_t op, gnutls_sign_algorithm_t algo, unsigned flags,
               const gnutls_datum_t *data, gnutls_datum_t *sig)
{
    struct keyproc_link *l = kk->link;
    struct request rq = {.magic = KEYPROC_MAGIC,
                         .op = op,
                         .index = (uint8_t)kk->index,
                         .len = (uint16_t)data->size,
                         .algo = (uint32_t)algo,
                         .flags = flags};
    struct answer a;
    size_t send_len = data->size;
    unsigned times = 1;
    bool hang_up = false;
    char why[160];

    if (l->fd < 0)
        return link_fail(l, "not running");
    if (data->size == 0 || data->size > KEYPROC_MAX_DATA)
        return link_fail(l, "nothing, or too much, to sign");
#ifdef TEST_HOOKS
    /* A network side gone wrong: past the bound, or half a request. */
    if (l->hook != NULL && strcmp(l->hook, "past-bound") == 0)
        times = KEYPROC_MAX_REQUESTS + 1;
    if (l->hook != NULL && (strcmp(l->hook, "truncated") == 0 || strcmp(l->hook, "stall") == 0))
        send_len = data->size / 2;
    /* truncated: the end of file says so; stall: nothing more, ever. */
    hang_up = l->hook != NULL && strcmp(l->hook, "truncated") == 0;
#endif
    while (times-- > 0) {
        if (write_full(l->fd, &rq, sizeof rq, 0) < 0 ||
            write_full(l->fd, data->data, send_len, 0) < 0)
            return link_fail(l, "gone (it ended or was killed)");
        if (hang_up)
            shutdown(l->fd, SHUT_WR);
        if (read_full(l->fd, &a, sizeof a, now_ms() + l->timeout_ms) != (ssize_t)sizeof a)
            return link_fail(l, "no answer (it ended or was killed)");
        if (a.status == KEYPROC_BAD_KEY) {
            int32_t code = GNUTLS_E_INTERNAL_ERROR;
            if (a.len == sizeof code)
                read_full(l->fd, &code, sizeof code, now_ms() + l->timeout_ms);
            return bad_key(kk, code);
        }
        if (a.status > 0) {
            snprintf(why, sizeof why, "refused the request: %s",
                     a.status == KEYPROC_PAST_BOUND  ? "past the bound of signatures per "
                                                       "connection"
                     : a.status == KEYPROC_TRUNCATED ? "truncated"
                                                     : "malformed");
            return link_fail(l, why);
        }
        if (a.status < 0) {
            snprintf(why, sizeof why, "cannot sign: %s", gnutls_strerror(a.status));
            return link_fail(l, why);
        }
        if (a.len == 0 || a.len > KEYPROC_MAX_SIG)
            return link_fail(l, "a malformed answer");
        sig->data = gnutls_malloc(a.len);
        if (sig->data == NULL)
            return GNUTLS_E_MEMORY_ERROR;
        if (read_full(l->fd, sig->data, a.len, now_ms() + l->timeout_ms) != (ssize_t)a.len) {
            gnutls_free(sig->data);
            sig->data = NULL;
            return link_fail(l, "a truncated answer");
        }
        sig->size = a.len;
        if (times > 0) {
            gnutls_free(sig->data);
            sig->data = NULL;
        }
    }
    return 0;
}

static int sign_data(gnutls_privkey_t key, gnutls_sign_algorithm_t algo, void *userdata,
                     unsigned int flags, const gnutls_datum_t *data, gnutls_datum_t *sig)
{
    (void)key;
    return ask(userdata, KEYPROC_OP_SIGN_DATA, algo, flags, data, sig);
}

static int sign_hash(gnutls_privkey_t key, gnutls_sign_algorithm_t algo, void *userdata,
                     unsigned int flags, const gnutls_datum_t *hash, gnutls_datum_t *sig)
{
    (void)key;
    return ask(userdata, KEYPROC_OP_SIGN_HASH, algo, flags, hash, sig);
}

/* What GnuTLS asks about the key: its type, size, the signatures it makes. */
static int info(gnutls_privkey_t key, unsigned int flags, void *userdata)
{
    const struct keyproc_key *kk = userdata;

    (void)key;
    if (flags & GNUTLS_PRIVKEY_INFO_PK_ALGO)
        return (int)kk->pk;
    if (flags & GNUTLS_PRIVKEY_INFO_PK_ALGO_BITS)
        return (int)kk->bits;
    if (flags & GNUTLS_PRIVKEY_INFO_HAVE_SIGN_ALGO)
        return gnutls_sign_supports_pk_algorithm(
                   (gnutls_sign_algorithm_t)GNUTLS_FLAGS_TO_SIGN_ALGO(flags), kk->pk)
                   ? 1
                   : 0;
    return GNUTLS_E_UNIMPLEMENTED_FEATURE;
}

int keyproc_privkey(gnutls_privkey_t *out, struct keyproc_key *kk)
{
    int ret = gnutls_privkey_init(out);

    if (ret < 0)
        return ret;
    /* No decrypt function: the RSA key exchange is refused. */
    ret = gnutls_privkey_import_ext4(*out, kk, sign_data, sign_hash, NULL, NULL, info, 0);
    if (ret < 0) {
        gnutls_privkey_deinit(*out);
        *out = NULL;
    }
    return ret;
}
