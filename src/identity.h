/*
 * identity.h: who the client is, by its certificate, and whether it may in.
 */
#ifndef TLSFILTER_IDENTITY_H
#define TLSFILTER_IDENTITY_H

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdbool.h>
#include <stddef.h>

#include "options.h"

struct identity {
    const char *verify; /* SSL_CLIENT_VERIFY: NONE, SUCCESS or FAILED */
    char subject[256];  /* RFC 4514 DN, "" without a certificate */
    char issuer[256];
    char sha256[65];  /* lowercase hex */
    char reason[256]; /* why a client was refused */
};

/* Certificates installed locally, for -v 3: loaded once, from -A and -a. */
struct identity_local {
    gnutls_x509_crt_t *crts;
    size_t n;
};

/* Load -A / -a certificates for -v 3. 0, or -1 with a message in err. */
int identity_load_local(const struct config *cfg, struct identity_local *local, char *err,
                        size_t errlen);

/*
 * Check the client's certificate on session as -v and --allow-client say:
 * verified against the CA list and CRL loaded into the session's
 * credentials, installed locally for -v 3, and matching one allow rule when
 * there are any. Works for full and resumed sessions alike (the peer's
 * certificates are part of a resumed session). Fills id. Returns true when
 * the client may go on.
 */
bool identity_check(gnutls_session_t session, const struct config *cfg,
                    const struct identity_local *local, struct identity *id);

/*
 * Does the rule (subject=DN, san=NAME, sha256=HEX) match crt? Exposed for
 * the unit tests.
 */
bool identity_rule_matches(const char *rule, gnutls_x509_crt_t crt, const char *subject,
                           const char *sha256);

void identity_free_local(struct identity_local *local);

#endif
