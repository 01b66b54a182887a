/*
 * tls.c: credentials, the server session, the handshake and the record
 * layer. The only caller of gnutls_record_*.
 *
 * Start-up is lean because it is paid once per connection: the key is loaded
 * without GnuTLS's sign-and-verify match check (--check does that once), and
 * no trust store is loaded. The transport is read()/write() on two fds, so a
 * socket, a socketpair and a pair of pipes all work. I/O is non-blocking;
 * the handshake waits in poll() against its own deadline.
 */
#include "config.h"

#include "tls.h"

#include "identity.h"
#include "keyproc.h"
#include "proxy.h"

#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/abstract.h>
#include <gnutls/ocsp.h>
#include <gnutls/x509.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <arpa/inet.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/*
 * Reads from the peer are buffered: GnuTLS asks for a record's 5-byte header
 * and then its body, two read()s a record on its own; one read() of up to
 * this much serves up to four full records (16 KiB + overhead each). The
 * buffer is allocated at the first read and never zeroed: a short session
 * makes only the pages it uses private.
 */
#define TLS_IN_BUF (64 * 1024)

/*
 * Writes to the peer are batched in the relay: the records that tls_write()
 * makes from one buffer of plaintext (up to four full ones from a 64 KiB
 * backend read) are collected here and sent with one write() instead of
 * one each. Room for 64 KiB of plaintext in records of any size GnuTLS
 * may choose, with their headers and tags.
 */
#define TLS_OUT_BUF (72 * 1024)

struct tls {
    gnutls_session_t session;
    gnutls_certificate_credentials_t cred;
    gnutls_priority_t priority;
    int rfd, wfd;
    size_t send_pending; /* length passed to the gnutls_record_send that got AGAIN */
    bool read_eof;       /* the peer's FIN, kept from GnuTLS (see pull()) */
    char error[512];
    char sni[256];
    char peer_name[256]; /* client mode: the name the server must prove */
    const struct config *cfg;
    struct identity_local local; /* -v 3: the locally installed certificates */
    struct identity id;          /* the client's certificate, once checked */
    bool identity_checked;       /* during this handshake, by verify_client() */
    bool refused;                /* the client's identity was refused */
    bool config_error;           /* our own certificate or key did not parse */
    gnutls_datum_t ticket_key;
    gnutls_datum_t alpn[8];
    char alpn_list[256];
    char alpn_selected[256];
    char warning[256];     /* a problem worth a log line, not fatal */
    gnutls_datum_t pem[8]; /* several --cert: the files' text, read early */
    const char *pem_name[8];
    size_t n_pem;
    gnutls_datum_t key_pem;   /* --key's text (read early; see tls_new()) */
    gnutls_pcert_st ours[16]; /* one --cert, parsed at the first full handshake */
    unsigned n_ours;
    gnutls_privkey_t our_key;
    char sig_alg[64]; /* our certificate's, for the PROXY v2 header */
    char key_alg[32];
    char client_cn[128];
    char protocol[16];            /* "TLSv1.3", as mod_ssl and OpenSSL write it */
    size_t in_start, in_end;      /* bytes read from rfd that GnuTLS has not taken yet */
    unsigned char *in;            /* TLS_IN_BUF bytes, or NULL until the first read */
    size_t out_start, out_end;    /* records made, not yet written to wfd */
    unsigned char *out;           /* TLS_OUT_BUF bytes, or NULL until the first batch */
    bool batching;                /* inside tls_write(): push() collects records */
    bool watching;                /* a server handshake runs: see early_data() */
    bool early;                   /* ... and it saw application data: refused */
    unsigned char rec_hdr[5];     /* the record header being given to GnuTLS */
    size_t rec_have;              /* bytes of it so far */
    size_t rec_left;              /* body bytes of the current record still to come */
    const char *failure;          /* after TLS_IO_ERROR: reset, alert, protocol-error, error */
    char alert_sent[40];          /* the fatal alert we sent, as RFC 8446 names it, or "" */
    struct keyproc_link link;     /* --key-process yes: where our keys sign */
    struct keyproc_holder holder; /* the listener's: the key holder for its children */
    int kp_status;                /* 1 started, 0 not (yet), < 0 failed (tls_key_process()) */
    bool child;                   /* the listener's child (tls_child()) */
    char kp_error[256];           /* ... and why */
    struct keyproc_key keys[KEYPROC_MAX_KEYS]; /* one per --cert, as GnuTLS sees them */
};

/*
 * A TCP FIN without close_notify, shown to GnuTLS, invalidates the session:
 * nothing could be sent any more, and a backend's reply after the client's
 * half-close would be lost. So the end of file is kept from GnuTLS: pull()
 * says "again" and notes it, and tls_read() reports TLS_IO_EOF itself.
 */
/* A read()'s result for GnuTLS: the end of file is kept from it (above). */
static ssize_t keep_eof(struct tls *t, ssize_t r, size_t len)
{
    if (r == 0 && len > 0) {
        t->read_eof = true;
        errno = EAGAIN;
        return -1;
    }
    return r;
}

/*
 * TLS 1.2 allows no application data before the handshake is done, yet
 * GnuTLS skips an empty record of any type there and waits for the next
 * one (lib/record.c, _gnutls_recv_in_buffers(), 3.7.9): a client that sends
 * an empty application-data record where its Finished should come, and
 * then waits, would hold the handshake until --timeout-handshake. So while
 * a server handshake runs, the headers of the records pull() gives GnuTLS
 * are followed (the bodies are counted, not looked at): under TLS 1.2, one
 * of type application_data (23) ends the handshake at once with an
 * unexpected_message alert. Not under TLS 1.3, where every encrypted
 * record says application_data outside (GnuTLS checks the inner type
 * itself and refuses data at once), nor before a version is agreed on
 * (GnuTLS refuses it), nor after an SSLv2-format hello (other framing).
 * True when such a record begins within the n bytes at p.
 */
static bool early_data(struct tls *t, const unsigned char *p, size_t n)
{
    size_t i = 0, k;
    int v;

    while (i < n) {
        if (t->rec_left > 0) {
            k = n - i < t->rec_left ? n - i : t->rec_left;
            i += k;
            t->rec_left -= k;
            continue;
        }
        if (t->rec_have == 0 && (p[i] & 0x80) != 0) {
            t->watching = false; /* an SSLv2-format hello */
            return false;
        }
        t->rec_hdr[t->rec_have++] = p[i++];
        if (t->rec_have < sizeof t->rec_hdr)
            continue;
        t->rec_have = 0;
        t->rec_left = (size_t)t->rec_hdr[3] << 8 | t->rec_hdr[4];
        if (t->rec_hdr[0] != 23)
            continue;
        v = (int)gnutls_protocol_get_version(t->session);
        if (v != GNUTLS_TLS1_3 && v != GNUTLS_VERSION_UNKNOWN)
            return true;
    }
    return false;
}

/* What pull() gives GnuTLS: r bytes at buf, or refused (see early_data()). */
static ssize_t give(struct tls *t, const void *buf, ssize_t r)
{
    if (t->watching && r > 0 && early_data(t, buf, (size_t)r)) {
        t->early = true;
        errno = EPROTO;
        return -1;
    }
    return r;
}

static ssize_t pull(gnutls_transport_ptr_t p, void *buf, size_t len)
{
    struct tls *t = p;
    size_t n;
    ssize_t r;

    if (t->in_start == t->in_end) {
        /* Nothing buffered: one read() for this and what follows. */
        if (t->in == NULL && len < TLS_IN_BUF)
            t->in = malloc(TLS_IN_BUF);
        if (t->in == NULL || len >= TLS_IN_BUF)
            return give(t, buf, keep_eof(t, read(t->rfd, buf, len), len));
        r = read(t->rfd, t->in, TLS_IN_BUF);
        if (r <= 0)
            return keep_eof(t, r, len);
        t->in_start = 0;
        t->in_end = (size_t)r;
    }
    n = len < t->in_end - t->in_start ? len : t->in_end - t->in_start;
    memcpy(buf, t->in + t->in_start, n);
    t->in_start += n;
    return give(t, buf, (ssize_t)n);
}

/* Write what tls_write() collected: 0 when all of it went, else -1 with
 * errno (EAGAIN: the rest waits for tls_flush()). */
static int drain_out(struct tls *t)
{
    while (t->out_start < t->out_end) {
        ssize_t w = write(t->wfd, t->out + t->out_start, t->out_end - t->out_start);
        if (w < 0)
            return -1;
        t->out_start += (size_t)w;
    }
    t->out_start = t->out_end = 0;
    return 0;
}

/*
 * GnuTLS's writes. Inside tls_write() the records are collected (at most
 * TLS_OUT_BUF bytes; beyond that "again", and GnuTLS keeps the record);
 * anything else (handshake, alerts, close_notify, a key update) is written
 * at once, after what was collected before it, so that order is kept.
 */
static ssize_t push(gnutls_transport_ptr_t p, const void *buf, size_t len)
{
    struct tls *t = p;

    if (t->batching && t->out == NULL)
        t->out = malloc(TLS_OUT_BUF);
    if (t->batching && t->out != NULL) {
        if (len > TLS_OUT_BUF - t->out_end) {
            errno = EAGAIN;
            return -1;
        }
        memcpy(t->out + t->out_end, buf, len);
        t->out_end += len;
        return (ssize_t)len;
    }
    if (drain_out(t) < 0)
        return -1;
    return write(t->wfd, buf, len);
}

static int pull_timeout(gnutls_transport_ptr_t p, unsigned int ms)
{
    struct pollfd pfd = {.fd = ((struct tls *)p)->rfd, .events = POLLIN};

    if (((struct tls *)p)->in_start < ((struct tls *)p)->in_end)
        return 1;

    return poll(&pfd, 1, ms == GNUTLS_INDEFINITE_TIMEOUT ? -1 : (int)ms);
}

static int set_error(struct tls *t, const char *what, int ret)
{
    gnutls_datum_t text = {NULL, 0};

    if (ret == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR &&
        gnutls_certificate_verification_status_print(
            gnutls_session_get_verify_cert_status(t->session), GNUTLS_CRT_X509, &text, 0) >=
            0) {
        snprintf(t->error, sizeof t->error, "%s: certificate of %s: %s", what, t->peer_name,
                 (const char *)text.data);
        gnutls_free(text.data);
    } else if (ret == GNUTLS_E_PULL_ERROR || ret == GNUTLS_E_PUSH_ERROR)
        snprintf(t->error, sizeof t->error, "%s: %s", what, strerror(errno));
    else if (ret == GNUTLS_E_FATAL_ALERT_RECEIVED || ret == GNUTLS_E_WARNING_ALERT_RECEIVED)
        snprintf(t->error, sizeof t->error, "%s: alert %s received", what,
                 gnutls_alert_get_name(gnutls_alert_get(t->session)));
    else
        snprintf(t->error, sizeof t->error, "%s: %s", what, gnutls_strerror(ret));
    return TLS_IO_ERROR;
}

/*
 * How long a fatal alert may wait for room in the socket: the peer that
 * broke the protocol is told why if it reads at all, and never holds the
 * process (nor the relay) longer than this.
 */
#define ALERT_WAIT_MS 1000

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* An alert's name as RFC 8446 writes it (unexpected_message): GnuTLS's
 * GNUTLS_A_UNEXPECTED_MESSAGE, lower case, without the prefix. */
static void alert_name(gnutls_alert_description_t desc, char *out, size_t len)
{
    const char *s = gnutls_alert_get_strname(desc);
    size_t i;

    if (s == NULL)
        s = "unknown";
    if (strncmp(s, "GNUTLS_A_", 9) == 0)
        s += 9;
    for (i = 0; s[i] != '\0' && i + 1 < len; i++)
        out[i] = (char)(s[i] >= 'A' && s[i] <= 'Z' ? s[i] - 'A' + 'a' : s[i]);
    out[i] = '\0';
}

/*
 * Send one fatal alert, waiting (at most ALERT_WAIT_MS) while the socket is
 * full. A record GnuTLS had half sent goes first (a call after
 * GNUTLS_E_AGAIN completes it: the alert needs a second call then).
 */
static void send_alert(struct tls *t, gnutls_alert_description_t desc)
{
    long long until = now_ms() + ALERT_WAIT_MS;
    int calls = t->send_pending > 0 ? 2 : 1, r;

    t->batching = false;
    t->send_pending = 0;
    while (calls > 0) {
        struct pollfd pfd = {.fd = t->wfd, .events = POLLOUT};
        long long left;

        r = gnutls_alert_send(t->session, GNUTLS_AL_FATAL, desc);
        if (r == 0) {
            calls--;
            continue;
        }
        if (r != GNUTLS_E_AGAIN && r != GNUTLS_E_INTERRUPTED)
            return;
        left = until - now_ms();
        if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
            return;
    }
    alert_name(desc, t->alert_sent, sizeof t->alert_sent);
}

/*
 * The alert a fatal error calls for (RFC 8446, 6.2), as GnuTLS maps it,
 * except where its default (internal_error) would blame us for the peer's
 * doing: too many key updates or empty records in a row are messages the
 * peer should not have sent (unexpected_message).
 */
static gnutls_alert_description_t alert_for(int err)
{
    if (err == GNUTLS_E_TOO_MANY_HANDSHAKE_PACKETS || err == GNUTLS_E_TOO_MANY_EMPTY_PACKETS)
        return GNUTLS_A_UNEXPECTED_MESSAGE;
    return (gnutls_alert_description_t)gnutls_error_to_alert(err, NULL);
}

/* The alert for error ret, unless the transport failed or the peer sent
 * its own fatal alert (then there is nobody to tell, or nothing to say). */
static void alert_peer(struct tls *t, int ret)
{
    if (ret != GNUTLS_E_PULL_ERROR && ret != GNUTLS_E_PUSH_ERROR &&
        ret != GNUTLS_E_FATAL_ALERT_RECEIVED)
        send_alert(t, alert_for(ret));
}

/*
 * A fatal error ends the session. Which kind (t->failure, for the log):
 * the transport failed (reset: nobody to tell), the peer ended it with a
 * fatal alert of its own (alert: RFC 8446 says close, do not answer), or
 * what came broke the protocol (reading), or our side failed: then the peer
 * is told with the alert the error calls for, while the transport still
 * takes it.
 */
static int fail(struct tls *t, const char *what, int ret, bool reading)
{
    if (ret == GNUTLS_E_PULL_ERROR || ret == GNUTLS_E_PUSH_ERROR) {
        t->failure = "reset";
    } else if (ret == GNUTLS_E_FATAL_ALERT_RECEIVED) {
        t->failure = "alert";
    } else {
        t->failure = reading ? "protocol-error" : "error";
        send_alert(t, alert_for(ret));
    }
    return set_error(t, what, ret);
}

/*
 * Credentials from -p / --key, without GnuTLS's sign-and-verify key match
 * (--check does that once, in check_pair()). Returns a GnuTLS error code.
 */
static int load_credentials(const struct config *cfg, gnutls_certificate_credentials_t *cred)
{
    int ret = gnutls_certificate_allocate_credentials(cred);

    if (ret < 0)
        return ret;
    gnutls_certificate_set_flags(*cred, GNUTLS_CERTIFICATE_SKIP_KEY_CERT_MATCH);
    ret = gnutls_certificate_set_x509_key_file2(*cred, cfg->cert_file,
                                                cfg->key_file ? cfg->key_file : cfg->cert_file,
                                                GNUTLS_X509_FMT_PEM, NULL, 0);
    return ret < 0 ? ret : 0;
}

/* The session on rfd/wfd: priority, credentials, our transport, no timeout
 * of GnuTLS's own (tls_handshake() enforces ours). */
static int session_setup(struct tls *t, const struct config *cfg, unsigned flags, char *err,
                         size_t errlen)
{
    const char *errpos = NULL;
    int ret = gnutls_priority_init(&t->priority, cfg->priority, &errpos);

    if (ret < 0) {
        snprintf(err, errlen, "bad priority string at '%.40s': %s", errpos ? errpos : "",
                 gnutls_strerror(ret));
        return -1;
    }
    ret = gnutls_init(&t->session, flags);
    if (ret >= 0)
        ret = gnutls_priority_set(t->session, t->priority);
    if (ret >= 0)
        ret = gnutls_credentials_set(t->session, GNUTLS_CRD_CERTIFICATE, t->cred);
    if (ret < 0) {
        snprintf(err, errlen, "cannot set up the TLS session: %s", gnutls_strerror(ret));
        return -1;
    }
    gnutls_transport_set_ptr(t->session, t);
    gnutls_transport_set_pull_function(t->session, pull);
    gnutls_transport_set_pull_timeout_function(t->session, pull_timeout);
    gnutls_transport_set_push_function(t->session, push);
    gnutls_handshake_set_timeout(t->session, 0);
    return 0;
}

static struct tls *tls_alloc(int rfd, int wfd, char *err, size_t errlen)
{
    struct tls *t = calloc(1, sizeof *t);

    if (t == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    t->rfd = rfd;
    t->wfd = wfd;
    t->id.verify = "NONE";
    t->link.fd = -1;
    t->holder.ctl = -1;
    return t;
}

static void load_error(const struct config *cfg, int ret, char *err, size_t errlen)
{
    snprintf(err, errlen, "cannot load %s%s%s: %s", cfg->cert_file,
             cfg->key_file ? " with key " : "", cfg->key_file ? cfg->key_file : "",
             gnutls_strerror(ret));
}

/*
 * Trust anchors and CRL from -A, -a, --crl-file; the system store only when
 * system_default and neither -A nor -a is given. Returns 0 or -1 with err.
 */
static int load_trust(gnutls_certificate_credentials_t cred, const struct config *cfg,
                      bool system_default, char *err, size_t errlen)
{
    const char *what = "the system trust store";
    int ret = 0, total = 0;

    if (cfg->ca_file != NULL) {
        what = cfg->ca_file;
        ret = gnutls_certificate_set_x509_trust_file(cred, cfg->ca_file, GNUTLS_X509_FMT_PEM);
        total += ret > 0 ? ret : 0;
    }
    if (ret >= 0 && cfg->ca_dir != NULL) {
        what = cfg->ca_dir;
        ret = gnutls_certificate_set_x509_trust_dir(cred, cfg->ca_dir, GNUTLS_X509_FMT_PEM);
        total += ret > 0 ? ret : 0;
    }
    if (ret >= 0 && system_default && cfg->ca_file == NULL && cfg->ca_dir == NULL) {
        ret = gnutls_certificate_set_x509_system_trust(cred);
        total += ret > 0 ? ret : 0;
    }
    if (ret < 0 || total == 0) {
        snprintf(err, errlen, "no trusted CA certificate loaded from %s%s%s", what,
                 ret < 0 ? ": " : "", ret < 0 ? gnutls_strerror(ret) : "");
        return -1;
    }
    if (cfg->crl_file != NULL) {
        /* Only CRLs signed by one of our CAs count (GNUTLS_TL_VERIFY_CRL). */
        gnutls_x509_trust_list_t tl = NULL;
        gnutls_certificate_get_trust_list(cred, &tl);
        ret = gnutls_x509_trust_list_add_trust_file(
            tl, NULL, cfg->crl_file, GNUTLS_X509_FMT_PEM,
            GNUTLS_TL_VERIFY_CRL | GNUTLS_TL_FAIL_ON_INVALID_CRL, 0);
        if (ret < 0) {
            snprintf(err, errlen, "--crl-file %s: %s", cfg->crl_file, gnutls_strerror(ret));
            return -1;
        }
    }
    return 0;
}

/* During the handshake: refuse a client whose certificate does not do. */
static int verify_client(gnutls_session_t session)
{
    struct tls *t = gnutls_session_get_ptr(session);

    t->identity_checked = true;
    if (identity_check(session, t->cfg, &t->local, &t->id))
        return 0;
    t->refused = true;
    return GNUTLS_E_CERTIFICATE_ERROR;
}

/*
 * --ocsp-response: staple it only while it is current and about our
 * certificate; otherwise say why in t->warning and serve without it.
 */
static void staple_ocsp(struct tls *t, const char *file)
{
    gnutls_datum_t data = {NULL, 0};
    gnutls_ocsp_resp_t resp = NULL;
    gnutls_x509_crt_fmt_t fmt = GNUTLS_X509_FMT_DER;
    unsigned int cert_status = 0;
    time_t this_update, next_update, revoked_at;
    int ret = gnutls_load_file(file, &data);

    if (ret >= 0 && data.size > 10 && memcmp(data.data, "-----BEGIN", 10) == 0)
        fmt = GNUTLS_X509_FMT_PEM;
    if (ret >= 0)
        ret = gnutls_ocsp_resp_init(&resp);
    if (ret >= 0)
        ret = gnutls_ocsp_resp_import2(resp, &data, fmt);
    if (ret >= 0)
        ret = gnutls_ocsp_resp_get_single(resp, 0, NULL, NULL, NULL, NULL, &cert_status,
                                          &this_update, &next_update, &revoked_at, NULL);
    if (ret < 0)
        snprintf(t->warning, sizeof t->warning, "OCSP response %s not stapled: %s", file,
                 gnutls_strerror(ret));
    else if (next_update != (time_t)-1 && next_update < time(NULL))
        snprintf(t->warning, sizeof t->warning, "OCSP response %s not stapled: expired", file);
    else if (cert_status != GNUTLS_OCSP_CERT_GOOD)
        snprintf(t->warning, sizeof t->warning,
                 "OCSP response %s not stapled: it does not say good", file);
    else if ((ret = gnutls_certificate_set_ocsp_status_request_file2(t->cred, file, 0, fmt)) <
             0)
        snprintf(t->warning, sizeof t->warning, "OCSP response %s not stapled: %s", file,
                 gnutls_strerror(ret));
    if (resp != NULL)
        gnutls_ocsp_resp_deinit(resp);
    gnutls_free(data.data);
}

/* --alpn "imap,pop3": a client offering others is refused, one offering none served. */
static int set_alpn(struct tls *t, const char *list, char *err, size_t errlen)
{
    unsigned int n = 0;
    char *p;

    snprintf(t->alpn_list, sizeof t->alpn_list, "%s", list);
    for (p = t->alpn_list; *p != '\0' && n < sizeof t->alpn / sizeof t->alpn[0];) {
        char *comma = strchr(p, ',');
        if (comma != NULL)
            *comma = '\0';
        if (*p != '\0') {
            t->alpn[n].data = (unsigned char *)p;
            t->alpn[n++].size = (unsigned int)strlen(p);
        }
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    if (n == 0 ||
        gnutls_alpn_set_protocols(t->session, t->alpn, n,
                                  GNUTLS_ALPN_MANDATORY | GNUTLS_ALPN_SERVER_PRECEDENCE) < 0) {
        snprintf(err, errlen, "--alpn %s: expected a comma-separated list of names", list);
        return -1;
    }
    return 0;
}

/* Read the ticket key file: 128 hex digits (64 bytes), kept private. */
static int load_ticket_key(struct tls *t, const char *file, char *err, size_t errlen)
{
    gnutls_datum_t hex = {NULL, 0};
    struct stat st;
    size_t size = 64;
    int ret;

    if (stat(file, &st) < 0) {
        snprintf(err, errlen, "--ticket-key %s: %s", file, strerror(errno));
        return -1;
    }
    if ((st.st_mode & 077) != 0) {
        snprintf(err, errlen, "--ticket-key %s: readable by group or others (chmod 600)", file);
        return -1;
    }
    ret = gnutls_load_file(file, &hex);
    if (ret >= 0) {
        while (hex.size > 0 &&
               (hex.data[hex.size - 1] == '\n' || hex.data[hex.size - 1] == '\r'))
            hex.size--;
        t->ticket_key.data = gnutls_malloc(size);
        ret = t->ticket_key.data == NULL ? GNUTLS_E_MEMORY_ERROR
                                         : gnutls_hex_decode(&hex, t->ticket_key.data, &size);
    }
    gnutls_free(hex.data);
    if (ret < 0 || size != 64) {
        snprintf(err, errlen, "--ticket-key %s: not a key made by --generate-ticket-key", file);
        return -1;
    }
    t->ticket_key.size = 64;
    return 0;
}

/* Does the first certificate of a PEM text name host? */
static bool pem_names_host(const gnutls_datum_t *pem, const char *host)
{
    gnutls_x509_crt_t crt = NULL;
    bool yes = false;

    if (gnutls_x509_crt_init(&crt) >= 0 &&
        gnutls_x509_crt_import(crt, pem, GNUTLS_X509_FMT_PEM) >= 0)
        yes = gnutls_x509_crt_check_hostname2(crt, host, 0) != 0;
    if (crt != NULL)
        gnutls_x509_crt_deinit(crt);
    return yes;
}

/*
 * --key-process yes: key i signs in the key process; GnuTLS is given a key
 * that asks it (keyproc.c), of the type of the certificate's public key.
 */
static int key_of(struct tls *t, size_t i, const gnutls_pcert_st *cert, gnutls_privkey_t *key)
{
    struct keyproc_key *kk = &t->keys[i];
    int pk = gnutls_pubkey_get_pk_algorithm(cert->pubkey, &kk->bits);

    if (pk < 0)
        return pk;
    kk->link = &t->link;
    kk->index = (unsigned)i;
    kk->name = i == 0 && t->cfg->key_file != NULL ? t->cfg->key_file : t->pem_name[i];
    kk->pk = (gnutls_pk_algorithm_t)pk;
    return keyproc_privkey(key, kk);
}

/*
 * --key-process yes: the certificates of --cert file i (public: parsed
 * here) with the key that signs in the key process, into the credentials,
 * which own them from then on. A GnuTLS error code.
 */
static int use_remote_key(struct tls *t, size_t i)
{
    unsigned n = 16;
    gnutls_pcert_st *pc = gnutls_malloc(n * sizeof *pc);
    gnutls_privkey_t key = NULL;
    int ret;

    if (pc == NULL)
        return GNUTLS_E_MEMORY_ERROR;
    ret = gnutls_pcert_list_import_x509_raw(pc, &n, &t->pem[i], GNUTLS_X509_FMT_PEM,
                                            GNUTLS_X509_CRT_LIST_SORT);
    if (ret < 0) {
        gnutls_free(pc);
        return ret;
    }
    ret = key_of(t, i, &pc[0], &key);
    /* Several --cert: a file chosen is checked whole, its key included. */
    if (ret >= 0 && t->link.fd >= 0 && (t->cfg->n_more_certs > 0 || t->cfg->sni_strict))
        ret = keyproc_check(&t->keys[i]);
    if (ret >= 0)
        ret = gnutls_certificate_set_key(t->cred, NULL, 0, pc, (int)n, key);
    if (ret < 0) {
        while (n > 0)
            gnutls_pcert_deinit(&pc[--n]);
        if (key != NULL)
            gnutls_privkey_deinit(key);
    }
    /* The credentials own the certificates and the key now, but copied the
     * array that held them (valgrind: 512 bytes lost per file otherwise). */
    gnutls_free(pc);
    return ret < 0 ? ret : 0;
}

static int use_pem(struct tls *t, size_t i)
{
    const gnutls_datum_t *key = i == 0 && t->key_pem.data != NULL ? &t->key_pem : &t->pem[i];
    int ret = t->cfg->key_process ? use_remote_key(t, i)
                                  : gnutls_certificate_set_x509_key_mem2(
                                        t->cred, &t->pem[i], key, GNUTLS_X509_FMT_PEM, NULL, 0);
    /* The key process said why: the key does not load (a configuration
     * error), or it failed itself (a TLS failure). */
    if (ret == GNUTLS_E_PK_SIGN_FAILED && t->cfg->key_process) {
        t->config_error = t->link.bad_key;
        return ret;
    }
    if (ret < 0) {
        set_error(t, t->pem_name[i], ret);
        t->config_error = true;
    }
    return ret;
}

/*
 * With several --cert (or --sni-strict), once the client has said which
 * name it wants: parse only the certificates for that name, keys included,
 * and let GnuTLS pick among them by the client's algorithms (an RSA and an
 * ECDSA certificate for one name). Without SNI, all of them. The files
 * were read before privileges were dropped (tls_new()); only their text is
 * parsed here.
 */
static int on_client_hello(gnutls_session_t session)
{
    struct tls *t = gnutls_session_get_ptr(session);
    const char *name = tls_server_name(t);
    size_t i, loaded = 0;
    int ret;

    for (i = 0; i < t->n_pem && name != NULL; i++)
        if (pem_names_host(&t->pem[i], name)) {
            ret = use_pem(t, i);
            if (ret < 0)
                return ret;
            loaded++;
        }
    if (loaded == 0 && name != NULL && t->cfg->sni_strict) {
        snprintf(t->error, sizeof t->error, "no certificate for the server name %.200s", name);
        return GNUTLS_E_UNRECOGNIZED_NAME;
    }
    for (i = 0; i < t->n_pem && loaded == 0; i++) {
        ret = use_pem(t, i);
        if (ret < 0)
            return ret;
    }
    return 0;
}

/*
 * One --cert (the usual case): its text is read before privileges are
 * dropped and parsed here, when GnuTLS asks for a certificate. It asks only
 * in a full handshake: a resumed session proves itself with the ticket, so
 * it is spared parsing the chain and the key (about 0.9 M instructions of a
 * 7 M connection, docs/performance.md). A file that does not parse ends
 * the handshake with its name and GnuTLS's reason (tls_new() checked that
 * both PEM blocks are there; --check parses it all).
 */
static int parse_ours(struct tls *t)
{
    const gnutls_datum_t *key = t->key_pem.data != NULL ? &t->key_pem : &t->pem[0];
    unsigned n = sizeof t->ours / sizeof t->ours[0];
    int ret = gnutls_pcert_list_import_x509_raw(t->ours, &n, &t->pem[0], GNUTLS_X509_FMT_PEM,
                                                GNUTLS_X509_CRT_LIST_SORT);

    if (ret < 0) {
        snprintf(t->error, sizeof t->error, "cannot load %s: %s", t->pem_name[0],
                 gnutls_strerror(ret));
        return ret;
    }
    t->n_ours = n;
    if (t->cfg->key_process)
        ret = key_of(t, 0, &t->ours[0], &t->our_key);
    else if ((ret = gnutls_privkey_init(&t->our_key)) >= 0)
        ret = gnutls_privkey_import_x509_raw(t->our_key, key, GNUTLS_X509_FMT_PEM, NULL, 0);
    if (ret < 0)
        snprintf(t->error, sizeof t->error, "cannot load the key of %s: %s",
                 t->key_pem.data != NULL ? t->cfg->key_file : t->pem_name[0],
                 gnutls_strerror(ret));
    return ret;
}

static int retrieve_ours(gnutls_session_t session, const struct gnutls_cert_retr_st *info,
                         gnutls_pcert_st **certs, unsigned int *n_certs,
                         gnutls_ocsp_data_st **ocsp, unsigned int *n_ocsp,
                         gnutls_privkey_t *key, unsigned int *flags)
{
    struct tls *t = gnutls_session_get_ptr(session);
    int ret;

    (void)info;
    if (t->n_ours == 0 && (ret = parse_ours(t)) < 0) {
        t->config_error = true;
        return ret;
    }
    *certs = t->ours;
    *n_certs = t->n_ours;
    *ocsp = NULL;
    *n_ocsp = 0;
    *key = t->our_key;
    *flags = 0; /* ours to free, in tls_free() */
    return 0;
}

int tls_prepare(struct tls *t, char *err, size_t errlen)
{
    const struct config *cfg = t->cfg;

    /* Only the single --cert of retrieve_ours() is parsed lazily per
     * process; several are parsed per client name, and --ocsp-response's
     * were parsed by tls_new(). A client's (-c) certificate is loaded by
     * tls_new_client(), which keeps no cfg. */
    if (cfg == NULL || cfg->client_mode || cfg->n_more_certs > 0 || cfg->sni_strict ||
        cfg->ocsp_file != NULL || t->n_ours > 0)
        return 0;
    if (parse_ours(t) < 0) {
        snprintf(err, errlen, "%s", t->error);
        return -1;
    }
    return 0;
}

/* Does the text hold a PEM block whose label ends with `label`? */
static bool pem_has(const gnutls_datum_t *pem, const char *label)
{
    const char *p = (const char *)pem->data, *end = p + pem->size;
    size_t n = strlen(label);

    while ((p = memmem(p, (size_t)(end - p), "-----BEGIN ", 11)) != NULL) {
        const char *close = memmem(p + 11, (size_t)(end - p - 11), "-----", 5);
        if (close == NULL)
            return false;
        if ((size_t)(close - p - 11) >= n && memcmp(close - n, label, n) == 0)
            return true;
        p = close + 5;
    }
    return false;
}

/*
 * A whole file into one buffer of its size (NUL-terminated), with open()
 * and read(): no stdio buffer and no growing copies are left in freed
 * memory, so that a key's text is where erase_keys() finds it and nowhere
 * else. A GnuTLS error code.
 */
static int read_file(const char *file, gnutls_datum_t *out)
{
    struct stat st;
    size_t got = 0;
    ssize_t r = 0;
    int fd = open(file, O_RDONLY | O_CLOEXEC);

    out->data = NULL;
    out->size = 0;
    if (fd < 0)
        return GNUTLS_E_FILE_ERROR;
    if (fstat(fd, &st) < 0 || st.st_size < 0 || st.st_size > 16 * 1024 * 1024 ||
        (out->data = gnutls_malloc((size_t)st.st_size + 1)) == NULL) {
        close(fd);
        return GNUTLS_E_FILE_ERROR;
    }
    while (got < (size_t)st.st_size &&
           ((r = read(fd, out->data + got, (size_t)st.st_size - got)) > 0 ||
            (r < 0 && errno == EINTR)))
        got += r > 0 ? (size_t)r : 0;
    close(fd);
    if (r < 0) {
        gnutls_free(out->data);
        out->data = NULL;
        return GNUTLS_E_FILE_ERROR;
    }
    out->data[got] = '\0';
    out->size = (unsigned)got;
    return 0;
}

/* Read (not parse) every --cert file, while we still may. */
static int read_pems(struct tls *t, const struct config *cfg, char *err, size_t errlen)
{
    size_t i;
    int ret;

    for (i = 0; i <= cfg->n_more_certs; i++) {
        const char *file = i == 0 ? cfg->cert_file : cfg->more_certs[i - 1];
        ret = read_file(file, &t->pem[i]);
        if (ret < 0) {
            snprintf(err, errlen, "cannot read %s: %s", file, gnutls_strerror(ret));
            return -1;
        }
        t->pem_name[i] = file;
        t->n_pem++;
    }
    /* --key goes with the single --cert (options.c refuses it with several). */
    if (cfg->key_file != NULL) {
        ret = read_file(cfg->key_file, &t->key_pem);
        if (ret < 0) {
            snprintf(err, errlen, "cannot read %s: %s", cfg->key_file, gnutls_strerror(ret));
            return -1;
        }
    }
    return 0;
}

static int start_key_process(struct tls *t, unsigned budget, char *err, size_t errlen);

/*
 * --key-process yes: the key process is forked as soon as the files are
 * read, before the credentials and the session are set up. A fork costs
 * a copy of every page that existed before it and is written after it, in
 * this process and in the key process: forked here rather than just
 * before the privilege drop, a connection costs about 0.6 ms less CPU
 * (docs/performance.md). A failure is kept for tls_key_process(), which
 * reports it in its place among the steps (with the peer's address).
 */
static void fork_key_process(struct tls *t)
{
    int r;

    /* The listener forks one key holder for all its children. */
    if (!t->cfg->key_process || t->n_pem == 0 || t->kp_status != 0 || t->child)
        return;
    r = start_key_process(t, t->cfg->check ? (unsigned)t->n_pem : 0, t->kp_error,
                          sizeof t->kp_error);
    t->kp_status = r < 0 ? r : 1;
}

/* One --cert (and --key) read: is there a certificate and a key in the text? */
static int pems_have_both(struct tls *t, const struct config *cfg, char *err, size_t errlen)
{
    if (!pem_has(&t->pem[0], "CERTIFICATE")) {
        snprintf(err, errlen, "cannot load %s: no PEM certificate in it", cfg->cert_file);
        return -1;
    }
    if (!pem_has(t->key_pem.data != NULL ? &t->key_pem : &t->pem[0], "PRIVATE KEY")) {
        snprintf(err, errlen, "cannot load %s: no PEM private key in it",
                 cfg->key_file ? cfg->key_file : cfg->cert_file);
        return -1;
    }
    return 0;
}

/*
 * --key-process yes, one --cert loaded now (--ocsp-response; client mode's
 * -p): the files read, the certificates parsed, the key one that signs in
 * the key process. A GnuTLS error code, or 1 with err set.
 */
static int load_remote_credentials(struct tls *t, const struct config *cfg, char *err,
                                   size_t errlen)
{
    int ret;

    if (read_pems(t, cfg, err, errlen) < 0 || pems_have_both(t, cfg, err, errlen) < 0)
        return 1;
    fork_key_process(t);
    ret = gnutls_certificate_allocate_credentials(&t->cred);
    if (ret < 0)
        return ret;
    gnutls_certificate_set_flags(t->cred, GNUTLS_CERTIFICATE_SKIP_KEY_CERT_MATCH);
    return use_remote_key(t, 0);
}

struct tls *tls_new(const struct config *cfg, int rfd, int wfd, char *err, size_t errlen)
{
    struct tls *t = tls_alloc(rfd, wfd, err, errlen);
    bool by_name = cfg->n_more_certs > 0 || cfg->sni_strict;
    int ret;

    if (t == NULL)
        return NULL;
    t->cfg = cfg;
    /*
     * The files are read now, while we may; they are parsed once a full
     * handshake needs them: several once the client has named a host, one
     * when GnuTLS asks for it (retrieve_ours()). An OCSP response must be
     * checked against the certificate and is stapled from the credentials,
     * so with --ocsp-response one certificate is loaded now.
     */
    if (by_name || cfg->ocsp_file == NULL) {
        if (read_pems(t, cfg, err, errlen) < 0)
            goto fail;
        if (!by_name && pems_have_both(t, cfg, err, errlen) < 0)
            goto fail;
        fork_key_process(t);
        ret = gnutls_certificate_allocate_credentials(&t->cred);
        if (ret >= 0 && by_name)
            gnutls_certificate_set_flags(t->cred, GNUTLS_CERTIFICATE_SKIP_KEY_CERT_MATCH);
        else if (ret >= 0)
            gnutls_certificate_set_retrieve_function3(t->cred, retrieve_ours);
    } else if (cfg->key_process) {
        ret = load_remote_credentials(t, cfg, err, errlen);
        if (ret > 0)
            goto fail;
    } else {
        ret = load_credentials(cfg, &t->cred);
    }
    if (ret < 0) {
        load_error(cfg, ret, err, errlen);
        goto fail;
    }
    if (cfg->verify_level > 0) {
        if (load_trust(t->cred, cfg, false, err, errlen) < 0 ||
            identity_load_local(cfg, &t->local, err, errlen) < 0)
            goto fail;
        gnutls_certificate_set_verify_function(t->cred, verify_client);
    }
    if (cfg->ocsp_file != NULL)
        staple_ocsp(t, cfg->ocsp_file);
    if (session_setup(t, cfg, GNUTLS_SERVER, err, errlen) < 0)
        goto fail;
    gnutls_session_set_ptr(t->session, t);
    if (by_name)
        gnutls_handshake_set_post_client_hello_function(t->session, on_client_hello);
    if (cfg->verify_level > 0)
        gnutls_certificate_server_set_request(
            t->session, cfg->verify_level == 1 ? GNUTLS_CERT_REQUEST : GNUTLS_CERT_REQUIRE);
    if (cfg->alpn != NULL && set_alpn(t, cfg->alpn, err, errlen) < 0)
        goto fail;
    /* Every process that shares the key file (and -t) accepts the others' tickets. */
    if (cfg->ticket_key != NULL) {
        if (load_ticket_key(t, cfg->ticket_key, err, errlen) < 0)
            goto fail;
        gnutls_db_set_cache_expiration(t->session, (int)cfg->session_timeout);
        ret = gnutls_session_ticket_enable_server(t->session, &t->ticket_key);
        if (ret < 0) {
            snprintf(err, errlen, "session tickets: %s", gnutls_strerror(ret));
            goto fail;
        }
    }
    return t;
fail:
    tls_free(t);
    return NULL;
}

/*
 * Zero every private key block ("-----BEGIN ... PRIVATE KEY-----" to its
 * END line) in a PEM text, in place: the certificates around it stay
 * readable.
 */
static void erase_key_blocks(gnutls_datum_t *pem)
{
    char *p = (char *)pem->data, *end = p + pem->size;

    while (p < end) {
        char *begin = memmem(p, (size_t)(end - p), "-----BEGIN ", 11), *label_end, *stop;

        if (begin == NULL)
            return;
        label_end = memmem(begin + 11, (size_t)(end - begin - 11), "-----", 5);
        if (label_end == NULL)
            return;
        p = label_end + 5;
        if ((size_t)(label_end - begin) < 11 + 11 ||
            memcmp(label_end - 11, "PRIVATE KEY", 11) != 0)
            continue;
        stop = memmem(p, (size_t)(end - p), "-----END ", 9);
        if (stop != NULL)
            stop = memmem(stop + 9, (size_t)(end - stop - 9), "-----", 5);
        stop = stop != NULL ? stop + 5 : end;
        explicit_bzero(begin, (size_t)(stop - begin));
        p = stop;
    }
}

/* In the key process, first thing: what it inherited and must not keep. */
static void forget_for_key_process(void *arg)
{
    struct tls *t = arg;

    if (t->ticket_key.data != NULL)
        explicit_bzero(t->ticket_key.data, t->ticket_key.size);
}

/* The key process for t's keys, with budget requests (0: a connection's). */
static int start_key_process(struct tls *t, unsigned budget, char *err, size_t errlen)
{
    struct keyproc_keys keys;
    size_t i;
    int r;

    memset(&keys, 0, sizeof keys);
    for (i = 0; i < t->n_pem && i < KEYPROC_MAX_KEYS; i++)
        keys.pem[i] = i == 0 && t->key_pem.data != NULL ? t->key_pem : t->pem[i];
    keys.n = i;
    t->link.err = t->error;
    t->link.errlen = sizeof t->error;
    if (t->cfg->listener)
        r = keyproc_holder_start(t->cfg, &keys, forget_for_key_process, t, &t->holder, err,
                                 errlen);
    else
        r = keyproc_start(t->cfg, &keys, budget, forget_for_key_process, t, &t->link, err,
                          errlen);
    if (r < 0)
        return r;
    /* From here on the keys are the key process's only. */
    for (i = 0; i < t->n_pem; i++)
        erase_key_blocks(&t->pem[i]);
    if (t->key_pem.data != NULL) {
        explicit_bzero(t->key_pem.data, t->key_pem.size);
        gnutls_free(t->key_pem.data);
        t->key_pem.data = NULL;
        t->key_pem.size = 0;
    }
    return 0;
}

int tls_holder_link(struct tls *t)
{
    /* A failure's reason is the child's copy of kp_error (tls_child()). */
    if (!t->cfg->key_process || t->n_pem == 0)
        return -1;
    return keyproc_holder_link(&t->holder, t->kp_error, sizeof t->kp_error);
}

void tls_holder_stop(struct tls *t)
{
    keyproc_holder_stop(&t->holder, 1000);
}

bool tls_holder_is(const struct tls *t, pid_t pid)
{
    return t->holder.pid > 0 && t->holder.pid == pid;
}

void tls_child(struct tls *t, int link_fd)
{
    t->child = true;
    keyproc_holder_release(&t->holder);
    t->holder.pid = 0;
    if (!t->cfg->key_process || t->n_pem == 0)
        return;
    if (link_fd < 0) {
        if (t->kp_error[0] == '\0')
            snprintf(t->kp_error, sizeof t->kp_error,
                     "key process: the listener's key holder is not running");
        t->kp_status = -1;
        return;
    }
    keyproc_attach(t->cfg, &t->link, link_fd);
    t->kp_status = 1;
}

int tls_key_process(struct tls *t, char *err, size_t errlen)
{
    if (t->kp_status >= 0)
        return 0;
    snprintf(err, errlen, "%s", t->kp_error);
    return t->kp_status;
}

int tls_generate_ticket_key(const char *file, char *err, size_t errlen)
{
    gnutls_datum_t key = {NULL, 0}, hex = {NULL, 0};
    char tmp[4096];
    int fd, ret;

    /* Written beside the file and renamed over it: readers see old or new, whole. */
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.%ld.tmp", file, (long)getpid()) >= sizeof tmp) {
        snprintf(err, errlen, "%s: path too long", file);
        return -1;
    }
    ret = gnutls_session_ticket_key_generate(&key);
    if (ret >= 0)
        ret = gnutls_hex_encode2(&key, &hex);
    gnutls_free(key.data);
    if (ret < 0) {
        snprintf(err, errlen, "cannot make a key: %s", gnutls_strerror(ret));
        return -1;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, hex.data, hex.size) != (ssize_t)hex.size ||
        write(fd, "\n", 1) != 1 || fsync(fd) < 0 || close(fd) < 0 || rename(tmp, file) < 0) {
        snprintf(err, errlen, "%s: %s", fd < 0 ? tmp : file, strerror(errno));
        if (fd >= 0)
            unlink(tmp);
        gnutls_free(hex.data);
        return -1;
    }
    gnutls_free(hex.data);
    return 0;
}

struct tls *tls_new_client(const struct config *cfg, const char *name, int rfd, int wfd,
                           char *err, size_t errlen)
{
    struct tls *t = tls_alloc(rfd, wfd, err, errlen);
    unsigned char addr[16];
    int ret = 0;

    if (t == NULL)
        return NULL;
    t->cfg = cfg;
    if (cfg->cert_set && cfg->key_process) {
        ret = load_remote_credentials(t, cfg, err, errlen);
        if (ret > 0)
            goto fail;
        if (ret < 0) {
            load_error(cfg, ret, err, errlen);
            goto fail;
        }
    } else if (cfg->cert_set) {
        ret = load_credentials(cfg, &t->cred);
        if (ret < 0) {
            load_error(cfg, ret, err, errlen);
            goto fail;
        }
    } else if ((ret = gnutls_certificate_allocate_credentials(&t->cred)) < 0) {
        snprintf(err, errlen, "%s", gnutls_strerror(ret));
        goto fail;
    }
    /* Verification is on unless -v 0 said otherwise: weakening is explicit. */
    if (cfg->verify_level != 0 && load_trust(t->cred, cfg, true, err, errlen) < 0)
        goto fail;
    if (session_setup(t, cfg, GNUTLS_CLIENT, err, errlen) < 0)
        goto fail;
    /* SNI is for names only (RFC 6066); an address is checked, not sent. */
    if (inet_pton(AF_INET, name, addr) != 1 && inet_pton(AF_INET6, name, addr) != 1)
        gnutls_server_name_set(t->session, GNUTLS_NAME_DNS, name, strlen(name));
    /* GnuTLS keeps the pointer, not a copy: give it our own. */
    snprintf(t->peer_name, sizeof t->peer_name, "%s", name);
    if (cfg->verify_level != 0)
        gnutls_session_set_verify_cert(t->session, t->peer_name, 0);
    return t;
fail:
    tls_free(t);
    return NULL;
}

void tls_attach(struct tls *t, int rfd, int wfd)
{
    t->rfd = rfd;
    t->wfd = wfd;
}

/*
 * The client's identity holds for resumed sessions too: check it here when
 * verify_client() did not run during this handshake.
 */
static enum tls_handshake_result after_handshake(struct tls *t)
{
    if (t->cfg == NULL || t->cfg->client_mode || t->cfg->verify_level <= 0 ||
        t->identity_checked)
        return TLS_HANDSHAKE_OK;
    if (identity_check(t->session, t->cfg, &t->local, &t->id))
        return TLS_HANDSHAKE_OK;
    t->refused = true;
    snprintf(t->error, sizeof t->error, "%s", t->id.reason);
    send_alert(t, GNUTLS_A_ACCESS_DENIED);
    return TLS_HANDSHAKE_REFUSED;
}

static enum tls_handshake_result handshake_run(struct tls *t, unsigned timeout_sec)
{
    long long deadline = now_ms() + (long long)timeout_sec * 1000;
    int ret;

    t->watching = t->cfg != NULL && !t->cfg->client_mode;
    for (;;) {
        ret = gnutls_handshake(t->session);
        if (ret == 0) {
            t->watching = false;
            return after_handshake(t);
        }
        if (t->early) {
            snprintf(t->error, sizeof t->error,
                     "handshake: application data before the handshake was done");
            send_alert(t, GNUTLS_A_UNEXPECTED_MESSAGE);
            return TLS_HANDSHAKE_FAILED;
        }
        if (ret == GNUTLS_E_AGAIN && t->read_eof) {
            snprintf(t->error, sizeof t->error, "handshake: the peer closed the connection");
            return TLS_HANDSHAKE_FAILED;
        }
        if (ret == GNUTLS_E_AGAIN || ret == GNUTLS_E_INTERRUPTED) {
            struct pollfd pfd;
            long long left = deadline - now_ms();
            int n;

            if (gnutls_record_get_direction(t->session) == 1)
                pfd = (struct pollfd){.fd = t->wfd, .events = POLLOUT};
            else
                pfd = (struct pollfd){.fd = t->rfd, .events = POLLIN};
            n = left > 0 ? poll(&pfd, 1, (int)left) : 0;
            if (n == 0) {
                snprintf(t->error, sizeof t->error, "no handshake within %u seconds",
                         timeout_sec);
                return TLS_HANDSHAKE_TIMEOUT;
            }
            continue;
        }
        if (!gnutls_error_is_fatal(ret))
            continue;
        if (t->refused || ret == GNUTLS_E_NO_CERTIFICATE_FOUND ||
            ret == GNUTLS_E_CERTIFICATE_REQUIRED) {
            if (!t->refused)
                snprintf(t->id.reason, sizeof t->id.reason, "no client certificate");
            t->id.verify = "FAILED";
            snprintf(t->error, sizeof t->error, "%s", t->id.reason);
            /* TLS 1.2 has no certificate_required alert; GnuTLS would say
             * decode_error, RFC 5246 (7.4.6) suggests handshake_failure. */
            if (ret == GNUTLS_E_NO_CERTIFICATE_FOUND)
                send_alert(t, GNUTLS_A_HANDSHAKE_FAILURE);
            else
                alert_peer(t, ret);
            return TLS_HANDSHAKE_REFUSED;
        }
        /* Our own certificate or key would not parse (here, or in the key
         * process): the client is told "internal error", the log says which file. */
        if (t->config_error || t->link.bad_key) {
            send_alert(t, GNUTLS_A_INTERNAL_ERROR);
            return TLS_HANDSHAKE_CONFIG;
        }
        /* A reason set by our own hooks (--sni-strict) says more than GnuTLS's. */
        if (t->error[0] == '\0')
            set_error(t, "handshake", ret);
        /* Tell the client why, in a TLS alert: never in clear text. */
        alert_peer(t, ret);
        return TLS_HANDSHAKE_FAILED;
    }
}

enum tls_handshake_result tls_handshake(struct tls *t, unsigned timeout_sec)
{
    enum tls_handshake_result r = handshake_run(t, timeout_sec);

    /* Signatures are for the handshake: the key process ends with it,
     * whatever its outcome (unused, after a resumed one). */
    keyproc_stop(&t->link);
    return r;
}

ssize_t tls_read(struct tls *t, void *buf, size_t len)
{
    ssize_t r;

    for (;;) {
        r = gnutls_record_recv(t->session, buf, len);
        if (r >= 0)
            return r;
        switch (r) {
        case GNUTLS_E_AGAIN:
            if (!t->read_eof)
                return TLS_IO_AGAIN;
            snprintf(t->error, sizeof t->error, "closed without close_notify");
            return TLS_IO_EOF;
        case GNUTLS_E_INTERRUPTED:
        case GNUTLS_E_WARNING_ALERT_RECEIVED:
            continue;
        case GNUTLS_E_PREMATURE_TERMINATION:
            snprintf(t->error, sizeof t->error, "closed without close_notify");
            return TLS_IO_EOF;
        case GNUTLS_E_REHANDSHAKE:
            /* TLS 1.2 renegotiation: refused, and the connection ends. */
            send_alert(t, GNUTLS_A_NO_RENEGOTIATION);
            t->failure = "protocol-error";
            snprintf(t->error, sizeof t->error, "renegotiation refused");
            return TLS_IO_ERROR;
        default:
            if (!gnutls_error_is_fatal((int)r))
                continue;
            return fail(t, "read", (int)r, true);
        }
    }
}

/*
 * As many records as len makes (GnuTLS cuts them at its record size),
 * collected by push() and written with one write(). What the socket does
 * not take now waits in t->out: the relay polls for it (tls_out_pending())
 * and calls tls_flush() before it gives tls_write() more.
 */
ssize_t tls_write(struct tls *t, const void *buf, size_t len)
{
    size_t done = 0;
    ssize_t r = 0;

    if (t->out_start < t->out_end && (r = tls_flush(t)) != 0)
        return r;
    /* What fits in one record is written as it is made: no copy, and an
     * interactive session never touches the batch buffer. */
    t->batching = len > gnutls_record_get_max_size(t->session);
    while (done < len) {
        size_t n = len - done;

        /* After GNUTLS_E_AGAIN, GnuTLS wants the same call again. */
        if (t->send_pending > 0 && n > t->send_pending)
            n = t->send_pending;
        do
            r = gnutls_record_send(t->session, (const unsigned char *)buf + done, n);
        while (r == GNUTLS_E_INTERRUPTED);
        if (r == GNUTLS_E_AGAIN) {
            t->send_pending = n;
            break;
        }
        t->send_pending = 0;
        if (r < 0)
            break;
        done += (size_t)r;
    }
    t->batching = false;
    if (drain_out(t) < 0 && errno != EAGAIN && errno != EINTR) {
        snprintf(t->error, sizeof t->error, "write: %s", strerror(errno));
        t->failure = "reset";
        return TLS_IO_ERROR;
    }
    if (done > 0)
        return (ssize_t)done;
    if (r == GNUTLS_E_AGAIN)
        return TLS_IO_AGAIN;
    return fail(t, "write", (int)r, false);
}

int tls_flush(struct tls *t)
{
    if (drain_out(t) == 0)
        return 0;
    if (errno == EAGAIN || errno == EINTR)
        return TLS_IO_AGAIN;
    snprintf(t->error, sizeof t->error, "write: %s", strerror(errno));
    t->failure = "reset";
    return TLS_IO_ERROR;
}

bool tls_out_pending(const struct tls *t)
{
    return t->out_start < t->out_end;
}

int tls_close_write(struct tls *t)
{
    int r;

    do
        r = gnutls_bye(t->session, GNUTLS_SHUT_WR);
    while (r == GNUTLS_E_INTERRUPTED);
    if (r == GNUTLS_E_AGAIN)
        return TLS_IO_AGAIN;
    if (r < 0)
        return fail(t, "close_notify", r, false);
    return 0;
}

bool tls_pending(struct tls *t)
{
    return t->in_start < t->in_end || gnutls_record_check_pending(t->session) > 0;
}

void tls_preload(struct tls *t, const void *buf, size_t len)
{
    if (len == 0 || (t->in == NULL && (t->in = malloc(TLS_IN_BUF)) == NULL))
        return;
    if (len > TLS_IN_BUF - t->in_end)
        len = TLS_IN_BUF - t->in_end;
    memcpy(t->in + t->in_end, buf, len);
    t->in_end += len;
}

/* Our certificate's algorithms, as HAProxy names them in PP2 sub-TLVs. */
static void own_cert_algs(struct tls *t)
{
    const gnutls_datum_t *der = gnutls_certificate_get_ours(t->session);
    gnutls_x509_crt_t crt;
    unsigned bits = 0;
    int pk;

    if (der == NULL || gnutls_x509_crt_init(&crt) < 0)
        return;
    if (gnutls_x509_crt_import(crt, der, GNUTLS_X509_FMT_DER) >= 0) {
        const char *sig = gnutls_sign_get_name(gnutls_x509_crt_get_signature_algorithm(crt));

        snprintf(t->sig_alg, sizeof t->sig_alg, "%s", sig ? sig : "");
        pk = gnutls_x509_crt_get_pk_algorithm(crt, &bits);
        if (pk == GNUTLS_PK_RSA || pk == GNUTLS_PK_RSA_PSS)
            snprintf(t->key_alg, sizeof t->key_alg, "RSA%u", bits);
        else if (pk == GNUTLS_PK_ECDSA)
            snprintf(t->key_alg, sizeof t->key_alg, "EC%u", bits);
        else if (pk == GNUTLS_PK_EDDSA_ED25519)
            snprintf(t->key_alg, sizeof t->key_alg, "ED25519");
        else if (pk == GNUTLS_PK_EDDSA_ED448)
            snprintf(t->key_alg, sizeof t->key_alg, "ED448");
        else
            snprintf(t->key_alg, sizeof t->key_alg, "%s", gnutls_pk_get_name(pk));
    }
    gnutls_x509_crt_deinit(crt);
}

/* The client certificate's CN, when it sent one. */
static void client_cn(struct tls *t)
{
    unsigned n = 0;
    const gnutls_datum_t *peers = gnutls_certificate_get_peers(t->session, &n);
    gnutls_x509_crt_t crt;
    size_t len = sizeof t->client_cn;

    t->client_cn[0] = '\0';
    if (peers == NULL || n == 0 || gnutls_x509_crt_init(&crt) < 0)
        return;
    if (gnutls_x509_crt_import(crt, &peers[0], GNUTLS_X509_FMT_DER) < 0 ||
        gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, t->client_cn,
                                      &len) < 0)
        t->client_cn[0] = '\0';
    gnutls_x509_crt_deinit(crt);
}

void tls_proxy_facts(struct tls *t, struct proxy_tls *f)
{
    unsigned n = 0;
    bool has_cert = gnutls_certificate_get_peers(t->session, &n) != NULL && n > 0;

    own_cert_algs(t);
    client_cn(t);
    f->version = tls_protocol(t);
    f->cipher = tls_suite(t);
    f->sig_alg = t->sig_alg;
    f->key_alg = t->key_alg;
    f->cn = t->client_cn;
    f->sni = tls_server_name(t);
    f->alpn = tls_alpn(t);
    f->cert_sess = has_cert;
    f->cert_conn = has_cert && !tls_resumed(t);
    f->verified = has_cert && strcmp(t->id.verify, "SUCCESS") == 0;
}

bool tls_wants_write(struct tls *t)
{
    return gnutls_record_get_direction(t->session) == 1;
}

const char *tls_failure(const struct tls *t)
{
    return t->failure != NULL ? t->failure : "error";
}

const char *tls_alert_sent(const struct tls *t)
{
    return t->alert_sent[0] != '\0' ? t->alert_sent : NULL;
}

const char *tls_error(const struct tls *t)
{
    return t->error[0] ? t->error : "unknown error";
}

const char *tls_version(struct tls *t)
{
    const char *s = gnutls_protocol_get_name(gnutls_protocol_get_version(t->session));

    return s ? s : "-";
}

const char *tls_protocol(struct tls *t)
{
    const char *v = tls_version(t);

    /* GnuTLS writes TLS1.3 where mod_ssl and OpenSSL write TLSv1.3. */
    snprintf(t->protocol, sizeof t->protocol, "%s%s", strncmp(v, "TLS", 3) == 0 ? "TLSv" : "",
             strncmp(v, "TLS", 3) == 0 ? v + 3 : v);
    return t->protocol;
}

const char *tls_cipher(struct tls *t)
{
    const char *s = gnutls_cipher_get_name(gnutls_cipher_get(t->session));

    return s ? s : "-";
}

bool tls_resumed(struct tls *t)
{
    return gnutls_session_is_resumed(t->session) != 0;
}

const char *tls_alpn(struct tls *t)
{
    gnutls_datum_t p = {NULL, 0};

    if (gnutls_alpn_get_selected_protocol(t->session, &p) < 0 || p.size == 0 ||
        p.size >= sizeof t->sni)
        return NULL;
    /* sni[] is free once tls_server_name() was read; a copy of its own is safer. */
    memcpy(t->alpn_selected, p.data, p.size);
    t->alpn_selected[p.size] = '\0';
    return t->alpn_selected;
}

const struct identity *tls_identity(const struct tls *t)
{
    return &t->id;
}

const char *tls_warning(const struct tls *t)
{
    return t->warning[0] ? t->warning : NULL;
}

const char *tls_suite(struct tls *t)
{
    const char *s = gnutls_ciphersuite_get(t->session);

    return s ? s : "-";
}

const char *tls_server_name(struct tls *t)
{
    size_t len = sizeof t->sni - 1;
    unsigned int type;

    if (gnutls_server_name_get(t->session, t->sni, &len, &type, 0) < 0 ||
        type != GNUTLS_NAME_DNS)
        return NULL;
    t->sni[sizeof t->sni - 1] = '\0';
    return t->sni;
}

void tls_free(struct tls *t)
{
    if (t == NULL)
        return;
    if (t->session)
        gnutls_deinit(t->session);
    if (t->priority)
        gnutls_priority_deinit(t->priority);
    if (t->cred)
        gnutls_certificate_free_credentials(t->cred);
    identity_free_local(&t->local);
    gnutls_free(t->ticket_key.data);
    while (t->n_pem > 0)
        gnutls_free(t->pem[--t->n_pem].data);
    gnutls_free(t->key_pem.data);
    keyproc_stop(&t->link);
    keyproc_holder_release(&t->holder);
    while (t->n_ours > 0)
        gnutls_pcert_deinit(&t->ours[--t->n_ours]);
    if (t->our_key != NULL)
        gnutls_privkey_deinit(t->our_key);
    free(t->in);
    free(t->out);
    free(t);
}

/* --check ------------------------------------------------------------------ */

static void print_time(FILE *out, const char *label, time_t when)
{
    struct tm tm;
    char buf[32] = "?";

    if (gmtime_r(&when, &tm) != NULL)
        strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%SZ", &tm);
    fprintf(out, "%s %s", label, buf);
}

/* Check each certificate of the file: validity period and chain order. */
static int check_chain(const char *file, FILE *out)
{
    gnutls_datum_t data = {NULL, 0};
    gnutls_x509_crt_t *crts = NULL;
    unsigned int n = 0, i;
    time_t now = time(NULL);
    int bad = 0, ret;

    ret = gnutls_load_file(file, &data);
    if (ret >= 0)
        ret = gnutls_x509_crt_list_import2(&crts, &n, &data, GNUTLS_X509_FMT_PEM, 0);
    gnutls_free(data.data);
    if (ret < 0 || n == 0) {
        fprintf(out, "error: %s: no certificate: %s\n", file,
                ret < 0 ? gnutls_strerror(ret) : "none found");
        return -1;
    }
    for (i = 0; i < n; i++) {
        gnutls_datum_t dn = {NULL, 0};
        time_t from = gnutls_x509_crt_get_activation_time(crts[i]);
        time_t until = gnutls_x509_crt_get_expiration_time(crts[i]);
        const char *state = "ok";

        if (until != (time_t)-1 && until < now) {
            state = "error: expired";
            bad = -1;
        } else if (from != (time_t)-1 && from > now) {
            state = "error: not yet valid";
            bad = -1;
        }
        gnutls_x509_crt_get_dn3(crts[i], &dn, 0);
        fprintf(out, "%s: certificate %u: %s, ", state, i,
                dn.data ? (const char *)dn.data : "?");
        print_time(out, "valid until", until);
        fputc('\n', out);
        gnutls_free(dn.data);
        if (i + 1 < n && !gnutls_x509_crt_check_issuer(crts[i], crts[i + 1])) {
            fprintf(out,
                    "error: certificate %u is not issued by certificate %u: the chain "
                    "must go from the server's certificate up towards the root\n",
                    i, i + 1);
            bad = -1;
        }
    }
    for (i = 0; i < n; i++)
        gnutls_x509_crt_deinit(crts[i]);
    gnutls_free(crts);
    return bad;
}

/* --check for one certificate file (and --key): key match, chain, dates. */
static int check_pair(const char *cert, const char *key, FILE *out)
{
    gnutls_certificate_credentials_t cred = NULL;
    int bad = 0, ret = gnutls_certificate_allocate_credentials(&cred);

    if (ret >= 0)
        ret = gnutls_certificate_set_x509_key_file2(cred, cert, key ? key : cert,
                                                    GNUTLS_X509_FMT_PEM, NULL, 0);
    if (ret == GNUTLS_E_CERTIFICATE_KEY_MISMATCH) {
        fprintf(out, "error: the private key does not match the certificate in %s\n", cert);
        bad = -1;
    } else if (ret < 0) {
        fprintf(out, "error: cannot load %s%s%s: %s\n", cert, key ? " with key " : "",
                key ? key : "", gnutls_strerror(ret));
        bad = -1;
    } else {
        fprintf(out, "ok: key and certificate match in %s%s%s\n", cert, key ? " and " : "",
                key ? key : "");
    }
    if (cred != NULL)
        gnutls_certificate_free_credentials(cred);
    if (check_chain(cert, out) < 0)
        bad = -1;
    return bad;
}

int tls_check(const struct config *cfg, FILE *out)
{
    gnutls_priority_t prio = NULL;
    const char *errpos = NULL;
    int bad = check_pair(cfg->cert_file, cfg->key_file, out), ret;
    size_t i;

    for (i = 0; i < cfg->n_more_certs; i++)
        if (check_pair(cfg->more_certs[i], NULL, out) < 0)
            bad = -1;
    ret = gnutls_priority_init(&prio, cfg->priority, &errpos);
    if (ret < 0) {
        fprintf(out, "error: bad priority string at '%.40s': %s\n", errpos ? errpos : "",
                gnutls_strerror(ret));
        bad = -1;
    } else {
        gnutls_priority_deinit(prio);
        fprintf(out, "ok: priority string\n");
    }
    return bad;
}

int tls_check_key_process(struct tls *t, FILE *out)
{
    static const unsigned char text[] = "tlsfilter --check: a test string";
    const gnutls_datum_t data = {(unsigned char *)text, sizeof text - 1};
    size_t i;
    int bad = 0;

    if (!t->cfg->key_process) {
        fprintf(out, "ok: no key process (--key-process no): the network process holds the "
                     "keys\n");
        return 0;
    }
    /* tls_new() started it, with a signature for each key (cfg->check). */
    if (t->kp_status <= 0) {
        fprintf(out, "error: %s\n",
                t->kp_status < 0 ? t->kp_error : "key process: not started");
        return -1;
    }
    fprintf(out, "ok: the key process started (its root: %s)\n",
            t->cfg->chroot_dir != NULL ? t->cfg->chroot_dir
            : geteuid() == 0           ? "an empty directory"
                                       : "unchanged, not root");
    for (i = 0; i < t->n_pem; i++) {
        gnutls_pcert_st pc = {0};
        unsigned n = 1;
        gnutls_privkey_t key = NULL;
        gnutls_datum_t sig = {NULL, 0};
        gnutls_digest_algorithm_t hash = GNUTLS_DIG_SHA256;
        gnutls_sign_algorithm_t algo = GNUTLS_SIGN_UNKNOWN;
        int ret =
            gnutls_pcert_list_import_x509_raw(&pc, &n, &t->pem[i], GNUTLS_X509_FMT_PEM, 0);

        if (ret >= 0)
            ret = key_of(t, i, &pc, &key);
        if (ret >= 0) {
            gnutls_pubkey_get_preferred_hash_algorithm(pc.pubkey, &hash, NULL);
            algo = gnutls_pk_to_sign(t->keys[i].pk, hash);
            ret = gnutls_privkey_sign_data2(key, algo, 0, &data, &sig);
        }
        if (ret >= 0)
            ret = gnutls_pubkey_verify_data2(pc.pubkey, algo, 0, &data, &sig);
        if (ret < 0) {
            fprintf(out, "error: the key process did not sign with the key of %s: %s\n",
                    t->pem_name[i], t->error[0] ? t->error : gnutls_strerror(ret));
            bad = -1;
        } else {
            fprintf(out, "ok: the key process signed a test string with the key of %s (%s)\n",
                    t->pem_name[i], gnutls_sign_get_name(algo));
        }
        t->error[0] = '\0';
        gnutls_free(sig.data);
        if (key != NULL)
            gnutls_privkey_deinit(key);
        if (n == 1 && pc.pubkey != NULL)
            gnutls_pcert_deinit(&pc);
    }
    keyproc_stop(&t->link);
    return bad;
}
