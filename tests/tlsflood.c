/*
 * tlsflood.c: a TLS client that floods the server with empty or one-byte
 * application-data records, for tests/flood.test.
 *
 * No stock client sends empty records, and GnuTLS refuses to
 * (gnutls_record_send(s, buf, 0) is GNUTLS_E_INVALID_REQUEST). So after a
 * normal GnuTLS handshake this program takes the client's write keys with
 * gnutls_record_get_state() and seals every record itself with AES-128-GCM
 * (the only suite it offers), writing them raw on the socket:
 *   TLS 1.3: inner plaintext = data || 0x17, nonce = iv XOR seq,
 *            header 17 03 03 LEN is the additional data;
 *   TLS 1.2: nonce = 4-byte salt || 8-byte explicit nonce (the sequence
 *            number, sent in front of the ciphertext), additional data =
 *            seq || 17 || 03 03 || data length.
 * Reading stays GnuTLS's: the server's records (alerts, data) are read with
 * gnutls_record_recv() afterwards.
 *
 *   tlsflood [-2|-3] [-e EMPTY] [-t TINY] [-k K] [-s MS] [-p N -w SECS] [-c] [-W SECS]
 *            PORT
 *     -2, -3    TLS 1.2 or TLS 1.3 (the default), on 127.0.0.1:PORT
 *     -e EMPTY  send EMPTY empty records
 *     -t TINY   then TINY one-byte records, bytes 0,1,...,250,0,1,...
 *               (the pattern of helper.py's --send-size), each preceded by K
 *               empty records (-k, default 0)
 *     -s MS     write each record alone, MS milliseconds apart
 *     -p N -w SECS  pause SECS seconds after the first N records, writing
 *               "paused TIME_NS" on stderr when the pause begins (so that
 *               the server's CPU time can be watched while it waits)
 *     -c        end with close_notify (sealed the same way)
 *     -W SECS   then read what the server sends until it closes, at most
 *               SECS seconds (default 10)
 * Prints one line: key=value pairs, among them handshake=ok|failed
 * version= local_port= sent_records= write_error= received= (application-data bytes
 * from the server) end=close_notify|alert|eof|reset|timeout|error
 * alert= (the alert's name, if any).
 * Exit status: 0 when the handshake completed, 1 otherwise, 2 on usage.
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
#define TYPE_ALERT 21
#define TYPE_DATA 23

/* The client's write state, taken from GnuTLS after the handshake. */
struct sealer {
    int tls13;
    gnutls_aead_cipher_hd_t aead;
    unsigned char iv[12]; /* TLS 1.3: the whole iv; TLS 1.2: 4-byte salt */
    unsigned char seq[8];
};

/* Records are gathered here and written in large writes. */
static unsigned char out[1 << 16];
static size_t out_len;
static int fd = -1;
static int write_errno;
static unsigned long sent_records;
static unsigned long spacing_ms;

static void die_usage(void)
{
    fputs("usage: tlsflood [-2|-3] [-e EMPTY] [-t TINY] [-k K] [-s MS] [-p N -w SECS] [-c] "
          "[-W SECS] PORT\n",
          stderr);
    exit(2);
}

static unsigned long number(const char *s)
{
    char *end;
    unsigned long v;

    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno != 0 || *s == '\0' || *end != '\0')
        die_usage();
    return v;
}

static void seq_next(unsigned char seq[8])
{
    int i;

    for (i = 7; i >= 0; i--)
        if (++seq[i] != 0)
            break;
}

/* Write what is gathered; after a write error, drop everything. */
static void flush(void)
{
    size_t off = 0;
    ssize_t w;

    while (off < out_len && write_errno == 0) {
        w = write(fd, out + off, out_len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            write_errno = errno;
        else
            off += (size_t)w;
    }
    out_len = 0;
}

/* Seal one record of TYPE with LEN (0 or a few) bytes and gather it. */
static int seal(struct sealer *s, int type, const unsigned char *data, size_t len)
{
    unsigned char nonce[12], aad[13], plain[8], *rec;
    size_t plain_len = len, body, ct_len;
    int i, ret;

    if (len > 6)
        return -1;
    if (out_len + 5 + 8 + len + 1 + TAG_LEN > sizeof out)
        flush();
    rec = out + out_len;
    if (len > 0)
        memcpy(plain, data, len);
    if (s->tls13) {
        plain[plain_len++] = (unsigned char)type; /* the inner content type */
        memcpy(nonce, s->iv, 12);
        for (i = 0; i < 8; i++)
            nonce[4 + i] ^= s->seq[i];
        body = plain_len + TAG_LEN;
        rec[0] = TYPE_DATA; /* the outer type is always application data */
        rec[1] = 3, rec[2] = 3, rec[3] = (unsigned char)(body >> 8),
        rec[4] = (unsigned char)body;
        ct_len = body;
        ret = gnutls_aead_cipher_encrypt(s->aead, nonce, 12, rec, 5, TAG_LEN, plain, plain_len,
                                         rec + 5, &ct_len);
    } else {
        memcpy(nonce, s->iv, 4);
        memcpy(nonce + 4, s->seq, 8);
        memcpy(aad, s->seq, 8);
        aad[8] = (unsigned char)type, aad[9] = 3, aad[10] = 3;
        aad[11] = (unsigned char)(len >> 8), aad[12] = (unsigned char)len;
        body = 8 + len + TAG_LEN;
        rec[0] = (unsigned char)type;
        rec[1] = 3, rec[2] = 3, rec[3] = (unsigned char)(body >> 8),
        rec[4] = (unsigned char)body;
        memcpy(rec + 5, s->seq, 8); /* the explicit nonce */
        ct_len = len + TAG_LEN;
        ret = gnutls_aead_cipher_encrypt(s->aead, nonce, 12, aad, 13, TAG_LEN, plain, len,
                                         rec + 13, &ct_len);
    }
    if (ret < 0) {
        fprintf(stderr, "tlsflood: encrypt: %s\n", gnutls_strerror(ret));
        return -1;
    }
    seq_next(s->seq);
    out_len += 5 + body;
    sent_records++;
    if (spacing_ms > 0) {
        struct timespec ts = {(time_t)(spacing_ms / 1000), (long)(spacing_ms % 1000) * 1000000};
        flush();
        nanosleep(&ts, NULL);
    }
    return 0;
}

static int sealer_init(struct sealer *s, gnutls_session_t session)
{
    gnutls_datum_t mac, iv, key;
    int ret;

    memset(s, 0, sizeof *s);
    s->tls13 = gnutls_protocol_get_version(session) == GNUTLS_TLS1_3;
    if (gnutls_cipher_get(session) != GNUTLS_CIPHER_AES_128_GCM) {
        fprintf(stderr, "tlsflood: unexpected cipher %s\n",
                gnutls_cipher_get_name(gnutls_cipher_get(session)));
        return -1;
    }
    ret = gnutls_record_get_state(session, 0, &mac, &iv, &key, s->seq);
    if (ret < 0 || iv.size != (s->tls13 ? 12u : 4u)) {
        fprintf(stderr, "tlsflood: record state: %s (iv %u bytes)\n",
                ret < 0 ? gnutls_strerror(ret) : "ok", ret < 0 ? 0 : iv.size);
        return -1;
    }
    memcpy(s->iv, iv.data, iv.size);
    ret = gnutls_aead_cipher_init(&s->aead, GNUTLS_CIPHER_AES_128_GCM, &key);
    if (ret < 0) {
        fprintf(stderr, "tlsflood: aead init: %s\n", gnutls_strerror(ret));
        return -1;
    }
    return 0;
}

static int connect_port(const char *port)
{
    struct sockaddr_in a;
    int s, one = 1;

    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)number(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof a) < 0) {
        perror("tlsflood: connect");
        exit(1);
    }
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return s;
}

/* Read the server's records until it closes or SECS pass. */
static const char *read_back(gnutls_session_t session, unsigned secs, unsigned long *received,
                             const char **alert)
{
    struct timespec now, until;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    char buf[16384];
    ssize_t r;
    long ms;

    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += secs;
    for (;;) {
        if (gnutls_record_check_pending(session) == 0) {
            clock_gettime(CLOCK_MONOTONIC, &now);
            ms = (until.tv_sec - now.tv_sec) * 1000 + (until.tv_nsec - now.tv_nsec) / 1000000;
            if (ms <= 0 || poll(&p, 1, (int)ms) == 0)
                return "timeout";
        }
        r = gnutls_record_recv(session, buf, sizeof buf);
        if (r > 0) {
            *received += (unsigned long)r;
            continue;
        }
        if (r == 0)
            return "close_notify";
        if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
            continue;
        if (r == GNUTLS_E_FATAL_ALERT_RECEIVED || r == GNUTLS_E_WARNING_ALERT_RECEIVED) {
            *alert = gnutls_alert_get_name(gnutls_alert_get(session));
            return "alert";
        }
        if (r == GNUTLS_E_PREMATURE_TERMINATION)
            return "eof";
        if (r == GNUTLS_E_PULL_ERROR)
            return errno == ECONNRESET ? "reset" : "error";
        return gnutls_error_is_fatal((int)r) ? "error" : "again";
    }
}

/* Send what is sealed, say so on stderr ("paused T", T the wall-clock time
 * in nanoseconds, as date +%s%N prints it: the test samples the server's
 * CPU time within the pause) and wait SECS seconds. */
static void pause_now(unsigned secs)
{
    struct timespec ts;

    flush();
    clock_gettime(CLOCK_REALTIME, &ts);
    fprintf(stderr, "paused %lld\n", (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
    fflush(stderr);
    sleep(secs);
}

int main(int argc, char **argv)
{
    unsigned long empty = 0, tiny = 0, k = 0, pause_after = 0, received = 0, i, j;
    unsigned pause_secs = 0, wait_secs = 10, local_port = 0;
    int version = 3, notify = 0, opt, ret;
    const char *alert = "-", *end;
    char prio[200];
    gnutls_certificate_credentials_t cred;
    gnutls_session_t session;
    struct sealer s;
    unsigned char byte;

    while ((opt = getopt(argc, argv, "23e:t:k:s:p:w:cW:")) != -1) {
        switch (opt) {
        case '2':
        case '3':
            version = opt - '0';
            break;
        case 'e':
            empty = number(optarg);
            break;
        case 't':
            tiny = number(optarg);
            break;
        case 'k':
            k = number(optarg);
            break;
        case 's':
            spacing_ms = number(optarg);
            break;
        case 'p':
            pause_after = number(optarg);
            break;
        case 'w':
            pause_secs = (unsigned)number(optarg);
            break;
        case 'c':
            notify = 1;
            break;
        case 'W':
            wait_secs = (unsigned)number(optarg);
            break;
        default:
            die_usage();
        }
    }
    if (optind + 1 != argc)
        die_usage();
    signal(SIGPIPE, SIG_IGN);
    fd = connect_port(argv[optind]);
    {
        struct sockaddr_in me;
        socklen_t len = sizeof me;
        if (getsockname(fd, (struct sockaddr *)&me, &len) == 0)
            local_port = ntohs(me.sin_port);
    }

    /* The server's certificate is not checked: this client tests the server. */
    snprintf(prio, sizeof prio,
             "NORMAL:-VERS-ALL:+VERS-TLS1.%d:-CIPHER-ALL:+AES-128-GCM:-KX-ALL:+ECDHE-ECDSA:"
             "+ECDHE-RSA",
             version);
    if (gnutls_certificate_allocate_credentials(&cred) < 0 ||
        gnutls_init(&session, GNUTLS_CLIENT) < 0 ||
        gnutls_priority_set_direct(session, prio, NULL) < 0 ||
        gnutls_credentials_set(session, GNUTLS_CRD_CERTIFICATE, cred) < 0 ||
        gnutls_server_name_set(session, GNUTLS_NAME_DNS, "localhost", 9) < 0) {
        fputs("tlsflood: GnuTLS set-up failed\n", stderr);
        return 1;
    }
    gnutls_transport_set_int(session, fd);
    gnutls_handshake_set_timeout(session, 20000);
    do
        ret = gnutls_handshake(session);
    while (ret < 0 && !gnutls_error_is_fatal(ret));
    if (ret < 0) {
        printf("handshake=failed error=\"%s\"\n", gnutls_strerror(ret));
        return 1;
    }
    if (sealer_init(&s, session) < 0)
        return 1;

    /* The flood: EMPTY empty records, then TINY one-byte ones. */
    for (i = 0; i < empty && write_errno == 0; i++) {
        if (seal(&s, TYPE_DATA, NULL, 0) < 0)
            return 1;
        if (pause_after > 0 && sent_records == pause_after)
            pause_now(pause_secs);
    }
    for (i = 0; i < tiny && write_errno == 0; i++) {
        for (j = 0; j < k; j++)
            if (seal(&s, TYPE_DATA, NULL, 0) < 0)
                return 1;
        byte = (unsigned char)(i % 251);
        if (seal(&s, TYPE_DATA, &byte, 1) < 0)
            return 1;
        if (pause_after > 0 && sent_records == pause_after)
            pause_now(pause_secs);
    }
    if (notify && write_errno == 0) {
        unsigned char close_notify[2] = {1, 0}; /* warning, close_notify */
        if (seal(&s, TYPE_ALERT, close_notify, 2) < 0)
            return 1;
    }
    flush();

    end = read_back(session, wait_secs, &received, &alert);
    printf("handshake=ok version=%s local_port=%u sent_records=%lu write_error=\"%s\" "
           "received=%lu end=%s alert=%s\n",
           gnutls_protocol_get_name(gnutls_protocol_get_version(session)), local_port,
           sent_records, write_errno ? strerror(write_errno) : "-", received, end,
           alert ? alert : "-");
    /* Records counted as sent may still have been dropped by the kernel on a
     * reset: sent_records is what was handed to write(). */
    gnutls_aead_cipher_deinit(s.aead);
    gnutls_deinit(session);
    gnutls_certificate_free_credentials(cred);
    close(fd);
    return 0;
}
