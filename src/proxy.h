/*
 * proxy.h: the PROXY protocol (HAProxy's proxy-protocol.txt, versions 1
 * and 2): the header tlsfilter sends to its backend (--proxy-protocol) and
 * the one it reads from a load balancer (--accept-proxy).
 *
 * Pure functions over byte buffers: no I/O, no allocation, so that the
 * parser can be fuzzed on its own (fuzz/fuzz-proxy.c).
 */
#ifndef TLSFILTER_PROXY_H
#define TLSFILTER_PROXY_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>

/* v1 headers are at most 107 bytes with the CRLF (the specification's limit). */
#define PROXY_V1_MAX 107
/* v2: the 16-byte fixed part and at most this much of addresses and TLVs.
 * HAProxy's own headers stay well under it; more is refused as oversized. */
#define PROXY_V2_MAX_LEN 1024
/* Enough for any header we accept. */
#define PROXY_HEADER_MAX (16 + PROXY_V2_MAX_LEN)

/* A parsed header. */
struct proxy_header {
    int version;                /* 1 or 2 */
    bool local;                 /* v2 LOCAL, or v1 UNKNOWN / an unknown family:
                                   the connection's own addresses stand */
    char src[INET6_ADDRSTRLEN]; /* the client: numeric, IPv4-mapped unmapped */
    char src_port[8];
    char dst[INET6_ADDRSTRLEN]; /* the address the client connected to */
    char dst_port[8];
};

/*
 * Parse the header at the start of buf[0..len). Returns the header's length
 * (> 0) once it is complete, 0 when the bytes so far are a valid beginning
 * and more are needed, or -1 with a reason in err when they cannot begin a
 * valid header (not a PROXY header at all, malformed, oversized).
 */
int proxy_parse(const unsigned char *buf, size_t len, struct proxy_header *h, char *err,
                size_t errlen);

/* The TLS facts a v2 header carries (PP2_TYPE_SSL and friends). */
struct proxy_tls {
    const char *version; /* "TLSv1.3" */
    const char *cipher;  /* "TLS_AES_256_GCM_SHA384" */
    const char *sig_alg; /* our certificate's signature algorithm */
    const char *key_alg; /* our certificate's key: "EC256", "RSA2048" */
    const char *cn;      /* the client certificate's CN, or NULL */
    const char *sni;     /* the server name the client asked for, or NULL */
    const char *alpn;    /* the protocol agreed on, or NULL */
    bool cert_conn;      /* a client certificate was presented on this connection */
    bool cert_sess;      /* ... or in the session this one resumed */
    bool verified;       /* and it verified */
};

/*
 * Build a header: version 1 or 2, for a client at src:src_port that
 * connected to dst:dst_port (numeric addresses; NULL or "" when unknown,
 * which gives "PROXY UNKNOWN" or v2's AF_UNSPEC). Mixed families are sent
 * as IPv6 with the IPv4 address mapped. tls is used by v2 only (may be
 * NULL). Returns the length written to out, or -1 when it does not fit.
 */
int proxy_build(int version, const char *src, const char *src_port, const char *dst,
                const char *dst_port, const struct proxy_tls *tls, unsigned char *out,
                size_t outlen);

/* Is spec a valid ADDR[/PREFIX] for --proxy-from? */
bool proxy_net_valid(const char *spec);

/* Is the numeric address addr inside ADDR[/PREFIX]? (IPv4 in ::ffff:0:0/96 too.) */
bool proxy_net_match(const char *spec, const char *addr);

#endif
