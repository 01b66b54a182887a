/*
 * tls.h: the TLS side of one connection. The only module that talks to
 * GnuTLS; the record layer is hidden behind the same small return
 * convention the plain-fd helpers of relay.c use.
 */
#ifndef TLSFILTER_TLS_H
#define TLSFILTER_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#include "options.h"

/* Return values of tls_read(), tls_write() and tls_close_write(), besides >= 0. */
#define TLS_IO_AGAIN (-1) /* wait for tls_wants_write() ? fd 1 writable : fd 0 readable */
#define TLS_IO_EOF (-2)   /* the peer's TCP closed without close_notify */
#define TLS_IO_ERROR (-3) /* fatal: tls_error() says why */

enum tls_handshake_result {
    TLS_HANDSHAKE_OK,
    TLS_HANDSHAKE_FAILED,  /* a TLS failure (exit 76) */
    TLS_HANDSHAKE_REFUSED, /* the client's certificate was refused (exit 77) */
    TLS_HANDSHAKE_TIMEOUT,
    TLS_HANDSHAKE_CONFIG /* our certificate or key did not parse (exit 78) */
};

struct identity;

struct tls;

/*
 * Load the credentials and the priority string for a server session on
 * rfd/wfd, cheaply: no key/certificate match signature, no trust store.
 * Returns NULL with a message in err on failure (a configuration error).
 */
struct tls *tls_new(const struct config *cfg, int rfd, int wfd, char *err, size_t errlen);

/*
 * For -c: a client session on rfd/wfd towards a server that must present a
 * certificate valid for `name` (a DNS name or an IP address literal), signed
 * by a CA from cfg->ca_file / cfg->ca_dir, or the system's trust store when
 * neither is given; cfg->verify_level 0 turns verification off (explicitly).
 * SNI carries `name` unless it is an address. A certificate of our own is
 * presented only when -p was given. NULL with a message in err on failure.
 */
struct tls *tls_new_client(const struct config *cfg, const char *name, int rfd, int wfd,
                           char *err, size_t errlen);

/* Point the session at its fds, when they were not known at tls_new_client(). */
void tls_attach(struct tls *t, int rfd, int wfd);

/*
 * The listener (wait = yes, Accept=no): parse now, once, the certificate and
 * key that each process would otherwise parse at its first full handshake,
 * so that every child inherits them parsed. 0, or -1 with a message.
 */
int tls_prepare(struct tls *t, char *err, size_t errlen);

/*
 * The listener, before it forks a child: with --key-process, a new link to
 * the listener's key holder for that child (keyproc.h), or -1 (none: no
 * key process, or the holder is not there; the child then says why).
 */
int tls_holder_link(struct tls *t);

/* The listener, as it exits: its key holder let go and reaped. */
void tls_holder_stop(struct tls *t);

/* The listener: is pid its current key holder? */
bool tls_holder_is(const struct tls *t, pid_t pid);

/*
 * The listener's child, right after the fork: it closes the holder's
 * control socket (a child never talks to the listener's processes but
 * through its own link) and, with --key-process, signs through link_fd
 * (from tls_holder_link()); no key process is forked. A missing link is
 * reported by tls_key_process().
 */
void tls_child(struct tls *t, int link_fd);

/*
 * --check: load everything as tls_new() does and, in addition, check that
 * the key matches the certificate, the chain is in order and every
 * certificate is within its validity period. Writes one line per finding to
 * out. Returns 0 when all is well.
 */
int tls_check(const struct config *cfg, FILE *out);

/*
 * --key-process yes (the default): tls_new() and tls_new_client() fork the
 * key process (keyproc.c) as soon as the files are read; it keeps the
 * private keys, and every copy of them here is erased. This says how that
 * went, before privileges are dropped: 0 (also without keys, or with
 * --key-process no), or -1 (-2: the key process could not drop its
 * privileges) with the reason in err.
 */
int tls_key_process(struct tls *t, char *err, size_t errlen);

/*
 * --check: start a key process for t's keys and have it sign a test string
 * with each of them (verified with the certificate). One line per finding
 * to out; 0 when all is well.
 */
int tls_check_key_process(struct tls *t, FILE *out);

/*
 * Run the server handshake with non-blocking I/O until done, failed, or
 * timeout_sec seconds have passed. On failure, tls_error() says why. The
 * key process, if any, is done with once it returns.
 */
enum tls_handshake_result tls_handshake(struct tls *t, unsigned timeout_sec);

/*
 * Decrypted bytes into buf: > 0 bytes, 0 at close_notify, or TLS_IO_*.
 * A renegotiation request is refused with an alert and is TLS_IO_ERROR.
 */
ssize_t tls_read(struct tls *t, void *buf, size_t len);

/*
 * Encrypt up to len bytes from buf into records and send them with one
 * write(): > 0 bytes taken, or TLS_IO_*. Records the socket did not take
 * yet are kept (tls_out_pending()); while there are some, tls_write()
 * only tries to send them and says TLS_IO_AGAIN. After TLS_IO_AGAIN call
 * again with the same buf (at least as many bytes as before): the record
 * already built is sent first.
 */
ssize_t tls_write(struct tls *t, const void *buf, size_t len);

/* Send the records tls_write() kept: 0 when none is left, or TLS_IO_*. */
int tls_flush(struct tls *t);

/* True while records made by tls_write() wait for the socket (poll POLLOUT). */
bool tls_out_pending(const struct tls *t);

/* Send close_notify (no more data to the client): 0, or TLS_IO_*. */
int tls_close_write(struct tls *t);

/* True when decrypted bytes wait inside GnuTLS, where poll() cannot see them. */
bool tls_pending(struct tls *t);

/*
 * Bytes already read from the peer that belong to the TLS stream (what
 * followed a PROXY header in the same read): GnuTLS is given them first.
 */
void tls_preload(struct tls *t, const void *buf, size_t len);

struct proxy_tls;
/* The facts a PROXY v2 header carries, valid after the handshake; the
 * strings live as long as t. */
void tls_proxy_facts(struct tls *t, struct proxy_tls *f);

/* After TLS_IO_AGAIN: true when GnuTLS waits to write (poll fd 1 for POLLOUT). */
bool tls_wants_write(struct tls *t);

/* Why the last call failed, for the log line. */
const char *tls_error(const struct tls *t);

/*
 * After TLS_IO_ERROR, what kind of end it was, for the close line:
 *   "reset"           the transport failed (a TCP reset, EPIPE): nothing sent
 *   "alert"           the peer sent a fatal alert: nothing sent back
 *   "protocol-error"  what the peer sent broke TLS (or asked for a
 *                     renegotiation): the fatal alert the error calls for
 *                     was sent, as far as the socket took it
 *   "error"           a failure on our side: an alert was sent too
 */
const char *tls_failure(const struct tls *t);

/* The name of the fatal alert we sent (illegal_parameter...), or NULL. */
const char *tls_alert_sent(const struct tls *t);

/* Facts for the log line, valid after the handshake. */
const char *tls_version(struct tls *t);
const char *tls_cipher(struct tls *t);
/* The version as mod_ssl and OpenSSL write it: TLSv1.3. */
const char *tls_protocol(struct tls *t);
/* The cipher suite's IANA name (TLS_AES_256_GCM_SHA384), as SSL_CIPHER gives it. */
const char *tls_suite(struct tls *t);
/* The SNI name the client sent, or NULL. */
const char *tls_server_name(struct tls *t);

/* Whether the session was resumed from a ticket. */
bool tls_resumed(struct tls *t);
/* The ALPN protocol agreed on, or NULL. */
const char *tls_alpn(struct tls *t);
/* The client's certificate as checked (-v), for the log and SSL_CLIENT_*. */
const struct identity *tls_identity(const struct tls *t);
/* A problem found while loading that is worth a log line but not fatal
 * (an OCSP response that is not stapled), or NULL. */
const char *tls_warning(const struct tls *t);

/*
 * --generate-ticket-key: write a new random key to file (mode 0600), by
 * rename, so that processes reading it see the old key or the new one.
 * 0, or -1 with a message in err.
 */
int tls_generate_ticket_key(const char *file, char *err, size_t errlen);

void tls_free(struct tls *t);

#endif
