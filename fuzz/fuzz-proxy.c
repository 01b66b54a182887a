/*
 * fuzz-proxy.c: the PROXY header parser, proxy_parse(), and the builder.
 *
 * The input is what a balancer sends before the TLS handshake. Besides
 * "no crash, no over-read" (ASan), the harness checks the properties
 * peer_read_proxy() relies on, and aborts when one fails:
 *   - a complete header's length is within the input, and the same bytes
 *     cut at that length parse to the same length;
 *   - every shorter prefix of a complete header asks for more (0), never
 *     refuses: a header sent one byte at a time is accepted;
 *   - a parsed address is rebuilt by proxy_build() (v1 and v2) into a
 *     header that parses back to the same address and ports.
 */
#include "config.h"

#include "fuzz.h"
#include "proxy.h"

#include <stdlib.h>
#include <string.h>

static void same_addresses(const struct proxy_header *a, const struct proxy_header *b)
{
    if (strcmp(a->src, b->src) != 0 || strcmp(a->dst, b->dst) != 0 ||
        strcmp(a->src_port, b->src_port) != 0 || strcmp(a->dst_port, b->dst_port) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct proxy_header h, h2;
    unsigned char out[PROXY_HEADER_MAX];
    char err[256];
    size_t k;
    int n, m, v;

    n = proxy_parse(data, size, &h, err, sizeof err);
    if (n < 0 && err[0] == '\0')
        abort(); /* a refusal always says why */
    if (n <= 0)
        return 0;
    if ((size_t)n > size || n > (int)PROXY_HEADER_MAX)
        abort();
    if (proxy_parse(data, (size_t)n, &h2, err, sizeof err) != n)
        abort();
    for (k = 0; k < (size_t)n; k++)
        if (proxy_parse(data, k, &h2, err, sizeof err) != 0)
            abort();
    if (h.local)
        return 0;
    for (v = 1; v <= 2; v++) {
        m = proxy_build(v, h.src, h.src_port, h.dst, h.dst_port, NULL, out, sizeof out);
        if (m <= 0 || proxy_parse(out, (size_t)m, &h2, err, sizeof err) != m || h2.local)
            abort();
        same_addresses(&h, &h2);
    }
    return 0;
}
