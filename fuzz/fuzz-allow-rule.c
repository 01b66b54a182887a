/*
 * fuzz-allow-rule.c: --allow-client rules, identity_rule_matches().
 *
 * The input is the rule (made a NUL-terminated string); the certificate is
 * fixed: a self-signed P-256 certificate with DNS, e-mail and URI names,
 * embedded below, parsed once. The subject and fingerprint are passed as
 * identity_check() would pass them.
 */
#include "config.h"

#include "fuzz.h"
#include "identity.h"

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdlib.h>
#include <string.h>

/* CN=fuzz.example, O=tlsfilter fuzz; SAN DNS, email and URI. */
static const char cert_pem[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIB+jCCAaGgAwIBAgIUASg+RbJauHwY9MQMdRmA71xS5ogwCgYIKoZIzj0EAwIw\n"
    "MDEVMBMGA1UEAwwMZnV6ei5leGFtcGxlMRcwFQYDVQQKDA50bHNmaWx0ZXIgZnV6\n"
    "ejAgFw0yNjExMjIyMDE1MDBaGA8yMTI2MTAyOTIwMTUwMFowMDEVMBMGA1UEAwwM\n"
    "ZnV6ei5leGFtcGxlMRcwFQYDVQQKDA50bHNmaWx0ZXIgZnV6ejBZMBMGByqGSM49\n"
    "AgEGCCqGSM49AwEHA0IABBzk6iHvXnHsgtKjDGHzpIFws8vgMu0Ny7XB7Ml6vg2f\n"
    "dp9jlk2vREWXlq/kFmXqr1MdYyD+khFFq8MkG+p2ivejgZYwgZMwHQYDVR0OBBYE\n"
    "FG+03FQsUF5T3CmaHTtXiVpF//4WMB8GA1UdIwQYMBaAFG+03FQsUF5T3CmaHTtX\n"
    "iVpF//4WMA8GA1UdEwEB/wQFMAMBAf8wQAYDVR0RBDkwN4IMZnV6ei5leGFtcGxl\n"
    "gRBmdXp6QGV4YW1wbGUub3JnhhVodHRwczovL2Z1enouZXhhbXBsZS8wCgYIKoZI\n"
    "zj0EAwIDRwAwRAIgKebpFJoQi00K8uC9dD+M+1hX0N+ooU48ruFaiMeisNkCIG6l\n"
    "LhavaTQc7JZVkROnb3b4EDvu8+ZE772SXPQ/T3Gn\n"
    "-----END CERTIFICATE-----\n";

static const char subject[] = "O=tlsfilter fuzz,CN=fuzz.example";
static const char sha256[] = "b22e74b2da2f9693abf93c3940f89d6565e670d4144c70bb4fc830df61485b19";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static gnutls_x509_crt_t crt;
    char *rule;

    if (crt == NULL) {
        gnutls_datum_t pem = {(unsigned char *)cert_pem, sizeof cert_pem - 1};

        if (gnutls_x509_crt_init(&crt) < 0 ||
            gnutls_x509_crt_import(crt, &pem, GNUTLS_X509_FMT_PEM) < 0)
            abort();
    }
    rule = malloc(size + 1);
    if (rule == NULL)
        return 0;
    memcpy(rule, data, size);
    rule[size] = '\0';
    (void)identity_rule_matches(rule, crt, subject, sha256);
    free(rule);
    return 0;
}
