/*
 * backend.c: resolving and connecting to the plaintext service.
 *
 * Resolution happens before privileges are dropped (after a chroot, names
 * and services cannot be looked up); the connection is made only after the
 * handshake succeeded, so scanners and broken clients never reach the MTA.
 */
#include "config.h"

#include "backend.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pty.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "keyproc.h"
#include "log.h"

static bool valid_port(const char *p)
{
    if (*p == '\0')
        return false;
    for (; *p != '\0'; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
              (*p >= 'A' && *p <= 'Z') || *p == '-' || *p == '_'))
            return false;
    return true;
}

static int copy(char *dst, size_t len, const char *src, size_t n)
{
    if (n >= len)
        return -1;
    memcpy(dst, src, n);
    dst[n] = '\0';
    return 0;
}

int backend_split(const char *spec, char *host, size_t hostlen, char *port, size_t portlen,
                  char *err, size_t errlen)
{
    const char *colon;

    host[0] = port[0] = '\0';
    if (spec[0] == '[') {
        const char *close = strchr(spec, ']');
        if (close == NULL || close[1] != ':') {
            snprintf(err, errlen, "-r %s: expected [ADDRESS]:PORT", spec);
            return -1;
        }
        if (copy(host, hostlen, spec + 1, (size_t)(close - spec - 1)) < 0 ||
            copy(port, portlen, close + 2, strlen(close + 2)) < 0)
            goto too_long;
    } else if ((colon = strrchr(spec, ':')) != NULL) {
        if (copy(host, hostlen, spec, (size_t)(colon - spec)) < 0 ||
            copy(port, portlen, colon + 1, strlen(colon + 1)) < 0)
            goto too_long;
    } else if (copy(port, portlen, spec, strlen(spec)) < 0) {
        goto too_long;
    }
    if (!valid_port(port)) {
        snprintf(err, errlen, "-r %s: '%s' is not a port number or service name", spec, port);
        return -1;
    }
    return 0;
too_long:
    snprintf(err, errlen, "-r %s: too long", spec);
    return -1;
}

static int resolve(const char *host, const char *port, int flags, int family,
                   struct addrinfo **res, const char *what, char *err, size_t errlen)
{
    struct addrinfo hints;
    int r;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = family;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    hints.ai_flags = flags;
    r = getaddrinfo(host, port, &hints, res);
    if (r == 0)
        return 0;
    snprintf(err, errlen, "%s: %s", what, gai_strerror(r));
    return (r == EAI_AGAIN || r == EAI_FAIL || r == EAI_MEMORY || r == EAI_SYSTEM)
               ? EX_UNAVAILABLE
               : EX_CONFIG;
}

int backend_resolve(const struct config *cfg, struct backend *b, char *err, size_t errlen)
{
    char host[256], port[64];
    int r;

    memset(b, 0, sizeof *b);
    if (cfg->connect[0] == '/') {
        if (strlen(cfg->connect) >= sizeof b->un.sun_path) {
            snprintf(err, errlen, "-r %s: Unix socket path too long", cfg->connect);
            return EX_CONFIG;
        }
        b->is_unix = true;
        b->un.sun_family = AF_UNIX;
        memcpy(b->un.sun_path, cfg->connect, strlen(cfg->connect) + 1);
        snprintf(b->text, sizeof b->text, "%s", cfg->connect);
        return 0;
    }
    if (backend_split(cfg->connect, host, sizeof host, port, sizeof port, err, errlen) < 0)
        return EX_CONFIG;
    /* With no host, getaddrinfo gives the loopback addresses. */
    r = resolve(host[0] ? host : NULL, port, 0, AF_UNSPEC, &b->ai, cfg->connect, err, errlen);
    if (r != 0)
        return r;
    snprintf(b->text, sizeof b->text, "%s", cfg->connect);
    if (cfg->bind_addr != NULL)
        return resolve(cfg->bind_addr, NULL, AI_PASSIVE, AF_UNSPEC, &b->bind_ai, cfg->bind_addr,
                       err, errlen);
    return 0;
}

int backend_program(const struct config *cfg, struct backend *b)
{
    memset(b, 0, sizeof *b);
    snprintf(b->text, sizeof b->text, "%s", cfg->exec_path);
    return 0;
}

static void describe(struct backend *b, const struct sockaddr *sa)
{
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;

    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, host, sizeof host);
        port = ntohs(s4->sin_port);
        snprintf(b->text, sizeof b->text, "%s:%u", host, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof host);
        port = ntohs(s6->sin6_port);
        snprintf(b->text, sizeof b->text, "[%s]:%u", host, port);
    }
}

/* The -I address of the family of ai, or NULL. */
static const struct addrinfo *bind_for(const struct backend *b, const struct addrinfo *ai)
{
    const struct addrinfo *p;

    for (p = b->bind_ai; p != NULL; p = p->ai_next)
        if (p->ai_family == ai->ai_family)
            return p;
    return NULL;
}

/* One non-blocking connect bounded by timeout_sec. fd, or -1 with errno. */
static int connect_one(int family, const struct sockaddr *sa, socklen_t len,
                       const struct addrinfo *local, unsigned timeout_sec)
{
    struct pollfd pfd;
    socklen_t elen = sizeof(int);
    int fd, e = 0, n;

    fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (local != NULL && bind(fd, local->ai_addr, local->ai_addrlen) < 0)
        goto fail;
    if (connect(fd, sa, len) == 0)
        return fd;
    if (errno != EINPROGRESS)
        goto fail;
    pfd = (struct pollfd){.fd = fd, .events = POLLOUT};
    do
        n = poll(&pfd, 1, (int)(timeout_sec * 1000));
    while (n < 0 && errno == EINTR);
    if (n == 0) {
        errno = ETIMEDOUT;
        goto fail;
    }
    if (n < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &elen) < 0)
        goto fail;
    if (e == 0)
        return fd;
    errno = e;
fail:
    e = errno;
    close(fd);
    errno = e;
    return -1;
}

int backend_send(int fd, const void *buf, size_t len, unsigned timeout_sec, char *err,
                 size_t errlen)
{
    const unsigned char *p = buf;

    while (len > 0) {
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        ssize_t w = write(fd, p, len);

        if (w > 0) {
            p += w;
            len -= (size_t)w;
            continue;
        }
        if (w < 0 && errno != EAGAIN && errno != EINTR) {
            snprintf(err, errlen, "sending the PROXY header: %s", strerror(errno));
            return -1;
        }
        if (poll(&pfd, 1, (int)timeout_sec * 1000) == 0) {
            snprintf(err, errlen, "sending the PROXY header: timed out");
            return -1;
        }
    }
    return 0;
}

int backend_connect(struct backend *b, unsigned timeout_sec, char *err, size_t errlen)
{
    const struct addrinfo *ai;
    int fd = -1, one = 1;

    if (b->is_unix) {
        fd = connect_one(AF_UNIX, (const struct sockaddr *)&b->un, sizeof b->un, NULL,
                         timeout_sec);
        if (fd < 0)
            snprintf(err, errlen, "%s", strerror(errno));
        return fd;
    }
    for (ai = b->ai; ai != NULL; ai = ai->ai_next) {
        const struct addrinfo *local = NULL;

        describe(b, ai->ai_addr);
        if (b->bind_ai != NULL && (local = bind_for(b, ai)) == NULL) {
            errno = EAFNOSUPPORT;
            continue;
        }
        fd = connect_one(ai->ai_family, ai->ai_addr, ai->ai_addrlen, local, timeout_sec);
        if (fd >= 0) {
            (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            return fd;
        }
    }
    snprintf(err, errlen, "%s", strerror(errno));
    return -1;
}

/*
 * The program's stderr, read by a process of its own and logged line by
 * line: the relay stays a loop over two ends, and a program that writes a
 * lot to stderr can never block on it.
 */
static int start_stderr_logger(const char *program)
{
    char line[512];
    size_t n = 0;
    int pfd[2], null;
    pid_t pid;

    if (pipe2(pfd, O_CLOEXEC) < 0)
        return -1;
    pid = fork();
    if (pid < 0) {
        close(pfd[0]);
        close(pfd[1]);
        return -1;
    }
    if (pid > 0) {
        close(pfd[0]);
        return pfd[1];
    }
    /* The logger holds nothing of the connection: not the client's socket,
     * not the key process's socketpair (--starttls starts it before TLS). */
    close(pfd[1]);
    keyproc_close_inherited();
    null = open("/dev/null", O_RDWR);
    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
    }
    for (;;) {
        char c;
        ssize_t r = read(pfd[0], &c, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0 || c == '\n' || n == sizeof line - 1) {
            if (n > 0) {
                char value[sizeof line + 8];
                line[n] = '\0';
                log_msg(LOG_NOTICE, "event=program-stderr program=%s line=%s", program,
                        log_value(line, value, sizeof value));
                n = 0;
            }
            if (r <= 0)
                _exit(0);
            if (c != '\n')
                line[n++] = c;
            continue;
        }
        line[n++] = c;
    }
}

static const char *const backend_env_names[] = {"PROTO",
                                                "REMOTE_HOST",
                                                "REMOTE_PORT",
                                                "TCPREMOTEIP",
                                                "TCPREMOTEPORT",
                                                "TCPLOCALIP",
                                                "TCPLOCALPORT",
                                                "SSL_PROTOCOL",
                                                "SSL_CIPHER",
                                                "SSL_CLIENT_VERIFY",
                                                "SSL_CLIENT_S_DN",
                                                "SSL_CLIENT_I_DN",
                                                "SSL_CLIENT_CERT_SHA256"};

/* The environment block's longest size: every name, each value within 300. */
#define ENV_BLOCK_MAX 8192

/*
 * The environment block from the network process, checked: NAME=value
 * strings, each NUL-terminated, each name one of backend_env_names at most
 * once. The strings stay in buf (putenv() keeps pointers). 0, -1 if the
 * block is malformed, 1 if the network process is gone without sending one.
 */
static int read_env_block(int fd, char *buf, size_t len, char **env, size_t max)
{
    bool seen[sizeof backend_env_names / sizeof backend_env_names[0]] = {false};
    size_t n = 0, k = 0, at, i;
    ssize_t r;

    for (;;) {
        r = read(fd, buf + n, len - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        n += (size_t)r;
        if (n == len)
            return -1; /* too long */
    }
    /* 'G' first: an empty read is a process that ended before the handshake did. */
    if (n == 0)
        return 1;
    if (buf[0] != 'G' || buf[n - 1] != '\0')
        return -1;
    for (at = 1; at < n; at += strlen(buf + at) + 1) {
        const char *eq = strchr(buf + at, '=');
        for (i = 0; eq != NULL && i < sizeof backend_env_names / sizeof backend_env_names[0];
             i++)
            if (strlen(backend_env_names[i]) == (size_t)(eq - (buf + at)) &&
                strncmp(buf + at, backend_env_names[i], (size_t)(eq - (buf + at))) == 0)
                break;
        if (eq == NULL || i == sizeof backend_env_names / sizeof backend_env_names[0] ||
            seen[i] || k == max - 1)
            return -1;
        seen[i] = true;
        env[k++] = buf + at;
    }
    env[k] = NULL;
    return 0;
}

/*
 * In the child, forked before the sandbox: fds 0/1 are fd, 2 errfd, 3 the
 * report pipe, 4 the environment pipe, nothing else. It waits for the
 * environment (the TLS facts are known only after the handshake), checks
 * it, and executes the program: the network process itself never forks
 * or executes anything once it reads the client's bytes.
 */
static void exec_child(const struct config *cfg, int fd, int errfd, int report, int envfd)
{
    char *const default_argv[] = {(char *)cfg->exec_path, NULL};
    static char block[ENV_BLOCK_MAX];
    char *env[sizeof backend_env_names / sizeof backend_env_names[0] + 1];
    size_t i;
    int e = EINVAL;

    /* Above the numbers they are going to, so that no dup2() clobbers another. */
    fd = fcntl(fd, F_DUPFD, 10);
    report = fcntl(report, F_DUPFD, 10);
    envfd = fcntl(envfd, F_DUPFD, 10);
    errfd = errfd >= 0 ? fcntl(errfd, F_DUPFD, 10) : -1;
    if (fd < 0 || report < 0 || envfd < 0)
        _exit(127);
    /* Without a logger, stderr stays on /dev/null (fd 2 since start-up). */
    if (dup2(fd, 0) < 0 || dup2(fd, 1) < 0 || (errfd >= 0 && dup2(errfd, 2) < 0) ||
        dup2(report, 3) < 0 || dup2(envfd, 4) < 0)
        _exit(127);
    /* The report pipe stays open (close-on-exec) to say why exec failed. */
    fcntl(3, F_SETFD, FD_CLOEXEC);
    close_range(5, ~0U, 0);
    switch (read_env_block(4, block, sizeof block, env, sizeof env / sizeof env[0])) {
    case 1:
        _exit(0); /* no connection came this far: nothing to run */
    case 0:
        break;
    default:
        goto fail;
    }
    close(4);
    /* The names tlsfilter sets are its alone: none inherited from the
     * launcher may stand in for a value the connection did not have. */
    for (i = 0; i < sizeof backend_env_names / sizeof backend_env_names[0]; i++)
        unsetenv(backend_env_names[i]);
    for (i = 0; env[i] != NULL; i++)
        putenv(env[i]);
    execv(cfg->exec_path, cfg->exec_argv != NULL ? cfg->exec_argv : default_argv);
    e = errno;
fail:
    (void)!write(3, &e, sizeof e);
    _exit(127);
}

int backend_prespawn(const struct config *cfg, struct backend *b, char *err, size_t errlen)
{
    const char *name = strrchr(cfg->exec_path, '/') + 1;
    int sv[2], report[2], envp[2], errfd, e = 0, ours, theirs;
    pid_t pid;

    /* The logger first, so that it inherits neither end of the pair. */
    errfd = start_stderr_logger(name);
    if (cfg->exec_pty) {
        struct termios tio;
        if (openpty(&ours, &theirs, NULL, NULL, NULL) < 0) {
            snprintf(err, errlen, "openpty: %s", strerror(errno));
            goto fail_logger;
        }
        /* Bytes pass unchanged: no echo, no line discipline. */
        if (tcgetattr(theirs, &tio) == 0) {
            cfmakeraw(&tio);
            tcsetattr(theirs, TCSANOW, &tio);
        }
        fcntl(ours, F_SETFD, FD_CLOEXEC);
        fcntl(theirs, F_SETFD, FD_CLOEXEC);
    } else if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        snprintf(err, errlen, "socketpair: %s", strerror(errno));
        goto fail_logger;
    } else {
        ours = sv[0];
        theirs = sv[1];
    }
    if (pipe2(report, O_CLOEXEC) < 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        goto fail_pair;
    }
    if (pipe2(envp, O_CLOEXEC) < 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        close(report[0]);
        close(report[1]);
        goto fail_pair;
    }
    pid = fork();
    if (pid == 0) {
        if (cfg->exec_pty) {
            setsid();
            ioctl(theirs, TIOCSCTTY, 0);
        }
        exec_child(cfg, theirs, errfd, report[1], envp[0]);
    }
    e = errno;
    close(theirs);
    close(report[1]);
    close(envp[0]);
    if (errfd >= 0)
        close(errfd);
    if (pid < 0) {
        snprintf(err, errlen, "fork: %s", strerror(e));
        close(ours);
        close(report[0]);
        close(envp[1]);
        return -1;
    }
    fcntl(ours, F_SETFL, fcntl(ours, F_GETFL) | O_NONBLOCK);
    b->child = (struct backend_child){
        .pid = pid, .fd = ours, .env_fd = envp[1], .report_fd = report[0]};
    return 0;
fail_pair:
    close(ours);
    close(theirs);
fail_logger:
    if (errfd >= 0)
        close(errfd);
    return -1;
}

int backend_spawn(const struct config *cfg, struct backend *b, char *const *env, pid_t *pid,
                  char *err, size_t errlen)
{
    struct backend_child *c = &b->child;
    char block[ENV_BLOCK_MAX];
    size_t n = 1, i, len;
    ssize_t r;
    int e = 0;

    if (c->pid <= 0 && backend_prespawn(cfg, b, err, errlen) < 0)
        return -1;
    *pid = c->pid;
    block[0] = 'G';
    for (i = 0; env[i] != NULL; i++) {
        len = strlen(env[i]) + 1;
        if (len > sizeof block - n - 1)
            break; /* cannot happen: 13 values of at most 300 */
        memcpy(block + n, env[i], len);
        n += len;
    }
    /* A pipe holds far more than the block: this does not wait. */
    for (i = 0; i < n; i += (size_t)r) {
        r = write(c->env_fd, block + i, n - i);
        if (r < 0 && errno == EINTR)
            r = 0;
        else if (r <= 0)
            break; /* the child is gone: its report (none) says the rest */
    }
    close(c->env_fd);
    /* exec succeeded when the close-on-exec report pipe closes unwritten. */
    do
        r = read(c->report_fd, &e, sizeof e);
    while (r < 0 && errno == EINTR);
    close(c->report_fd);
    if (r == (ssize_t)sizeof e) {
        snprintf(err, errlen, "cannot execute %s: %s", cfg->exec_path, strerror(e));
        waitpid(c->pid, NULL, 0);
        close(c->fd);
        return -1;
    }
    return c->fd;
}

const char *backend_reap(pid_t pid, unsigned timeout_sec, char *buf, size_t len)
{
    struct timespec tick = {0, 20 * 1000 * 1000};
    unsigned waited_ms = 0;
    pid_t r;
    int st;

    /* A program that outlives the connection is left to finish on its own. */
    for (;;) {
        r = waitpid(pid, &st, WNOHANG);
        if (r != 0 || waited_ms >= timeout_sec * 1000)
            break;
        nanosleep(&tick, NULL);
        waited_ms += 20;
    }
    if (r == 0)
        snprintf(buf, len, "running");
    else if (r < 0)
        snprintf(buf, len, "unknown");
    else if (WIFEXITED(st))
        snprintf(buf, len, "exit-%d", WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        snprintf(buf, len, "signal-%d", WTERMSIG(st));
    else
        snprintf(buf, len, "unknown");
    return buf;
}

void backend_free(struct backend *b)
{
    if (b->ai != NULL)
        freeaddrinfo(b->ai);
    if (b->bind_ai != NULL)
        freeaddrinfo(b->bind_ai);
    b->ai = b->bind_ai = NULL;
}
