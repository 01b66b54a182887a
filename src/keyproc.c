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

static int write_full(int fd, const void *buf, size_t n)
{
    size_t done = 0;

    while (done < n) {
        ssize_t w = send(fd, (const char *)buf + done, n - done, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        done += (size_t)w;
    }
    return 0;
}

static void answer(int fd, int32_t status, const void *data, size_t len)
{
    struct answer a = {.status = status, .len = (uint32_t)len};

    if (write_full(fd, &a, sizeof a) == 0 && len > 0)
        write_full(fd, data, len);
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

int keyproc_serve(struct keyproc_keys *k, int fd, unsigned budget, long long deadline_ms)
{
    unsigned char buf[KEYPROC_MAX_DATA];
    unsigned made = 0, checks = 0;

    for (;;) {
        struct request rq;
        gnutls_datum_t data, sig = {NULL, 0};
        ssize_t r = read_full(fd, &rq, sizeof rq, deadline_ms);
        bool parsed;
        int32_t ret;

        /* The network side closed its end: the handshake is over. */
        if (r == 0)
            return (int)made;
        if (r < 0)
            return -1;
        if ((size_t)r < sizeof rq) {
            answer(fd, KEYPROC_TRUNCATED, NULL, 0);
            return -1;
        }
        if (rq.magic != KEYPROC_MAGIC || rq.index >= k->n ||
            (rq.op == KEYPROC_OP_CHECK
                 ? rq.len != 0
                 : (rq.op != KEYPROC_OP_SIGN_DATA && rq.op != KEYPROC_OP_SIGN_HASH) ||
                       rq.len == 0 || rq.len > sizeof buf)) {
            answer(fd, KEYPROC_MALFORMED, NULL, 0);
            return -1;
        }
        /* Does key i load? Once per key at most: it signs nothing. */
        if (rq.op == KEYPROC_OP_CHECK) {
            if (++checks > k->n) {
                answer(fd, KEYPROC_PAST_BOUND, NULL, 0);
                return -1;
            }
            ret = parse(k, rq.index);
            if (ret < 0)
                answer(fd, KEYPROC_BAD_KEY, &ret, sizeof ret);
            else
                answer(fd, 0, NULL, 0);
            continue;
        }
        r = read_full(fd, buf, rq.len, deadline_ms);
        if (r < 0)
            return -1;
        if (r < (ssize_t)rq.len) {
            answer(fd, KEYPROC_TRUNCATED, NULL, 0);
            return -1;
        }
        /* A handshake needs so many signatures: more is not a handshake. */
        if (made >= budget) {
            answer(fd, KEYPROC_PAST_BOUND, NULL, 0);
            return -1;
        }
        data.data = buf;
        data.size = rq.len;
        ret = sign(k, &rq, &data, &sig, &parsed);
        made++;
        if (ret >= 0 && sig.size > KEYPROC_MAX_SIG)
            ret = GNUTLS_E_SHORT_MEMORY_BUFFER;
        if (!parsed)
            answer(fd, KEYPROC_BAD_KEY, &ret, sizeof ret);
        else
            answer(fd, ret < 0 ? ret : 0, sig.data, ret < 0 ? 0 : sig.size);
        gnutls_free(sig.data);
    }
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

/* The child: never returns. */
static void run_child(const struct config *cfg, struct keyproc_keys *k, unsigned budget, int fd,
                      void (*forget)(void *), void *arg)
{
    struct config kcfg = *cfg;
    /* The handshake's deadline; a plaintext phase (--starttls) and a PROXY
     * header (--accept-proxy) come first, each with as long again. */
    long long phases = 1 + (cfg->starttls != 0) + (cfg->accept_proxy ? 1 : 0);
    long long deadline = now_ms() + phases * cfg->timeout_handshake * 1000;
    char err[256] = "";
    pid_t parent = getppid();
    int status;

    if (forget != NULL)
        forget(arg);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    signal(SIGINT, SIG_DFL);
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
        answer(0, KEYPROC_SETUP_FAILED, err, strlen(err));
        _exit(71);
    }
    /* Killed by the kernel when the network process ends, however it ends:
     * that process needs no kill() (its sandbox has none). Set after the
     * drop, which clears it; a parent already gone is checked for. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
        _exit(71);
    /* Its system-call sandbox (sandbox.c): after the privilege drop,
     * before the first request; it may read and write fd 0, poll, sign
     * (getrandom, memory), and exit. */
    if (cfg->sandbox && sandbox_enter_key(err, sizeof err) < 0) {
        answer(0, KEYPROC_SETUP_FAILED, err, strlen(err));
        _exit(71);
    }
    answer(0, KEYPROC_READY, NULL, 0);
    status = keyproc_serve(k, 0, budget, deadline);
    keyproc_keys_clear(k);
    _exit(status < 0 ? 1 : 0);
}

int keyproc_start(const struct config *cfg, struct keyproc_keys *k, unsigned budget,
                  void (*forget)(void *), void *arg, struct keyproc_link *link, char *err,
                  size_t errlen)
{
    struct answer a;
    char why[256];
    int sv[2];
    pid_t pid;

    link->fd = -1;
    link->pid = 0;
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
        run_child(cfg, k, budget > 0 ? budget : KEYPROC_MAX_REQUESTS, sv[1], forget, arg);
    }
    close(sv[1]);
    link->fd = sv[0];
    link->pid = pid;
    live_fd = link->fd;
    if (link->timeout_ms == 0)
        link->timeout_ms = cfg->timeout_handshake * 1000;
    /* Ready, or why not. */
    if (read_full(link->fd, &a, sizeof a, now_ms() + 10000) != (ssize_t)sizeof a) {
        snprintf(err, errlen, "key process: ended before it was ready");
        keyproc_stop(link);
        return -1;
    }
    if (a.status != KEYPROC_READY) {
        size_t n = a.len < sizeof why - 1 ? a.len : sizeof why - 1;
        ssize_t r = read_full(link->fd, why, n, now_ms() + 1000);
        why[r > 0 ? (size_t)r : 0] = '\0';
        snprintf(err, errlen, "key process: %s", why);
        keyproc_stop(link);
        return a.status == KEYPROC_SETUP_FAILED ? -2 : -1;
    }
#ifdef TEST_HOOKS
    link->hook = getenv("TLSFILTER_TEST_KEYPROC");
#endif
    return 0;
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
    if (write_full(l->fd, &rq, sizeof rq) < 0 ||
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
    char why[160];

    if (l->fd < 0)
        return link_fail(l, "not running");
    if (data->size == 0 || data->size > KEYPROC_MAX_DATA)
        return link_fail(l, "nothing, or too much, to sign");
#ifdef TEST_HOOKS
    /* A network side gone wrong: past the bound, or half a request. */
    if (l->hook != NULL && strcmp(l->hook, "past-bound") == 0)
        times = KEYPROC_MAX_REQUESTS + 1;
    if (l->hook != NULL && strcmp(l->hook, "truncated") == 0)
        send_len = data->size / 2;
#endif
    while (times-- > 0) {
        if (write_full(l->fd, &rq, sizeof rq) < 0 ||
            write_full(l->fd, data->data, send_len) < 0)
            return link_fail(l, "gone (it ended or was killed)");
        if (send_len < data->size)
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
