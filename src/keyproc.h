/*
 * keyproc.h: the key process, the one process that holds the private keys.
 * It signs for the network process over a socketpair, a bounded number of
 * times per connection, and does nothing else.
 */
#ifndef TLSFILTER_KEYPROC_H
#define TLSFILTER_KEYPROC_H

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "options.h"

/* The keys of one tlsfilter: one per --cert (the first may come from --key). */
#define KEYPROC_MAX_KEYS 8

/*
 * Signatures one connection may ask for: a full handshake needs one (TLS
 * 1.3 CertificateVerify, TLS 1.2 ECDHE ServerKeyExchange, or a client
 * certificate's CertificateVerify in client mode), a resumed one none.
 */
#define KEYPROC_MAX_REQUESTS 1

/*
 * The key holder's side: the PEM texts that hold the keys (the whole file
 * text: the key block is found in it), parsed at the first request for
 * each, so that a connection that signs nothing parses nothing.
 */
struct keyproc_keys {
    gnutls_datum_t pem[KEYPROC_MAX_KEYS];
    gnutls_privkey_t key[KEYPROC_MAX_KEYS];
    size_t n;
};

/*
 * Answer sign requests read from fd until the other side closes it, a
 * malformed request, a request past `budget` answered ones (refused, with
 * an answer that says so), or deadline_ms (CLOCK_MONOTONIC, as now_ms()).
 * Knows nothing of processes: a long-lived key holder can call it once per
 * connection, on that connection's socket, with that connection's budget.
 * Returns the number of signatures made, or -1 when it ended on a refusal,
 * a malformed request or the deadline.
 */
int keyproc_serve(struct keyproc_keys *k, int fd, unsigned budget, long long deadline_ms);

/* Wipe and free what keyproc_serve() parsed (not the PEM texts). */
void keyproc_keys_clear(struct keyproc_keys *k);

/*
 * The network side's end of the link to a key holder. err points at the
 * session's error text: a failed signature says why there ("key process:
 * ..."), for the handshake's log line.
 */
struct keyproc_link {
    int fd;              /* -1 when there is no key process (any more) */
    pid_t pid;           /* ours to reap, or 0 */
    unsigned timeout_ms; /* for one answer */
    bool bad_key;        /* a key did not parse: a configuration error */
    char *err;
    size_t errlen;
#ifdef TEST_HOOKS
    const char *hook; /* TLSFILTER_TEST_KEYPROC: past-bound, truncated */
#endif
};

/* One key, as the network process sees it: where to ask, and its type. */
struct keyproc_key {
    struct keyproc_link *link;
    unsigned index;
    gnutls_pk_algorithm_t pk;
    unsigned bits;
    const char *name; /* the key's file, for the log */
};

/*
 * Fork the key process for k: it keeps k and nothing else, gives up its
 * privileges as cfg says (-s, -g; the --chroot directory, or, as root, an
 * empty directory made for it and removed at once), closes every other
 * descriptor, and serves one connection's requests (KEYPROC_MAX_REQUESTS
 * of them, or `budget` when not 0) until --timeout-handshake. forget(arg)
 * runs in the child first, to wipe what it inherited and must not keep.
 * Returns once the child said it is ready: 0 with link->fd (close-on-exec)
 * and link->pid set; -2 when it could not give up its privileges, -1 on
 * any other failure, with the child's (or fork's) reason in err.
 */
int keyproc_start(const struct config *cfg, struct keyproc_keys *k, unsigned budget,
                  void (*forget)(void *), void *arg, struct keyproc_link *link, char *err,
                  size_t errlen);

/*
 * The listener's key holder (xinetd wait = yes, systemd Accept=no): one key
 * process for every child, forked when the listener loads its keys (and
 * again at each reload), so that no fork is added per connection and the
 * long-lived, privileged listener itself keeps no key once it is started.
 * It gives up its privileges and enters its sandbox like a per-connection
 * key process, and serves each connection's socketpair, which the listener
 * hands it (SCM_RIGHTS) for each child it forks, with a connection's
 * budget and deadline. A child never talks to the listener. ctl is the
 * listener's end of the control socket.
 */
struct keyproc_holder {
    int ctl; /* -1 when there is none */
    pid_t pid;
};

/* Start it (0), or -1 (-2: it could not give up its privileges) with err. */
int keyproc_holder_start(const struct config *cfg, struct keyproc_keys *k,
                         void (*forget)(void *), void *arg, struct keyproc_holder *h, char *err,
                         size_t errlen);

/*
 * For a connection about to be forked: a new socketpair, one end handed to
 * the holder, the other returned (close-on-exec) for the child to sign
 * through (keyproc_attach()). -1 with err when the holder is not there or
 * does not take it.
 */
int keyproc_holder_link(struct keyproc_holder *h, char *err, size_t errlen);

/* Let it go: it finishes the connections it has, then exits (reaped by
 * the listener's reaping of its children). No wait here. */
void keyproc_holder_release(struct keyproc_holder *h);

/* The listener exits: let the holder go and reap it (its CPU time is the
 * listener's to account for), waiting up to ms for it to end. */
void keyproc_holder_stop(struct keyproc_holder *h, unsigned ms);

/* In the listener's child: sign through fd, the link made for it. */
void keyproc_attach(const struct config *cfg, struct keyproc_link *link, int fd);

/*
 * Have the key process parse key kk now (several --cert: each file chosen
 * for a handshake is checked whole, as when it was parsed here). 0, or a
 * GnuTLS error with the reason in the link's err (link->bad_key: the key
 * does not load, a configuration error).
 */
int keyproc_check(struct keyproc_key *kk);

/*
 * In a child forked for something else (the -l program's stderr logger):
 * close the network side's end of the live link, which a fork inherits
 * (exec does not: it is close-on-exec).
 */
void keyproc_close_inherited(void);

/* Close the link (the key process exits on it) and reap the process. */
void keyproc_stop(struct keyproc_link *link);

/*
 * A GnuTLS private key that signs through the link (sign_data and
 * sign_hash; no decryption). kk must live as long as the key. A GnuTLS
 * error code.
 */
int keyproc_privkey(gnutls_privkey_t *out, struct keyproc_key *kk);

#endif
