/*
 * fuzz-stfilter.c: the filter of a --starttls session after TLS
 * (stfilter.c), fed as relay.c feeds it.
 *
 * The input's first byte picks the protocol (smtp, imap, pop3); then
 * chunks, each a header byte (bit 7: from the client, else from the
 * backend; bits 0-6: length - 1) and its bytes. After each chunk both
 * directions run until nothing moves, with buffers as bounded as the
 * relay's (a full one takes no more bytes, as the relay stops reading).
 * Besides "no crash, no over-read" (ASan, UBSan), it aborts when:
 *   - a call releases more than it holds, or grows a region past its room;
 *   - what reached the backend is not the client's bytes with some taken
 *     out (the filter only removes, towards the backend: whole STARTTLS
 *     lines).
 */
#include "config.h"

#include "fuzz.h"
#include "stfilter.h"

#include <stdlib.h>
#include <string.h>

#define BUF 4096

static unsigned char cin[1 << 16], tob[1 << 16];
static size_t ncin, ntob;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct stfilter f;
    static unsigned char cb[BUF], bb[BUF];
    size_t cn = 0, bn = 0, i = 1, j, k;

    if (size < 1)
        return 0;
    stfilter_init(&f, (enum starttls_proto)(1 + data[0] % 3));
    ncin = ntob = 0;
    while (i < size) {
        bool client = (data[i] & 0x80) != 0;

        k = (size_t)(data[i] & 0x7f) + 1;
        i++;
        if (k > size - i)
            k = size - i;
        if (client) {
            size_t take = k < BUF - cn ? k : BUF - cn;

            memcpy(cb + cn, data + i, take);
            memcpy(cin + ncin, data + i, take);
            cn += take;
            ncin += take;
        } else {
            size_t take = k < BUF - bn ? k : BUF - bn;

            memcpy(bb + bn, data + i, take);
            bn += take;
        }
        i += k;
        for (int r = 0; r < 4; r++) {
            size_t len = cn, rel = stfilter_client(&f, cb, &len);

            if (len > cn || rel > len)
                abort();
            memcpy(tob + ntob, cb, rel);
            ntob += rel;
            memmove(cb, cb + rel, len - rel);
            cn = len - rel;
            len = bn;
            rel = stfilter_backend(&f, bb, &len, BUF);
            if (len > BUF || rel > len)
                abort();
            memmove(bb, bb + rel, len - rel);
            bn = len - rel;
        }
    }
    /* tob must be a subsequence of cin. */
    for (i = 0, j = 0; i < ntob; i++, j++) {
        while (j < ncin && cin[j] != tob[i])
            j++;
        if (j == ncin)
            abort();
    }
    return 0;
}
