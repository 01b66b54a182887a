/*
 * proxy.c: PROXY protocol headers, versions 1 and 2 (HAProxy's
 * proxy-protocol.txt): parsed from a load balancer, built for a backend.
 *
 * The parser is strict where the specification is: v1 is one line of at most
 * 107 bytes, single spaces, numeric addresses of the family named, decimal
 * ports; v2 has its 12-byte signature, version 2, command LOCAL or PROXY, and
 * a length that must fit PROXY_V2_MAX_LEN. It answers "need more" only while
 * the bytes seen can still begin a valid header, so that a TLS ClientHello or
 * a plaintext command is refused at its first bytes, not after a timeout.
 */
#include "config.h"

#include "proxy.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const unsigned char v2_signature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                               0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

enum {
    PP2_TYPE_ALPN = 0x01,
    PP2_TYPE_AUTHORITY = 0x02,
    PP2_TYPE_SSL = 0x20,
    PP2_SUBTYPE_SSL_VERSION = 0x21,
    PP2_SUBTYPE_SSL_CN = 0x22,
    PP2_SUBTYPE_SSL_CIPHER = 0x23,
    PP2_SUBTYPE_SSL_SIG_ALG = 0x24,
    PP2_SUBTYPE_SSL_KEY_ALG = 0x25,
    PP2_CLIENT_SSL = 0x01,
    PP2_CLIENT_CERT_CONN = 0x02,
    PP2_CLIENT_CERT_SESS = 0x04
};

static int fail(char *err, size_t errlen, const char *what)
{
    snprintf(err, errlen, "%s", what);
    return -1;
}

/* Numeric text of a binary address; IPv4-mapped IPv6 is written as IPv4. */
static void addr_text(int af, const unsigned char *bin, char *out)
{
    if (af == AF_INET6 && IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)(const void *)bin))
        inet_ntop(AF_INET, bin + 12, out, INET6_ADDRSTRLEN);
    else
        inet_ntop(af, bin, out, INET6_ADDRSTRLEN);
}

/* A v1 port: decimal, 0..65535, no sign, no leading zero. */
static bool port_ok(const char *s)
{
    size_t n = strlen(s), i;

    if (n == 0 || n > 5 || (s[0] == '0' && n > 1))
        return false;
    for (i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return atol(s) <= 65535;
}

static int parse_v1(const unsigned char *buf, size_t len, struct proxy_header *h, char *err,
                    size_t errlen)
{
    char line[PROXY_V1_MAX + 1], *tok[7], *p;
    unsigned char bin[16];
    size_t i, n = 0;
    int af;

    /* The line: printable ASCII up to the CRLF, within 107 bytes. */
    for (i = 0; i < len && i < PROXY_V1_MAX; i++) {
        if (buf[i] == '\r')
            break;
        if (buf[i] < 0x20 || buf[i] > 0x7e)
            return fail(err, errlen, "v1: a control character or non-ASCII byte");
    }
    /* i is where the CR is, or how far we could look. */
    if (i == PROXY_V1_MAX || (i < len && i + 2 > PROXY_V1_MAX))
        return fail(err, errlen, "v1: no CRLF within 107 bytes");
    if (i == len || i + 1 == len)
        return 0;
    if (buf[i + 1] != '\n')
        return fail(err, errlen, "v1: CR without LF");
    memcpy(line, buf, i);
    line[i] = '\0';

    /* Fields separated by exactly one space. */
    for (p = line; n < 7;) {
        tok[n++] = p;
        p = strchr(p, ' ');
        if (p == NULL)
            break;
        *p++ = '\0';
    }
    if (strcmp(tok[0], "PROXY") != 0 || n < 2)
        return fail(err, errlen, "v1: malformed");
    memset(h, 0, sizeof *h);
    h->version = 1;
    if (strcmp(tok[1], "UNKNOWN") == 0) {
        /* Whatever follows is to be ignored (the specification, 2.1). */
        h->local = true;
        return (int)i + 2;
    }
    if (strcmp(tok[1], "TCP4") == 0)
        af = AF_INET;
    else if (strcmp(tok[1], "TCP6") == 0)
        af = AF_INET6;
    else
        return fail(err, errlen, "v1: protocol is not TCP4, TCP6 or UNKNOWN");
    if (n != 6 || p != NULL)
        return fail(err, errlen, "v1: expected four fields after the protocol");
    if (inet_pton(af, tok[2], bin) != 1)
        return fail(err, errlen, "v1: bad source address");
    addr_text(af, bin, h->src);
    if (inet_pton(af, tok[3], bin) != 1)
        return fail(err, errlen, "v1: bad destination address");
    addr_text(af, bin, h->dst);
    if (!port_ok(tok[4]) || !port_ok(tok[5]))
        return fail(err, errlen, "v1: bad port");
    snprintf(h->src_port, sizeof h->src_port, "%s", tok[4]);
    snprintf(h->dst_port, sizeof h->dst_port, "%s", tok[5]);
    return (int)i + 2;
}

static int parse_v2(const unsigned char *buf, size_t len, struct proxy_header *h, char *err,
                    size_t errlen)
{
    size_t body, need;
    int cmd, af;

    if (len < 16)
        return 0;
    if (buf[12] >> 4 != 2)
        return fail(err, errlen, "v2: version is not 2");
    cmd = buf[12] & 0x0f;
    if (cmd > 1)
        return fail(err, errlen, "v2: command is not LOCAL or PROXY");
    body = (size_t)buf[14] << 8 | buf[15];
    if (body > PROXY_V2_MAX_LEN)
        return fail(err, errlen, "v2: oversized header");
    switch (buf[13]) {
    case 0x11: /* TCP over IPv4 */
        af = AF_INET;
        need = 12;
        break;
    case 0x21: /* TCP over IPv6 */
        af = AF_INET6;
        need = 36;
        break;
    case 0x00: /* AF_UNSPEC */
    case 0x31: /* a Unix stream socket: no address worth passing on */
        af = AF_UNSPEC;
        need = 0;
        break;
    default:
        if (cmd == 0) { /* LOCAL: the family is to be ignored */
            af = AF_UNSPEC;
            need = 0;
            break;
        }
        return fail(err, errlen, "v2: not a TCP stream");
    }
    if (body < need && cmd == 1)
        return fail(err, errlen, "v2: address block shorter than its family");
    if (len < 16 + body)
        return 0;
    memset(h, 0, sizeof *h);
    h->version = 2;
    if (cmd == 0 || af == AF_UNSPEC) {
        h->local = true;
        return (int)(16 + body);
    }
    {
        size_t alen = af == AF_INET ? 4 : 16;
        const unsigned char *a = buf + 16;

        addr_text(af, a, h->src);
        addr_text(af, a + alen, h->dst);
        snprintf(h->src_port, sizeof h->src_port, "%u",
                 (unsigned)(a[2 * alen] << 8 | a[2 * alen + 1]));
        snprintf(h->dst_port, sizeof h->dst_port, "%u",
                 (unsigned)(a[2 * alen + 2] << 8 | a[2 * alen + 3]));
    }
    return (int)(16 + body);
}

int proxy_parse(const unsigned char *buf, size_t len, struct proxy_header *h, char *err,
                size_t errlen)
{
    size_t n;

    if (len == 0)
        return 0;
    n = len < 12 ? len : 12;
    if (memcmp(buf, v2_signature, n) == 0)
        return parse_v2(buf, len, h, err, errlen);
    n = len < 6 ? len : 6;
    if (memcmp(buf, "PROXY ", n) == 0)
        return n < 6 ? 0 : parse_v1(buf, len, h, err, errlen);
    return fail(err, errlen,
                buf[0] == 0x16 ? "a TLS handshake where a PROXY header was required"
                               : "no PROXY header");
}

/* --- building ---------------------------------------------------------- */

/* src/dst as binary of one family (IPv4 mapped when the two differ). */
static int both_addrs(const char *src, const char *dst, unsigned char s[16],
                      unsigned char d[16])
{
    int fs, fd;

    if (src == NULL || dst == NULL)
        return AF_UNSPEC;
    fs = inet_pton(AF_INET, src, s) == 1    ? AF_INET
         : inet_pton(AF_INET6, src, s) == 1 ? AF_INET6
                                            : 0;
    fd = inet_pton(AF_INET, dst, d) == 1    ? AF_INET
         : inet_pton(AF_INET6, dst, d) == 1 ? AF_INET6
                                            : 0;
    if (fs == 0 || fd == 0)
        return AF_UNSPEC;
    if (fs == fd)
        return fs;
    /* Mixed: map the IPv4 one into ::ffff:0:0/96. */
    {
        unsigned char *v4 = fs == AF_INET ? s : d;
        unsigned char tmp[4];

        memcpy(tmp, v4, 4);
        memset(v4, 0, 10);
        v4[10] = v4[11] = 0xff;
        memcpy(v4 + 12, tmp, 4);
    }
    return AF_INET6;
}

static unsigned port_number(const char *s)
{
    long v = s != NULL ? strtol(s, NULL, 10) : 0;

    return v > 0 && v < 65536 ? (unsigned)v : 0;
}

/* Append a TLV; returns the new length, or 0 when it does not fit. */
static size_t put_tlv(unsigned char *out, size_t at, size_t cap, unsigned type,
                      const void *value, size_t len)
{
    if (len > 0xffff || at + 3 + len > cap)
        return 0;
    out[at] = (unsigned char)type;
    out[at + 1] = (unsigned char)(len >> 8);
    out[at + 2] = (unsigned char)len;
    if (len > 0)
        memcpy(out + at + 3, value, len);
    return at + 3 + len;
}

/* A string TLV when the string is set; 0 when it does not fit. */
static size_t put_str(unsigned char *out, size_t at, size_t cap, unsigned type, const char *s)
{
    return s == NULL || *s == '\0' ? at : put_tlv(out, at, cap, type, s, strlen(s));
}

static int build_v2(int af, const unsigned char *s, const unsigned char *d, unsigned sport,
                    unsigned dport, const struct proxy_tls *tls, unsigned char *out,
                    size_t outlen)
{
    unsigned char ssl[512];
    size_t at = 16, n;
    size_t alen = af == AF_INET ? 4 : af == AF_INET6 ? 16 : 0;

    if (outlen < 16 + 2 * alen + 4)
        return -1;
    memcpy(out, v2_signature, 12);
    out[12] = 0x21; /* version 2, PROXY */
    out[13] = af == AF_INET ? 0x11 : af == AF_INET6 ? 0x21 : 0x00;
    if (alen > 0) {
        memcpy(out + at, s, alen);
        memcpy(out + at + alen, d, alen);
        at += 2 * alen;
        out[at++] = (unsigned char)(sport >> 8);
        out[at++] = (unsigned char)sport;
        out[at++] = (unsigned char)(dport >> 8);
        out[at++] = (unsigned char)dport;
    }
    if (tls != NULL) {
        uint32_t verify = htonl(tls->verified && (tls->cert_conn || tls->cert_sess) ? 0 : 1);

        at = put_str(out, at, outlen, PP2_TYPE_ALPN, tls->alpn);
        if (at > 0)
            at = put_str(out, at, outlen, PP2_TYPE_AUTHORITY, tls->sni);
        /* PP2_TYPE_SSL: client flags, verify result, then sub-TLVs. */
        ssl[0] = PP2_CLIENT_SSL | (tls->cert_conn ? PP2_CLIENT_CERT_CONN : 0) |
                 (tls->cert_sess ? PP2_CLIENT_CERT_SESS : 0);
        memcpy(ssl + 1, &verify, 4);
        n = put_str(ssl, 5, sizeof ssl, PP2_SUBTYPE_SSL_VERSION, tls->version);
        if (n > 0)
            n = put_str(ssl, n, sizeof ssl, PP2_SUBTYPE_SSL_CN, tls->cn);
        if (n > 0)
            n = put_str(ssl, n, sizeof ssl, PP2_SUBTYPE_SSL_CIPHER, tls->cipher);
        if (n > 0)
            n = put_str(ssl, n, sizeof ssl, PP2_SUBTYPE_SSL_SIG_ALG, tls->sig_alg);
        if (n > 0)
            n = put_str(ssl, n, sizeof ssl, PP2_SUBTYPE_SSL_KEY_ALG, tls->key_alg);
        if (n == 0 || at == 0)
            return -1;
        at = put_tlv(out, at, outlen, PP2_TYPE_SSL, ssl, n);
        if (at == 0)
            return -1;
    }
    out[14] = (unsigned char)((at - 16) >> 8);
    out[15] = (unsigned char)(at - 16);
    return (int)at;
}

int proxy_build(int version, const char *src, const char *src_port, const char *dst,
                const char *dst_port, const struct proxy_tls *tls, unsigned char *out,
                size_t outlen)
{
    unsigned char s[16], d[16];
    char st[INET6_ADDRSTRLEN], dt[INET6_ADDRSTRLEN];
    int af = both_addrs(src, dst, s, d), n;

    if (version == 2)
        return build_v2(af, s, d, port_number(src_port), port_number(dst_port), tls, out,
                        outlen);
    if (af == AF_UNSPEC) {
        n = snprintf((char *)out, outlen, "PROXY UNKNOWN\r\n");
    } else {
        /* inet_ntop, not the input: a mapped address is written in full. */
        inet_ntop(af, s, st, sizeof st);
        inet_ntop(af, d, dt, sizeof dt);
        n = snprintf((char *)out, outlen, "PROXY %s %s %s %u %u\r\n",
                     af == AF_INET ? "TCP4" : "TCP6", st, dt, port_number(src_port),
                     port_number(dst_port));
    }
    return n > 0 && (size_t)n < outlen ? n : -1;
}

/* --- --proxy-from ------------------------------------------------------- */

/* ADDR[/PREFIX] into binary; the family, or 0 when spec is not valid. */
static int parse_net(const char *spec, unsigned char bin[16], unsigned *prefix)
{
    char addr[INET6_ADDRSTRLEN + 8];
    const char *slash = strchr(spec, '/');
    size_t n = slash ? (size_t)(slash - spec) : strlen(spec);
    int af;

    if (n == 0 || n >= sizeof addr)
        return 0;
    memcpy(addr, spec, n);
    addr[n] = '\0';
    if (inet_pton(AF_INET, addr, bin) == 1)
        af = AF_INET;
    else if (inet_pton(AF_INET6, addr, bin) == 1)
        af = AF_INET6;
    else
        return 0;
    *prefix = af == AF_INET ? 32 : 128;
    if (slash != NULL) {
        char *end;
        long v;

        if (slash[1] < '0' || slash[1] > '9')
            return 0;
        v = strtol(slash + 1, &end, 10);
        if (*end != '\0' || v < 0 || v > (long)*prefix)
            return 0;
        *prefix = (unsigned)v;
    }
    return af;
}

bool proxy_net_valid(const char *spec)
{
    unsigned char bin[16];
    unsigned prefix;

    return parse_net(spec, bin, &prefix) != 0;
}

bool proxy_net_match(const char *spec, const char *addr)
{
    unsigned char net[16], a[16];
    unsigned prefix, i;
    int af = parse_net(spec, net, &prefix), aaf;

    if (af == 0 || addr == NULL)
        return false;
    if (inet_pton(AF_INET, addr, a) == 1) {
        aaf = AF_INET;
    } else if (inet_pton(AF_INET6, addr, a) == 1) {
        aaf = AF_INET6;
    } else {
        return false;
    }
    if (af == AF_INET6 && aaf == AF_INET) {
        /* An IPv4 client against an IPv6 rule: as ::ffff:a.b.c.d. */
        memmove(a + 12, a, 4);
        memset(a, 0, 10);
        a[10] = a[11] = 0xff;
    } else if (af == AF_INET && aaf == AF_INET6) {
        if (!IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)(const void *)a))
            return false;
        memmove(a, a + 12, 4);
    }
    for (i = 0; i < prefix / 8; i++)
        if (net[i] != a[i])
            return false;
    if (prefix % 8 != 0) {
        unsigned char mask = (unsigned char)(0xff << (8 - prefix % 8));
        if ((net[i] & mask) != (a[i] & mask))
            return false;
    }
    return true;
}
