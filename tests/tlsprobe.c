/*
 * tlsprobe.c: a record-level TLS 1.3/1.2 client that sends one malformed or
 * unusual thing to a server and reports, on one line, how the server answers
 * (tests of the record layer and of post-handshake messages).
 *
 * Like tests/tlsflood.c: a normal GnuTLS handshake (AES-128-GCM only, server
 * certificate not checked, SNI "localhost"), then the records that GnuTLS
 * would never send are sealed here with the client's write keys taken from
 * gnutls_record_get_state() and written raw on the socket:
 *   TLS 1.3: inner plaintext = data || type || zero padding, outer type 23,
 *            nonce = iv XOR seq, the 5-byte header is the additional data;
 *   TLS 1.2: nonce = 4-byte salt || 8-byte explicit nonce (the sequence
 *            number, sent in front of the ciphertext), additional data =
 *            seq || type || 03 03 || data length.
 * After each record sealed here, GnuTLS's write sequence number is moved on
 * with gnutls_record_set_state(), so that GnuTLS can go on sending (its
 * Finished after appdata-in-handshake, close_notify). Reading always goes
 * through gnutls_record_recv().
 *
 *   tlsprobe [-2|-3] [-n BYTES] [-W SECS] [-H HASHFILE] [-K RECS] [-c] CASE PORT
 *     -2, -3      TLS 1.2 or TLS 1.3 (the default), on 127.0.0.1:PORT
 *     -n BYTES    first send BYTES bytes of application data through
 *                 gnutls_record_send(), bytes i % 251 (tlsflood's pattern),
 *                 and wait (at most 1 s) until as many have been read back
 *     -W SECS     after CASE, read what the server sends for at most SECS
 *                 seconds (default 5), until it closes or alerts
 *     -H FILE     write the SHA-256 (hex) of all application data sent to FILE
 *     -K RECS     ku-every: records between two KeyUpdates (default 100)
 *     -c          after CASE, send close_notify, so that an echoing server
 *                 can end with close_notify instead of a timeout
 * CASE (all after the handshake, except appdata-in-handshake*):
 *   none                  nothing more (control)
 *   ku-bad-value          KeyUpdate with request_update = 5 (1.3)
 *   ku-bad-length         KeyUpdate with a 2-byte body (1.3)
 *   ku-wrong-type         a ClientHello (type 1) with a plausible TLS 1.3 body
 *                         as a post-handshake message (under 1.2: a
 *                         renegotiation attempt)
 *   ku-flood              20 valid KeyUpdates (update_not_requested) at once,
 *                         through gnutls_session_key_update() (1.3)
 *   ku-split              a KeyUpdate split over two handshake records with an
 *                         application-data record "hello" between them
 *   ccs-after-finished    1.3: a plaintext ChangeCipherSpec 14 03 03 00 01 01;
 *                         1.2: a sealed ChangeCipherSpec record (content 01)
 *   alert-empty, alert-short, alert-long
 *                         a sealed alert record of 0, 1 (01) or 3 (01 00 00)
 *                         bytes
 *   appdata-in-handshake  a zero-length application-data record in the middle
 *                         of the handshake. 1.3: sealed with the client's
 *                         handshake-traffic keys just before its Finished
 *                         (hook on Finished, PRE); 1.2: plaintext, just before
 *                         the client's ChangeCipherSpec (hook on it, PRE).
 *                         Then the client waits up to SECS for the server
 *                         (answer=, answer_ms=, first_record=), then lets the
 *                         handshake go on and reads through GnuTLS.
 *   appdata-in-handshake-pad
 *                         1.3: the same with 16 bytes of padding
 *   appdata-in-handshake-late
 *                         1.2: the client's ChangeCipherSpec (written here),
 *                         then a zero-length application-data record sealed
 *                         with the new keys, where the Finished should come;
 *                         then nothing (the handshake is abandoned after the
 *                         wait). GnuTLS skips empty TLS 1.2 records.
 *                         answer=eof|reset|bytes|none; a plaintext alert from
 *                         the server is decoded from the peeked bytes.
 *   ku-requested          gnutls_session_key_update(GNUTLS_KU_PEER), then
 *                         1000 bytes (1.3, control): key_updated=yes|no (the
 *                         client's read key changed: the server updated its
 *                         keys), recv_sha256=
 *   ku-every              20000 records of 16 bytes (the pattern goes on), a
 *                         KeyUpdate after every RECS records (199 with the
 *                         default 100), at most one per 150 ms: GnuTLS refuses
 *                         a 9th KeyUpdate within a 1000 ms window
 *                         (lib/tls13/key_update.c; application data does not
 *                         reset the window), so the default takes ~30 s and
 *                         -K 1000 ~3 s (1.3, control). Also key_updates=,
 *                         recv_sha256= (of what was read back).
 * Output, one line on stdout:
 *   handshake=ok|failed version=TLS1.3 case=CASE sent=N received=N
 *   end=close_notify|alert|eof|reset|timeout|error alert=NAME|- (the name as
 *   RFC 8446 writes it: unexpected_message)
 *   alert_level=fatal|warning|- elapsed_ms=N [case-specific keys]
 * sent and received count application-data bytes; elapsed_ms runs from the
 * start of CASE to the end of reading. alert_level is the level byte of the
 * record as GnuTLS logged it (GnuTLS itself reports every TLS 1.3 alert as
 * fatal). write_error= is the first error of a raw write or of a GnuTLS send,
 * if any. The server's application data is read while sending, so that an
 * echoing server never blocks.
 * Exit status: 0 when it ran, 1 on a set-up failure (connection, handshake
 * except in appdata-in-handshake*, keys), 2 on usage.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define TAG_LEN 16
#define TYPE_CCS 20
#define TYPE_ALERT 21
#define TYPE_HANDSHAKE 22
#define TYPE_DATA 23
#define KU_SPACING_MS 150

/* The client's write state, taken from GnuTLS. */
struct sealer {
    int tls13;
    gnutls_aead_cipher_hd_t aead;
    unsigned char iv[12]; /* TLS 1.3: the whole iv; TLS 1.2: 4-byte salt */
    unsigned char seq[8];
};

static int fd = -1;
static int tls13 = 1;
static int write_errno;        /* of a raw write */
static const char *send_error; /* of a GnuTLS send */
static unsigned long long sent, received;
static gnutls_hash_hd_t sent_hash, recv_hash;
static struct sealer sealer;
static int sealer_ready;
static gnutls_session_t the_session;
static unsigned wait_secs = 5;
/* The end of the session as seen by the reader (NULL: not yet). */
static const char *end;
static const char *alert_name = "-", *alert_level = "-";
static int logged_level = -1; /* from GnuTLS's "Alert[L|D]" record log */
/* appdata-in-handshake */
static int hook_pad = -1; /* -1: no hook; else bytes of padding */
static int hook_late;     /* 1.2: after the client's ChangeCipherSpec */
static int hook_abort;    /* the hook stopped the handshake */
static int in_hook;
static const char *answer = "-";
static long long answer_ms = -1;
static char first_record[64] = "-";
static char plain_alert[64];
static const char *plain_level;
static long long case_start;

static void die_usage(void)
{
    fputs(
        "usage: tlsprobe [-2|-3] [-n BYTES] [-W SECS] [-H HASHFILE] [-K RECS] [-c] CASE PORT\n"
        "cases: none ku-bad-value ku-bad-length ku-wrong-type ku-flood ku-split\n"
        "       ccs-after-finished alert-empty alert-short alert-long appdata-in-handshake\n"
        "       appdata-in-handshake-pad appdata-in-handshake-late ku-requested ku-every\n",
        stderr);
    exit(2);
}

static unsigned long number(const char *s)
{
    char *e;
    unsigned long v;

    errno = 0;
    v = strtoul(s, &e, 10);
    if (errno != 0 || *s == '\0' || *e != '\0')
        die_usage();
    return v;
}

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* An alert's name as RFC 8446 writes it (illegal_parameter), as tlsfilter
 * logs it: GnuTLS's GNUTLS_A_ILLEGAL_PARAMETER without the prefix, lower
 * case (gnutls_alert_get_name() gives "Illegal parameter", with a space). */
static const char *rfc_alert(gnutls_alert_description_t desc)
{
    static char names[4][48];
    static int next;
    const char *s = gnutls_alert_get_strname(desc);
    char *out = names[next++ % 4];
    size_t i;

    if (s == NULL)
        return "unknown";
    if (strncmp(s, "GNUTLS_A_", 9) == 0)
        s += 9;
    for (i = 0; s[i] != '\0' && i + 1 < sizeof names[0]; i++)
        out[i] = (char)(s[i] >= 'A' && s[i] <= 'Z' ? s[i] - 'A' + 'a' : s[i]);
    out[i] = '\0';
    return out;
}

/* GnuTLS's record log (level 4) says "Alert[LEVEL|DESC] - NAME - was
 * received": the only place where the level byte of a TLS 1.3 alert shows. */
static void on_log(int level, const char *text)
{
    const char *p = strstr(text, "Alert[");
    int l, d;

    (void)level;
    if (p != NULL && strstr(p, "was received") != NULL &&
        sscanf(p, "Alert[%d|%d]", &l, &d) == 2)
        logged_level = l;
}

static void hex(char *outs, const unsigned char *in, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        sprintf(outs + 2 * i, "%02x", in[i]);
    outs[2 * n] = '\0';
}

/* ---- raw records ---- */

static void seq_next(unsigned char seq[8])
{
    int i;

    for (i = 7; i >= 0; i--)
        if (++seq[i] != 0)
            break;
}

static void write_raw(const unsigned char *buf, size_t len)
{
    size_t off = 0;
    ssize_t w;

    while (off < len && write_errno == 0) {
        w = write(fd, buf + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            write_errno = errno;
        else
            off += (size_t)w;
    }
}

/* The client's current write keys (again after a key update or during the
 * handshake: the epoch may have changed). */
static int sealer_load(gnutls_session_t session)
{
    gnutls_datum_t mac, iv, key;
    int ret;

    if (sealer_ready)
        gnutls_aead_cipher_deinit(sealer.aead);
    sealer_ready = 0;
    memset(&sealer, 0, sizeof sealer);
    sealer.tls13 = tls13;
    /* (During a TLS 1.2 handshake the new write epoch is there before
     * gnutls_cipher_get() says so: then the key and iv sizes are checked.) */
    if (gnutls_cipher_get(session) != GNUTLS_CIPHER_AES_128_GCM && !in_hook) {
        fprintf(stderr, "tlsprobe: unexpected cipher %s\n",
                gnutls_cipher_get_name(gnutls_cipher_get(session)));
        return -1;
    }
    ret = gnutls_record_get_state(session, 0, &mac, &iv, &key, sealer.seq);
    if (ret < 0 || iv.size != (tls13 ? 12u : 4u) || key.size != 16) {
        fprintf(stderr, "tlsprobe: record state: %s (iv %u bytes)\n",
                ret < 0 ? gnutls_strerror(ret) : "ok", ret < 0 ? 0 : iv.size);
        return -1;
    }
    memcpy(sealer.iv, iv.data, iv.size);
    ret = gnutls_aead_cipher_init(&sealer.aead, GNUTLS_CIPHER_AES_128_GCM, &key);
    if (ret < 0) {
        fprintf(stderr, "tlsprobe: aead init: %s\n", gnutls_strerror(ret));
        return -1;
    }
    sealer_ready = 1;
    return 0;
}

/* Seal one record of TYPE with DATA (LEN bytes) and, under TLS 1.3, PAD
 * zero bytes of padding, and write it. */
static int seal(int type, const void *data, size_t len, size_t pad)
{
    unsigned char rec[5 + 8 + 1024 + TAG_LEN], plain[1024], nonce[12], aad[13];
    size_t plain_len, body, ct_len;
    int i, ret;

    if (!sealer_ready || len + 1 + pad > sizeof plain)
        return -1;
    if (len > 0)
        memcpy(plain, data, len);
    if (sealer.tls13) {
        plain[len] = (unsigned char)type;
        memset(plain + len + 1, 0, pad);
        plain_len = len + 1 + pad;
        memcpy(nonce, sealer.iv, 12);
        for (i = 0; i < 8; i++)
            nonce[4 + i] ^= sealer.seq[i];
        body = plain_len + TAG_LEN;
        rec[0] = TYPE_DATA;
        rec[1] = 3, rec[2] = 3, rec[3] = (unsigned char)(body >> 8);
        rec[4] = (unsigned char)body;
        ct_len = body;
        ret = gnutls_aead_cipher_encrypt(sealer.aead, nonce, 12, rec, 5, TAG_LEN, plain,
                                         plain_len, rec + 5, &ct_len);
    } else {
        memcpy(nonce, sealer.iv, 4);
        memcpy(nonce + 4, sealer.seq, 8);
        memcpy(aad, sealer.seq, 8);
        aad[8] = (unsigned char)type, aad[9] = 3, aad[10] = 3;
        aad[11] = (unsigned char)(len >> 8), aad[12] = (unsigned char)len;
        body = 8 + len + TAG_LEN;
        rec[0] = (unsigned char)type;
        rec[1] = 3, rec[2] = 3, rec[3] = (unsigned char)(body >> 8);
        rec[4] = (unsigned char)body;
        memcpy(rec + 5, sealer.seq, 8);
        ct_len = len + TAG_LEN;
        ret = gnutls_aead_cipher_encrypt(sealer.aead, nonce, 12, aad, 13, TAG_LEN, plain, len,
                                         rec + 13, &ct_len);
    }
    if (ret < 0) {
        fprintf(stderr, "tlsprobe: encrypt: %s\n", gnutls_strerror(ret));
        return -1;
    }
    seq_next(sealer.seq);
    /* GnuTLS's next record gets the next sequence number. */
    if (gnutls_record_set_state(the_session, 0, sealer.seq) < 0)
        fputs("tlsprobe: could not set the write sequence number\n", stderr);
    if (type == TYPE_DATA && len > 0) {
        sent += len;
        gnutls_hash(sent_hash, data, len);
    }
    write_raw(rec, 5 + body);
    return 0;
}

/* ---- reading ---- */

/* One gnutls_record_recv(): > 0 bytes read, 0 nothing this time; sets end
 * when the session ended. */
static int recv_once(gnutls_session_t session)
{
    char buf[16384];
    ssize_t r = gnutls_record_recv(session, buf, sizeof buf);

    if (r > 0) {
        received += (unsigned long long)r;
        gnutls_hash(recv_hash, buf, (size_t)r);
        return (int)r;
    }
    if (r == 0)
        end = "close_notify";
    else if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED || r == GNUTLS_E_REHANDSHAKE)
        return 0;
    else if (r == GNUTLS_E_FATAL_ALERT_RECEIVED || r == GNUTLS_E_WARNING_ALERT_RECEIVED) {
        end = "alert";
        alert_name = rfc_alert(gnutls_alert_get(session));
        if (logged_level == 1 || logged_level == 2)
            alert_level = logged_level == 2 ? "fatal" : "warning";
        else
            alert_level = r == GNUTLS_E_FATAL_ALERT_RECEIVED ? "fatal" : "warning";
    } else if (r == GNUTLS_E_PREMATURE_TERMINATION)
        end = "eof";
    else if (r == GNUTLS_E_PULL_ERROR)
        end = errno == ECONNRESET ? "reset" : "error";
    else if (gnutls_error_is_fatal((int)r))
        end = "error";
    else
        return 0; /* a warning alert under 1.2, say: go on */
    return 0;
}

/* Read for at most MS milliseconds (0: only what is there now). */
static void read_for(gnutls_session_t session, long long ms)
{
    long long until = now_ms() + ms, left;
    struct pollfd p = {.fd = fd, .events = POLLIN};

    while (end == NULL) {
        if (gnutls_record_check_pending(session) == 0) {
            left = until - now_ms();
            if (left < 0)
                left = 0;
            if (poll(&p, 1, (int)left) <= 0)
                return;
        }
        recv_once(session);
    }
}

/* Before a write: read what is there, so that an echo never blocks us. */
static void drain(gnutls_session_t session)
{
    read_for(session, 0);
}

/* ---- sending through GnuTLS ---- */

static void pattern(unsigned char *buf, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++)
        buf[i] = (unsigned char)((sent + i) % 251);
}

static int gsend(gnutls_session_t session, const unsigned char *buf, size_t len)
{
    ssize_t r;

    if (send_error != NULL || end != NULL)
        return -1;
    drain(session);
    do
        r = gnutls_record_send(session, buf, len);
    while (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED);
    if (r < 0) {
        send_error = gnutls_strerror((int)r);
        return -1;
    }
    sent += (unsigned long long)r;
    gnutls_hash(sent_hash, buf, (size_t)r);
    return 0;
}

/* N bytes of the pattern, in records of at most CHUNK bytes. */
static int send_pattern(gnutls_session_t session, unsigned long long n, size_t chunk)
{
    unsigned char buf[4096];
    size_t k;

    if (chunk > sizeof buf)
        chunk = sizeof buf;
    while (n > 0) {
        k = n < chunk ? (size_t)n : chunk;
        pattern(buf, k);
        if (gsend(session, buf, k) < 0)
            return -1;
        n -= k;
    }
    return 0;
}

static int key_update(gnutls_session_t session, unsigned flags)
{
    int r;

    if (send_error != NULL || end != NULL)
        return -1;
    drain(session);
    do
        r = gnutls_session_key_update(session, flags);
    while (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED);
    if (r < 0) {
        send_error = gnutls_strerror(r);
        return -1;
    }
    return 0;
}

/* ---- appdata-in-handshake: the hook ---- */

/* The client's current write keys, from inside the handshake hook; on
 * failure answer= says so. */
static int hook_keys(gnutls_session_t session)
{
    int ret;

    in_hook = 1;
    ret = sealer_load(session);
    in_hook = 0;
    if (ret < 0)
        answer = "no-keys";
    return ret;
}

static int hook(gnutls_session_t session, unsigned int htype, unsigned when,
                unsigned int incoming, const gnutls_datum_t *msg)
{
    static int done;
    static unsigned char cke[8192];
    static size_t cke_len;
    unsigned char peek[64];
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int n;
    ssize_t r;

    if (hook_late && !incoming && when == GNUTLS_HOOK_POST &&
        htype != GNUTLS_HANDSHAKE_CLIENT_HELLO && htype != GNUTLS_HANDSHAKE_FINISHED &&
        cke_len + msg->size + 9 <= sizeof cke) {
        /* The client's second flight (Certificate if asked for,
         * ClientKeyExchange, CertificateVerify), kept to be written raw
         * below: GnuTLS holds it until its Finished. */
        unsigned char *h = cke + cke_len;

        h[0] = TYPE_HANDSHAKE, h[1] = 3, h[2] = 3;
        h[3] = (unsigned char)((msg->size + 4) >> 8), h[4] = (unsigned char)(msg->size + 4);
        h[5] = (unsigned char)htype, h[6] = (unsigned char)(msg->size >> 16);
        h[7] = (unsigned char)(msg->size >> 8), h[8] = (unsigned char)msg->size;
        memcpy(h + 9, msg->data, msg->size);
        cke_len += msg->size + 9;
        return 0;
    }
    if (done || incoming || hook_pad < 0 || when != GNUTLS_HOOK_PRE)
        return 0;
    if ((tls13 || hook_late) && htype != GNUTLS_HANDSHAKE_FINISHED)
        return 0;
    if (!tls13 && !hook_late && htype != GNUTLS_HANDSHAKE_CHANGE_CIPHER_SPEC)
        return 0;
    done = 1;
    case_start = now_ms();
    if (hook_late) {
        /* GnuTLS has switched its write keys but still holds its
         * ClientKeyExchange and ChangeCipherSpec (sent with the Finished):
         * write them here, then the empty record sealed with the new keys;
         * the handshake is not taken further (GnuTLS would send them
         * again). */
        static const unsigned char ccs[] = {TYPE_CCS, 3, 3, 0, 1, 1};

        if (cke_len == 0) {
            answer = "no-client-key-exchange";
            return GNUTLS_E_APPLICATION_ERROR_MIN;
        }
        write_raw(cke, cke_len);
        write_raw(ccs, sizeof ccs);
        if (hook_keys(session) < 0)
            return 0;
        seal(TYPE_DATA, NULL, 0, 0);
        hook_abort = 1;
    } else if (tls13) {
        /* The write epoch is the handshake-traffic one here. */
        if (hook_keys(session) < 0)
            return 0;
        seal(TYPE_DATA, NULL, 0, (size_t)hook_pad);
    } else {
        /* Before the ChangeCipherSpec the record layer is plaintext. */
        static const unsigned char rec[5] = {TYPE_DATA, 3, 3, 0, 0};
        write_raw(rec, sizeof rec);
    }
    n = poll(&p, 1, (int)wait_secs * 1000);
    if (n <= 0) {
        answer = "none";
        return hook_abort ? GNUTLS_E_APPLICATION_ERROR_MIN : 0;
    }
    answer_ms = now_ms() - case_start;
    r = recv(fd, peek, sizeof peek, MSG_PEEK | MSG_DONTWAIT);
    if (r == 0)
        answer = "eof";
    else if (r < 0)
        answer = errno == ECONNRESET ? "reset" : "error";
    else {
        answer = "bytes";
        if (r >= 5)
            snprintf(first_record, sizeof first_record, "%u:%u", peek[0],
                     (unsigned)peek[3] << 8 | peek[4]);
        else
            snprintf(first_record, sizeof first_record, "short:%zd", r);
        /* A plaintext alert (TLS 1.2 before the server's ChangeCipherSpec)
         * can be read here. */
        if (r >= 7 && peek[0] == TYPE_ALERT && peek[3] == 0 && peek[4] == 2) {
            snprintf(plain_alert, sizeof plain_alert, "%s",
                     rfc_alert((gnutls_alert_description_t)peek[6]));
            plain_level = peek[5] == 2 ? "fatal" : peek[5] == 1 ? "warning" : "unknown";
        }
    }
    return hook_abort ? GNUTLS_E_APPLICATION_ERROR_MIN : 0;
}

/* ---- the cases ---- */

static const char *const cases[] = {"none",
                                    "ku-bad-value",
                                    "ku-bad-length",
                                    "ku-wrong-type",
                                    "ku-flood",
                                    "ku-split",
                                    "ccs-after-finished",
                                    "alert-empty",
                                    "alert-short",
                                    "alert-long",
                                    "appdata-in-handshake",
                                    "appdata-in-handshake-pad",
                                    "appdata-in-handshake-late",
                                    "ku-requested",
                                    "ku-every",
                                    NULL};

/* A ClientHello that looks like a TLS 1.3 one. */
static size_t client_hello(unsigned char *m)
{
    static const unsigned char ext[] = {
        0x00, 0x2b, 0x00, 0x03, 0x02, 0x03, 0x04,                    /* supported_versions */
        0x00, 0x0a, 0x00, 0x04, 0x00, 0x02, 0x00, 0x1d,              /* supported_groups */
        0x00, 0x0d, 0x00, 0x04, 0x00, 0x02, 0x04, 0x03,              /* signature_algorithms */
        0x00, 0x33, 0x00, 0x26, 0x00, 0x24, 0x00, 0x1d, 0x00, 0x20}; /* key_share + 32 */
    size_t n = 4, body, i;

    m[n++] = 3, m[n++] = 3;
    for (i = 0; i < 32; i++)
        m[n++] = (unsigned char)(i * 7 + 1); /* random */
    m[n++] = 32;
    for (i = 0; i < 32; i++)
        m[n++] = (unsigned char)(i + 0x40); /* legacy_session_id */
    m[n++] = 0, m[n++] = 2, m[n++] = 0x13, m[n++] = 0x01;
    m[n++] = 1, m[n++] = 0;
    m[n++] = 0, m[n++] = (unsigned char)(sizeof ext + 32);
    memcpy(m + n, ext, sizeof ext);
    n += sizeof ext;
    for (i = 0; i < 32; i++)
        m[n++] = (unsigned char)(i + 9); /* the x25519 share */
    body = n - 4;
    m[0] = 1, m[1] = 0, m[2] = (unsigned char)(body >> 8), m[3] = (unsigned char)body;
    return n;
}

static void close_notify(gnutls_session_t session)
{
    if (end == NULL && send_error == NULL && write_errno == 0)
        gnutls_bye(session, GNUTLS_SHUT_WR);
}

int main(int argc, char **argv)
{
    unsigned long long nbytes = 0;
    unsigned long every = 100, i;
    const char *hashfile = NULL, *cname;
    int version = 3, opt, notify = 0, hs_ret;
    unsigned ku_ok = 0;
    char prio[200], extra[512] = "";
    gnutls_certificate_credentials_t cred;
    gnutls_session_t session;
    unsigned char digest[32], msg[512];
    char hexs[65];
    long long elapsed;

    while ((opt = getopt(argc, argv, "23n:W:H:K:c")) != -1) {
        switch (opt) {
        case '2':
        case '3':
            version = opt - '0';
            break;
        case 'n':
            nbytes = number(optarg);
            break;
        case 'W':
            wait_secs = (unsigned)number(optarg);
            break;
        case 'H':
            hashfile = optarg;
            break;
        case 'K':
            every = number(optarg);
            if (every == 0)
                die_usage();
            break;
        case 'c':
            notify = 1;
            break;
        default:
            die_usage();
        }
    }
    if (optind + 2 != argc)
        die_usage();
    cname = argv[optind];
    for (i = 0; cases[i] != NULL && strcmp(cases[i], cname) != 0; i++)
        ;
    if (cases[i] == NULL)
        die_usage();
    tls13 = version == 3;
    if (!tls13 && (!strcmp(cname, "ku-flood") || !strcmp(cname, "ku-requested") ||
                   !strcmp(cname, "ku-every") || !strcmp(cname, "appdata-in-handshake-pad"))) {
        fprintf(stderr, "tlsprobe: %s is a TLS 1.3 case\n", cname);
        return 2;
    }
    if (tls13 && !strcmp(cname, "appdata-in-handshake-late")) {
        fprintf(stderr, "tlsprobe: %s is a TLS 1.2 case\n", cname);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);

    {
        struct sockaddr_in a;
        int one = 1;

        memset(&a, 0, sizeof a);
        a.sin_family = AF_INET;
        a.sin_port = htons((unsigned short)number(argv[optind + 1]));
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
            perror("tlsprobe: connect");
            return 1;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }

    snprintf(prio, sizeof prio,
             "NORMAL:-VERS-ALL:+VERS-TLS1.%d:-CIPHER-ALL:+AES-128-GCM:-KX-ALL:+ECDHE-ECDSA:"
             "+ECDHE-RSA",
             version);
    if (gnutls_hash_init(&sent_hash, GNUTLS_DIG_SHA256) < 0 ||
        gnutls_hash_init(&recv_hash, GNUTLS_DIG_SHA256) < 0 ||
        gnutls_certificate_allocate_credentials(&cred) < 0 ||
        gnutls_init(&session, GNUTLS_CLIENT) < 0 ||
        gnutls_priority_set_direct(session, prio, NULL) < 0 ||
        gnutls_credentials_set(session, GNUTLS_CRD_CERTIFICATE, cred) < 0 ||
        gnutls_server_name_set(session, GNUTLS_NAME_DNS, "localhost", 9) < 0) {
        fputs("tlsprobe: GnuTLS set-up failed\n", stderr);
        return 1;
    }
    the_session = session;
    gnutls_global_set_log_function(on_log);
    gnutls_transport_set_int(session, fd);
    gnutls_handshake_set_timeout(session, 20000);
    if (!strncmp(cname, "appdata-in-handshake", 20)) {
        hook_pad = !strcmp(cname, "appdata-in-handshake-pad") ? 16 : 0;
        hook_late = !strcmp(cname, "appdata-in-handshake-late");
        gnutls_handshake_set_hook_function(session,
                                           hook_late ? GNUTLS_HANDSHAKE_ANY
                                           : tls13   ? GNUTLS_HANDSHAKE_FINISHED
                                                     : GNUTLS_HANDSHAKE_CHANGE_CIPHER_SPEC,
                                           hook_late ? GNUTLS_HOOK_BOTH : GNUTLS_HOOK_PRE,
                                           hook);
        gnutls_global_set_log_level(4);
    }
    do
        hs_ret = gnutls_handshake(session);
    while (hs_ret < 0 && !gnutls_error_is_fatal(hs_ret));

    if (hook_pad >= 0) {
        /* appdata-in-handshake: the case is the handshake itself. */
        if (hs_ret == 0)
            read_for(session, wait_secs * 1000LL);
        else if (plain_alert[0] != '\0') {
            end = "alert";
            alert_name = plain_alert;
            alert_level = plain_level;
        } else if (hook_abort && !strcmp(answer, "none"))
            end = "timeout";
        else if (hook_abort)
            end = answer;
        else if (hs_ret == GNUTLS_E_FATAL_ALERT_RECEIVED ||
                 hs_ret == GNUTLS_E_WARNING_ALERT_RECEIVED) {
            end = "alert";
            alert_name = rfc_alert(gnutls_alert_get(session));
            alert_level = logged_level == 1 ? "warning" : "fatal";
        } else if (hs_ret == GNUTLS_E_PREMATURE_TERMINATION)
            end = "eof";
        else if (hs_ret == GNUTLS_E_PULL_ERROR || hs_ret == GNUTLS_E_PUSH_ERROR)
            end = errno == ECONNRESET ? "reset" : "error";
        else
            end = "error";
        if (case_start == 0)
            case_start = now_ms();
        snprintf(extra, sizeof extra,
                 " answer=%s answer_ms=%lld first_record=%s handshake_error=\"%s\"", answer,
                 answer_ms, first_record,
                 hs_ret == 0 || hook_abort ? "-" : gnutls_strerror(hs_ret));
        goto report;
    }
    if (hs_ret < 0) {
        printf("handshake=failed case=%s error=\"%s\"\n", cname, gnutls_strerror(hs_ret));
        return 1;
    }
    if (strcmp(cname, "ku-every") != 0)
        gnutls_global_set_log_level(4);

    send_pattern(session, nbytes, 4096);
    /* An echoing server's answer to those bytes comes back first (at most
     * 1 s is waited for it), so that received= does not depend on a race. */
    {
        long long until = now_ms() + 1000;

        while (received < sent && end == NULL && now_ms() < until)
            read_for(session, until - now_ms());
    }
    case_start = now_ms();
    if (!strcmp(cname, "none")) {
        /* nothing */
    } else if (!strcmp(cname, "ku-bad-value") || !strcmp(cname, "ku-bad-length")) {
        static const unsigned char bad_value[] = {24, 0, 0, 1, 5};
        static const unsigned char bad_length[] = {24, 0, 0, 2, 0, 0};
        int v = !strcmp(cname, "ku-bad-value");

        if (sealer_load(session) < 0)
            return 1;
        seal(TYPE_HANDSHAKE, v ? bad_value : bad_length,
             v ? sizeof bad_value : sizeof bad_length, 0);
    } else if (!strcmp(cname, "ku-wrong-type")) {
        size_t n = client_hello(msg);

        if (sealer_load(session) < 0)
            return 1;
        seal(TYPE_HANDSHAKE, msg, n, 0);
    } else if (!strcmp(cname, "ku-flood")) {
        for (i = 0; i < 20; i++)
            if (key_update(session, 0) == 0)
                ku_ok++;
        snprintf(extra, sizeof extra, " key_updates=%u", ku_ok);
    } else if (!strcmp(cname, "ku-split")) {
        static const unsigned char part1[] = {24, 0}, part2[] = {0, 1, 0};

        if (sealer_load(session) < 0)
            return 1;
        seal(TYPE_HANDSHAKE, part1, sizeof part1, 0);
        seal(TYPE_DATA, "hello", 5, 0);
        seal(TYPE_HANDSHAKE, part2, sizeof part2, 0);
    } else if (!strcmp(cname, "ccs-after-finished")) {
        static const unsigned char ccs[] = {TYPE_CCS, 3, 3, 0, 1, 1}, one = 1;

        if (tls13) {
            write_raw(ccs, sizeof ccs);
        } else {
            if (sealer_load(session) < 0)
                return 1;
            seal(TYPE_CCS, &one, 1, 0);
        }
    } else if (!strncmp(cname, "alert-", 6)) {
        static const unsigned char al[3] = {1, 0, 0};
        size_t n = !strcmp(cname, "alert-empty") ? 0 : !strcmp(cname, "alert-short") ? 1 : 3;

        if (sealer_load(session) < 0)
            return 1;
        seal(TYPE_ALERT, al, n, 0);
    } else if (!strcmp(cname, "ku-requested")) {
        gnutls_datum_t key;
        unsigned char before[32], after[32];
        unsigned klen;

        if (gnutls_record_get_state(session, 1, NULL, NULL, &key, NULL) < 0 || key.size > 32)
            return 1;
        klen = key.size;
        memcpy(before, key.data, klen);
        if (key_update(session, GNUTLS_KU_PEER) == 0)
            ku_ok++;
        send_pattern(session, 1000, 1000);
        if (notify)
            close_notify(session);
        read_for(session, wait_secs * 1000LL);
        if (gnutls_record_get_state(session, 1, NULL, NULL, &key, NULL) < 0 || key.size != klen)
            return 1;
        memcpy(after, key.data, klen);
        gnutls_hash_output(recv_hash, digest);
        hex(hexs, digest, 32);
        snprintf(extra, sizeof extra, " key_updates=%u key_updated=%s recv_sha256=%s", ku_ok,
                 memcmp(before, after, klen) != 0 ? "yes" : "no", hexs);
        goto done;
    } else if (!strcmp(cname, "ku-every")) {
        long long last_ku = 0, t;

        for (i = 0; i < 20000 && send_error == NULL && end == NULL; i++) {
            if (i > 0 && i % every == 0) {
                /* GnuTLS takes 8 KeyUpdates per 1000 ms window: keep to one
                 * per 150 ms, reading the echo meanwhile. */
                while ((t = now_ms()) - last_ku < KU_SPACING_MS && end == NULL)
                    read_for(session, KU_SPACING_MS - (t - last_ku));
                last_ku = now_ms();
                if (key_update(session, 0) == 0)
                    ku_ok++;
            }
            send_pattern(session, 16, 16);
        }
        if (notify)
            close_notify(session);
        read_for(session, wait_secs * 1000LL);
        gnutls_hash_output(recv_hash, digest);
        hex(hexs, digest, 32);
        snprintf(extra, sizeof extra, " key_updates=%u recv_sha256=%s", ku_ok, hexs);
        goto done;
    }
    if (notify)
        close_notify(session);
    read_for(session, wait_secs * 1000LL);

done:
report:
    if (end == NULL)
        end = "timeout";
    elapsed = now_ms() - case_start;
    gnutls_hash_output(sent_hash, digest);
    hex(hexs, digest, 32);
    if (hashfile != NULL) {
        FILE *f = fopen(hashfile, "w");

        if (f == NULL || fprintf(f, "%s\n", hexs) < 0 || fclose(f) != 0) {
            perror(hashfile);
            return 1;
        }
    }
    printf("handshake=%s version=%s case=%s sent=%llu received=%llu end=%s alert=%s "
           "alert_level=%s elapsed_ms=%lld write_error=\"%s\"%s\n",
           hs_ret == 0 ? "ok" : "failed",
           hs_ret == 0 ? gnutls_protocol_get_name(gnutls_protocol_get_version(session))
                       : (tls13 ? "TLS1.3" : "TLS1.2"),
           cname, sent, received, end, alert_name, alert_level, elapsed,
           write_errno  ? strerror(write_errno)
           : send_error ? send_error
                        : "-",
           extra);
    fflush(stdout);
    if (sealer_ready)
        gnutls_aead_cipher_deinit(sealer.aead);
    gnutls_hash_deinit(sent_hash, NULL);
    gnutls_hash_deinit(recv_hash, NULL);
    gnutls_deinit(session);
    gnutls_certificate_free_credentials(cred);
    close(fd);
    return 0;
}
