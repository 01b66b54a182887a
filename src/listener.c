/*
 * listener.c: the inetd family's second model. xinetd's `wait = yes` hands a
 * stream service its listening socket on fds 0, 1 and 2; systemd's
 * Accept=no passes it as fd 3 with LISTEN_FDS and LISTEN_PID. One parent
 * then loads the options and credentials once and accepts; a child made
 * with fork() serves each connection with the exec model's own steps, from
 * "who is calling" on, and exits. The parent never reads a client's byte: it
 * accepts, applies the limits xinetd and systemd cannot apply here, forks,
 * reaps and logs. Postfix's master and s6-tcpserver work the same way.
 */
#include "config.h"

#include "listener.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "peer.h"

int listener_find(void)
{
    const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
    int on = 0, fd = -1;
    socklen_t len = sizeof on;

    /* systemd's protocol (sd_listen_fds(3)): the sockets start at fd 3, and
     * the variables are for this process only, not for a -l program. */
    if (pid != NULL && fds != NULL) {
        if (strtol(pid, NULL, 10) == (long)getpid() && strtol(fds, NULL, 10) >= 1 &&
            getsockopt(3, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) == 0 && on)
            fd = 3;
        unsetenv("LISTEN_PID");
        unsetenv("LISTEN_FDS");
        unsetenv("LISTEN_FDNAMES");
        if (fd >= 0)
            return fd;
    }
    /* xinetd and inetd, wait = yes (and systemd with StandardInput=socket). */
    if (getsockopt(0, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) == 0 && on)
        return 0;
    return -1;
}

/* One running session: its child and its client. */
struct session {
    pid_t pid;
    char addr[INET6_ADDRSTRLEN];
    char text[INET6_ADDRSTRLEN + 12];
};

static int wake[2] = {-1, -1}; /* the signal handlers' self-pipe */
static volatile sig_atomic_t terms, hup;

static void on_signal(int sig)
{
    int saved = errno;

    if (sig == SIGTERM || sig == SIGINT)
        terms++;
    else if (sig == SIGHUP)
        hup = 1;
    if (write(wake[1], "", 1) < 0)
        errno = 0; /* full: a wake-up is pending anyway */
    errno = saved;
}

static const int caught[] = {SIGTERM, SIGINT, SIGHUP, SIGCHLD};
#define N_CAUGHT (sizeof caught / sizeof caught[0])

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

struct listener {
    const struct config *cfg;
    const struct listener_ops *ops;
    int fd, fl;
    int link_fd; /* in a child: what ops->link gave for it */
    bool failed; /* ops->reaped said the listener cannot go on */
    struct session *s;
    unsigned n;
    unsigned long long accepted, refused;
    long long rate_second;
    unsigned rate_count;
    struct sigaction old[N_CAUGHT];
};

/* Children that ended: a signal is logged (the child could not say why). */
static void reap(struct listener *l)
{
    pid_t pid;
    int st;
    unsigned i;

    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
        for (i = 0; i < l->n && l->s[i].pid != pid; i++)
            ;
        /* Not a session: the key holder (main.c says what that means). */
        if (i == l->n) {
            if (l->ops->reaped != NULL && l->ops->reaped(l->ops->ctx, pid, st) < 0)
                l->failed = true;
            continue;
        }
        if (WIFSIGNALED(st))
            log_msg(LOG_ERR, "event=session-killed peer=%s pid=%ld signal=SIG%s", l->s[i].text,
                    (long)pid, sigabbrev_np(WTERMSIG(st)) ? sigabbrev_np(WTERMSIG(st)) : "?");
        l->s[i] = l->s[--l->n];
    }
}

static void signal_all(const struct listener *l, int sig)
{
    unsigned i;

    for (i = 0; i < l->n; i++)
        kill(l->s[i].pid, sig);
}

/* The limit a new connection from addr is over, or NULL. */
static const char *over_limit(struct listener *l, const char *addr, unsigned *value)
{
    const struct config *cfg = l->cfg;
    unsigned i, same = 0;

    if (l->n >= cfg->max_connections) {
        *value = cfg->max_connections;
        return "max-connections";
    }
    for (i = 0; cfg->max_per_source > 0 && addr[0] && i < l->n; i++)
        same += strcmp(l->s[i].addr, addr) == 0;
    if (cfg->max_per_source > 0 && addr[0] && same >= cfg->max_per_source) {
        *value = cfg->max_per_source;
        return "max-per-source";
    }
    if (cfg->max_rate > 0) {
        long long second = now_ms() / 1000;
        if (second != l->rate_second) {
            l->rate_second = second;
            l->rate_count = 0;
        }
        if (++l->rate_count > cfg->max_rate) {
            *value = cfg->max_rate;
            return "max-rate";
        }
    }
    return NULL;
}

/* In the child: the connection on fds 0 and 1, the parent's state gone. */
static void become_child(struct listener *l, int fd, const sigset_t *mask)
{
    size_t i;

    for (i = 0; i < N_CAUGHT; i++)
        sigaction(caught[i], &l->old[i], NULL);
    sigprocmask(SIG_SETMASK, mask, NULL);
    close(wake[0]);
    close(wake[1]);
    close(l->fd);
    dup2(fd, 0);
    dup2(fd, 1);
    if (fd > 1)
        close(fd);
    free(l->s);
}

/*
 * Accept what is waiting. Returns 1 in a child (the caller serves its
 * connection), 0 in the parent.
 */
static int accept_some(struct listener *l)
{
    char addr[INET6_ADDRSTRLEN], text[INET6_ADDRSTRLEN + 12];
    const char *limit;
    sigset_t all, mask;
    unsigned value, k;
    pid_t pid;
    int fd, link;

    for (k = 0; k < 64; k++) {
        fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                log_msg(LOG_ERR, "event=system-error reason=\"accept: %s\"", strerror(errno));
                poll(NULL, 0, 100); /* not a busy loop while it lasts */
            }
            return 0; /* EAGAIN, a client gone before we took it, a signal */
        }
        peer_of_socket(fd, addr, text);
        limit = over_limit(l, addr, &value);
        if (limit != NULL) {
            /* Not event=refused: a full listener says nothing against the client. */
            log_msg(LOG_WARNING, "event=limit peer=%s limit=%s value=%u", text, limit, value);
            l->refused++;
            close(fd);
            continue;
        }
        link = l->ops->link != NULL ? l->ops->link(l->ops->ctx) : -1;
        sigfillset(&all);
        sigprocmask(SIG_BLOCK, &all, &mask);
        pid = fork();
        if (pid == 0) {
            become_child(l, fd, &mask);
            l->link_fd = link;
            return 1;
        }
        sigprocmask(SIG_SETMASK, &mask, NULL);
        close(fd);
        if (link >= 0)
            close(link);
        if (pid < 0) {
            log_msg(LOG_ERR, "event=system-error peer=%s reason=\"fork: %s\"", text,
                    strerror(errno));
            continue;
        }
        l->accepted++;
        l->s[l->n].pid = pid;
        memcpy(l->s[l->n].addr, addr, sizeof addr);
        memcpy(l->s[l->n].text, text, sizeof text);
        l->n++;
    }
    return 0;
}

/* Stop listening: the socket goes back to the launcher as it came. */
static void stop_listening(struct listener *l)
{
    if (l->fd >= 0) {
        fcntl(l->fd, F_SETFL, l->fl);
        close(l->fd);
        l->fd = -1;
    }
}

/* The listening socket above fd 2, and fds 0 and 1 on /dev/null. */
static int take_socket(int lfd)
{
    int fd = fcntl(lfd, F_DUPFD_CLOEXEC, 3), null;

    if (fd < 0)
        return -1;
    if (lfd != fd)
        close(lfd);
    null = open("/dev/null", O_RDWR);
    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        if (null > 1)
            close(null);
    }
    return fd;
}

/* The parent's CPU time, for its share of each connection. */
static double cpu_ms(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000.0 +
           (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000.0;
}

int listener_run(const struct config *cfg, int lfd, const struct listener_ops *ops, bool *child,
                 int *link_fd)
{
    struct listener l = {.cfg = cfg, .ops = ops, .rate_second = -1, .link_fd = -1};
    long long idle_since = now_ms(), deadline = -1, kill_at = -1;
    unsigned i, forced = 0;
    bool stopping = false, busy;
    int status = 0;

    *child = false;
    l.s = calloc(cfg->max_connections, sizeof *l.s);
    l.fd = take_socket(lfd);
    if (l.s == NULL || l.fd < 0 || pipe2(wake, O_CLOEXEC | O_NONBLOCK) < 0) {
        log_msg(LOG_ERR, "event=system-error reason=\"listener: %s\"", strerror(errno));
        free(l.s);
        return EX_OSERR;
    }
    l.fl = fcntl(l.fd, F_GETFL);
    fcntl(l.fd, F_SETFL, l.fl | O_NONBLOCK);
    for (i = 0; i < N_CAUGHT; i++) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(caught[i], &sa, &l.old[i]);
    }
    log_msg(LOG_NOTICE, "event=listening max_connections=%u max_per_source=%u max_rate=%u",
            cfg->max_connections, cfg->max_per_source, cfg->max_rate);

    for (;;) {
        struct pollfd pfd[2] = {{.fd = wake[0], .events = POLLIN},
                                {.fd = l.fd, .events = POLLIN}};
        long long now, wait = -1;
        char drain[64];

        busy = l.n > 0;
        reap(&l);
        if (hup) {
            hup = 0;
            if (!stopping)
                ops->reload(ops->ctx);
        }
        now = now_ms();
        /* SIGTERM, or a listener that cannot serve any more (its key
         * holder is gone and will not start again): stop accepting. */
        if ((terms > 0 || l.failed) && !stopping) {
            if (l.failed)
                status = EX_OSERR;
            stopping = true;
            stop_listening(&l);
            deadline = now + cfg->timeout_close * 1000LL;
            log_msg(LOG_NOTICE, "event=stopping sessions=%u timeout=%u", l.n,
                    cfg->timeout_close);
        }
        /* Sessions past --timeout-close, or a second SIGTERM: each is told to
         * end (and logs its close line); one that does not within 5 s is killed. */
        if (stopping && l.n > 0 && forced == 0 && (terms > 1 || now >= deadline)) {
            forced = 1;
            signal_all(&l, SIGTERM);
            kill_at = now + 5000;
        }
        if (forced == 1 && l.n > 0 && now >= kill_at) {
            forced = 2;
            signal_all(&l, SIGKILL);
        }
        if (stopping && l.n == 0)
            break;
        /* Idle from the moment the last session ended (this pass reaped
         * it), not from the last time a busy listener woke up. */
        if (l.n > 0 || busy)
            idle_since = now;
        if (!stopping && cfg->exit_idle > 0 && l.n == 0 &&
            now - idle_since >= cfg->exit_idle * 1000LL) {
            log_msg(LOG_NOTICE, "event=exit-idle seconds=%u", cfg->exit_idle);
            break;
        }
        if (stopping && forced < 2)
            wait = (forced ? kill_at : deadline) - now;
        else if (!stopping && cfg->exit_idle > 0 && l.n == 0)
            wait = idle_since + cfg->exit_idle * 1000LL - now;
        if (wait < -1)
            wait = 0;
        if (poll(pfd, l.fd >= 0 ? 2 : 1, (int)(wait > 86400000 ? 86400000 : wait)) < 0 &&
            errno != EINTR) {
            log_msg(LOG_ERR, "event=system-error reason=\"poll: %s\"", strerror(errno));
            status = EX_OSERR;
            break;
        }
        while (read(wake[0], drain, sizeof drain) > 0)
            ;
        if (l.fd >= 0 && (pfd[1].revents & POLLIN) && accept_some(&l)) {
            *child = true;
            *link_fd = l.link_fd;
            return 0;
        }
    }
    stop_listening(&l);
    log_msg(LOG_NOTICE, "event=listener-exit connections=%llu limited=%llu cpu_ms=%.1f",
            l.accepted, l.refused, cpu_ms());
    free(l.s);
    return status;
}
