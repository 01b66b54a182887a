/*
 * peer.h: what is on fd 0/1 and who is at the other end.
 */
#ifndef TLSFILTER_PEER_H
#define TLSFILTER_PEER_H

#include <netinet/in.h>
#include <stdbool.h>

enum peer_kind {
    PEER_TCP,   /* an inet socket: xinetd, inetd, systemd, socat nofork */
    PEER_UNIX,  /* an AF_UNIX socketpair: socat EXEC: */
    PEER_PIPES, /* two pipes: socat EXEC:...,pipes */
    PEER_OTHER  /* a terminal, a file: works, but nobody's address */
};

struct peer {
    enum peer_kind kind;
    bool known;                        /* addr/port hold a numeric address */
    bool gone;                         /* a TCP socket whose client has reset already */
    const char *source;                /* "socket", or the environment variable */
    char addr[INET6_ADDRSTRLEN];       /* numeric, IPv4-mapped addresses unmapped */
    char port[8];                      /* numeric, or "" when the launcher gave none */
    char text[INET6_ADDRSTRLEN + 12];  /* "1.2.3.4:5", "[::1]:5" or "unknown" */
    char local_addr[INET6_ADDRSTRLEN]; /* our end, numeric, or "" */
    char local_port[8];
    char via[INET6_ADDRSTRLEN + 12]; /* --accept-proxy: the balancer, as text; or "" */
};

/*
 * Find out what fd 0 is and the client's address: from the socket when it
 * is an inet socket, else from the launcher's environment (REMOTE_HOST,
 * SOCAT_PEERADDR/SOCAT_PEERPORT, TCPREMOTEIP/TCPREMOTEPORT), accepting only
 * numeric addresses. Never fails: an unknown peer is "unknown".
 */
void peer_identify(struct peer *p);

/*
 * The client of an accepted socket fd, as the listener sees it before a
 * child takes it: addr (INET6_ADDRSTRLEN, numeric, "" if unknown) and text
 * (INET6_ADDRSTRLEN + 12, as struct peer's).
 */
void peer_of_socket(int fd, char *addr, char *text);

/*
 * Make fds 0 and 1 non-blocking and, on TCP, turn Nagle off. 0 or -1.
 */
int peer_prepare(const struct peer *p);

/*
 * After a refusal or a failed handshake: send our FIN, then read and drop
 * what the client still sends, for at most timeout_ms or until its EOF.
 * Closing with unread input would make the kernel send a reset, which can
 * reach the client before the TLS alert that says why.
 */
void peer_linger(const struct peer *p, int timeout_ms);

/*
 * --accept-proxy: read a PROXY header (v1 or v2) from fd 0 within timeout_sec
 * seconds. Bytes read past the header are stored in rest (*restlen of them;
 * rest holds PROXY_HEADER_MAX bytes): they belong to the TLS handshake.
 * Returns 1 with the header's addresses made the peer's (the connection's
 * own, in p->via), 0 when the connection closed or was reset before its
 * first byte, or right after a header about the balancer itself (LOCAL, or
 * its own address: a balancer's health check), or
 * -1 with a reason in err.
 */
int peer_read_proxy(struct peer *p, unsigned timeout_sec, unsigned char *rest, size_t *restlen,
                    char *err, size_t errlen);

#endif
