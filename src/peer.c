/*
 * peer.c: the client side of the connection, as the launcher handed it over.
 *
 * inetd, xinetd and systemd give an inet socket on fds 0 and 1 (one socket,
 * two descriptors); socat gives an AF_UNIX socketpair or two pipes and says
 * who the client is in its environment. Addresses from the environment are
 * accepted only as numeric literals, so a launcher's odd value never reaches
 * a log line or an access rule unchecked.
 */
#include "config.h"

#include "peer.h"
#include "proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <time.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* Store a numeric address (INET6_ADDRSTRLEN bytes), unmapping ::ffff:a.b.c.d.
 * Returns false if addr is not numeric. */
static bool set_addr(char *out, const char *addr)
{
    struct in6_addr a6;
    struct in_addr a4;

    if (inet_pton(AF_INET, addr, &a4) == 1) {
        inet_ntop(AF_INET, &a4, out, INET6_ADDRSTRLEN);
        return true;
    }
    if (inet_pton(AF_INET6, addr, &a6) != 1)
        return false;
    if (IN6_IS_ADDR_V4MAPPED(&a6))
        inet_ntop(AF_INET, &a6.s6_addr[12], out, INET6_ADDRSTRLEN);
    else
        inet_ntop(AF_INET6, &a6, out, INET6_ADDRSTRLEN);
    return true;
}

/* A port number (8 bytes), or "" when absent or not a number. */
static void set_port(char *out, const char *port)
{
    char *end;
    long v;

    out[0] = '\0';
    if (port == NULL || *port == '\0')
        return;
    v = strtol(port, &end, 10);
    if (*end == '\0' && v > 0 && v < 65536)
        snprintf(out, 8, "%ld", v);
}

/* The peer's (peer = true) or our own address of the socket on fd. */
static bool from_socket(int fd, char *addr, char *portbuf, bool peer)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char host[INET6_ADDRSTRLEN], port[8];
    const void *a;
    int r = peer ? getpeername(fd, (struct sockaddr *)&ss, &len)
                 : getsockname(fd, (struct sockaddr *)&ss, &len);

    if (r < 0)
        return false;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&ss;
        a = &s4->sin_addr;
        snprintf(port, sizeof port, "%u", (unsigned)ntohs(s4->sin_port));
    } else if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&ss;
        a = &s6->sin6_addr;
        snprintf(port, sizeof port, "%u", (unsigned)ntohs(s6->sin6_port));
    } else {
        return false;
    }
    if (inet_ntop(ss.ss_family, a, host, sizeof host) == NULL || !set_addr(addr, host))
        return false;
    set_port(portbuf, port);
    return true;
}

static bool from_env(char *addr, char *port, const char *addr_var, const char *port_var)
{
    const char *value = getenv(addr_var);

    if (value == NULL || !set_addr(addr, value))
        return false;
    set_port(port, getenv(port_var));
    return true;
}

/* "1.2.3.4:5", "[::1]:5", or "unknown" when addr is NULL. */
static void set_text(char *text, const char *addr, const char *port)
{
    size_t len = INET6_ADDRSTRLEN + 12;

    if (addr == NULL)
        snprintf(text, len, "unknown");
    else if (strchr(addr, ':') != NULL)
        snprintf(text, len, "[%s]:%s", addr, port[0] ? port : "0");
    else
        snprintf(text, len, "%s:%s", addr, port[0] ? port : "0");
}

void peer_identify(struct peer *p)
{
    struct stat st;
    int type = 0;
    socklen_t len = sizeof type;
    bool inet = false;

    memset(p, 0, sizeof *p);
    p->kind = PEER_OTHER;
    if (fstat(0, &st) == 0) {
        if (S_ISFIFO(st.st_mode))
            p->kind = PEER_PIPES;
        else if (S_ISSOCK(st.st_mode) && getsockopt(0, SOL_SOCKET, SO_TYPE, &type, &len) == 0)
            p->kind = PEER_UNIX; /* until getpeername says inet */
    }
    if (p->kind == PEER_UNIX) {
        errno = 0;
        inet = from_socket(0, p->addr, p->port, true);
        /* A TCP client that already reset: getpeername has nothing to say. */
        p->gone = !inet && errno == ENOTCONN;
    }
    if (inet) {
        p->kind = PEER_TCP;
        p->known = true;
        p->source = "socket";
        from_socket(0, p->local_addr, p->local_port, false);
    } else {
        static const char *const vars[][2] = {{"REMOTE_HOST", "REMOTE_PORT"},
                                              {"SOCAT_PEERADDR", "SOCAT_PEERPORT"},
                                              {"TCPREMOTEIP", "TCPREMOTEPORT"}};
        size_t i;

        for (i = 0; i < sizeof vars / sizeof vars[0] && !p->known; i++)
            if (from_env(p->addr, p->port, vars[i][0], vars[i][1])) {
                p->known = true;
                p->source = vars[i][0];
            }
        if (!from_env(p->local_addr, p->local_port, "SOCAT_SOCKADDR", "SOCAT_SOCKPORT"))
            from_env(p->local_addr, p->local_port, "TCPLOCALIP", "TCPLOCALPORT");
    }
    set_text(p->text, p->known ? p->addr : NULL, p->port);
}

void peer_of_socket(int fd, char *addr, char *text)
{
    char port[8];
    bool known = from_socket(fd, addr, port, true);

    if (!known)
        addr[0] = '\0';
    set_text(text, known ? addr : NULL, port);
}

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);

    if (fl < 0)
        return -1;
    return (fl & O_NONBLOCK) ? 0 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

int peer_prepare(const struct peer *p)
{
    int one = 1;

    if (set_nonblock(0) < 0 || set_nonblock(1) < 0)
        return -1;
    if (p->kind == PEER_TCP)
        (void)setsockopt(1, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return 0;
}

void peer_linger(const struct peer *p, int timeout_ms)
{
    struct timespec start, now;
    char drop[4096];
    int left = timeout_ms;

    if (p->kind != PEER_TCP && p->kind != PEER_UNIX)
        return;
    if (shutdown(1, SHUT_WR) < 0)
        return;
    clock_gettime(CLOCK_MONOTONIC, &start);
    while (left > 0) {
        struct pollfd pfd = {.fd = 0, .events = POLLIN};
        ssize_t r;

        if (poll(&pfd, 1, left) <= 0)
            return;
        r = read(0, drop, sizeof drop);
        if (r <= 0 && !(r < 0 && (errno == EAGAIN || errno == EINTR)))
            return;
        clock_gettime(CLOCK_MONOTONIC, &now);
        left = timeout_ms - (int)((now.tv_sec - start.tv_sec) * 1000 +
                                  (now.tv_nsec - start.tv_nsec) / 1000000);
    }
}

/*
 * After a header from the balancer about itself: does it close
 * or reset before a byte of TLS? Then it was a health check. Waits at most
 * ms milliseconds; the byte that comes is left in the socket.
 */
static bool closes_unused(long long ms)
{
    struct pollfd pfd = {.fd = 0, .events = POLLIN};
    char b;

    if (ms <= 0 || poll(&pfd, 1, (int)ms) <= 0)
        return false;
    return recv(0, &b, 1, MSG_PEEK) == 0 || errno == ECONNRESET;
}

int peer_read_proxy(struct peer *p, unsigned timeout_sec, unsigned char *rest, size_t *restlen,
                    char *err, size_t errlen)
{
    struct proxy_header h;
    struct timespec start, now;
    long long left = (long long)timeout_sec * 1000;
    size_t have = 0;
    int n = 0;

    clock_gettime(CLOCK_MONOTONIC, &start);
    /* Read what comes; the parser says when the header is complete. */
    while (n == 0) {
        struct pollfd pfd = {.fd = 0, .events = POLLIN};
        ssize_t r;

        if (left <= 0 || poll(&pfd, 1, (int)left) == 0) {
            snprintf(err, errlen, "proxy header: %s within %u seconds",
                     have ? "not complete" : "none", timeout_sec);
            return -1;
        }
        r = read(0, rest + have, PROXY_HEADER_MAX - have);
        if (r == 0) {
            if (have == 0)
                return 0;
            snprintf(err, errlen, "proxy header: truncated (the connection closed)");
            return -1;
        }
        if (r > 0) {
            have += (size_t)r;
            n = proxy_parse(rest, have, &h, err, errlen);
        } else if (errno == ECONNRESET && have == 0) {
            return 0; /* a health check that closes with a reset */
        } else if (errno != EAGAIN && errno != EINTR) {
            snprintf(err, errlen, "proxy header: %s", strerror(errno));
            return -1;
        }
        if (n == 0 && have == PROXY_HEADER_MAX) {
            snprintf(err, errlen, "oversized header");
            n = -1;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        left = (long long)timeout_sec * 1000 -
               ((now.tv_sec - start.tv_sec) * 1000LL + (now.tv_nsec - start.tv_nsec) / 1000000);
    }
    if (n < 0) {
        char why[256];

        snprintf(why, sizeof why, "%s", err);
        snprintf(err, errlen, "proxy header: %s", why);
        return -1;
    }
    /* What followed the header is the client's: keep it for TLS. */
    *restlen = have - (size_t)n;
    memmove(rest, rest + n, *restlen);
    /* A balancer speaking for itself (LOCAL, or a v1 header with its own
     * address, as HAProxy's checks send them) that then closes: a check. */
    if ((h.local || strcmp(h.src, p->addr) == 0) && *restlen == 0 && closes_unused(left))
        return 0;
    if (h.local)
        return 1;
    memcpy(p->via, p->text, sizeof p->via);
    snprintf(p->addr, sizeof p->addr, "%s", h.src);
    snprintf(p->port, sizeof p->port, "%s", h.src_port);
    snprintf(p->local_addr, sizeof p->local_addr, "%s", h.dst);
    snprintf(p->local_port, sizeof p->local_port, "%s", h.dst_port);
    p->known = true;
    p->source = "proxy";
    set_text(p->text, p->addr, p->port);
    return 1;
}
