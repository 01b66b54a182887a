/*
 * identity.c: client certificates, for the mobile users of the seeds who
 * have no fixed address for hosts.allow.
 *
 * stunnel 3's levels: 0 no certificate asked; 1 verified if presented; 2
 * required and verified; 3 required, verified, and installed locally (in
 * -A or -a). --allow-client narrows who may in by subject, subjectAltName
 * or SHA-256 fingerprint. The check runs after every handshake, full or
 * resumed, so a resumed session cannot slip past a rule added since (and
 * against the CRL of this process, not of the one that issued the ticket).
 */
#include "config.h"

#include "identity.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Record why the client is refused: "what" or "what: detail". Returns false. */
static bool refuse(struct identity *id, const char *what, const char *detail)
{
    id->verify = "FAILED";
    snprintf(id->reason, sizeof id->reason, "%s%s%s", what, detail ? ": " : "",
             detail ? detail : "");
    return false;
}

/* Append the certificates of one PEM file to local. */
static int add_file(struct identity_local *local, const char *path)
{
    gnutls_datum_t data = {NULL, 0};
    gnutls_x509_crt_t *crts = NULL, *grown;
    unsigned int n = 0, i;
    int ret = gnutls_load_file(path, &data);

    if (ret >= 0)
        ret = gnutls_x509_crt_list_import2(&crts, &n, &data, GNUTLS_X509_FMT_PEM, 0);
    gnutls_free(data.data);
    if (ret < 0)
        return ret;
    grown = realloc(local->crts, (local->n + n) * sizeof *grown);
    if (grown == NULL) {
        for (i = 0; i < n; i++)
            gnutls_x509_crt_deinit(crts[i]);
        gnutls_free(crts);
        return GNUTLS_E_MEMORY_ERROR;
    }
    local->crts = grown;
    for (i = 0; i < n; i++)
        local->crts[local->n++] = crts[i];
    gnutls_free(crts);
    return 0;
}

int identity_load_local(const struct config *cfg, struct identity_local *local, char *err,
                        size_t errlen)
{
    int ret;

    memset(local, 0, sizeof *local);
    if (cfg->verify_level != 3)
        return 0;
    ret = cfg->ca_file != NULL ? add_file(local, cfg->ca_file) : 0;
    if (ret < 0) {
        snprintf(err, errlen, "-A %s: %s", cfg->ca_file, gnutls_strerror(ret));
        return -1;
    }
    if (cfg->ca_dir != NULL) {
        DIR *d = opendir(cfg->ca_dir);
        const struct dirent *e;
        char path[4096];

        if (d == NULL) {
            snprintf(err, errlen, "-a %s: cannot open the directory", cfg->ca_dir);
            return -1;
        }
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.')
                continue;
            if ((size_t)snprintf(path, sizeof path, "%s/%s", cfg->ca_dir, e->d_name) <
                sizeof path)
                (void)add_file(local, path); /* not every file is a certificate */
        }
        closedir(d);
    }
    return 0;
}

void identity_free_local(struct identity_local *local)
{
    size_t i;

    for (i = 0; i < local->n; i++)
        gnutls_x509_crt_deinit(local->crts[i]);
    free(local->crts);
    memset(local, 0, sizeof *local);
}

/* "AB:cd:01" or "abcd01" as lowercase hex without separators. */
static void normalise_hex(const char *in, char *out, size_t len)
{
    size_t o = 0;

    for (; *in != '\0' && o + 1 < len; in++)
        if (*in != ':')
            out[o++] = (char)((*in >= 'A' && *in <= 'F') ? *in - 'A' + 'a' : *in);
    out[o] = '\0';
}

bool identity_rule_matches(const char *rule, gnutls_x509_crt_t crt, const char *subject,
                           const char *sha256)
{
    char want[160];
    unsigned int i;

    if (strncmp(rule, "subject=", 8) == 0)
        return strcmp(rule + 8, subject) == 0;
    if (strncmp(rule, "sha256=", 7) == 0) {
        normalise_hex(rule + 7, want, sizeof want);
        return strcmp(want, sha256) == 0;
    }
    if (strncmp(rule, "san=", 4) != 0)
        return false;
    /* DNS names, e-mail addresses and URIs, compared without regard to case. */
    for (i = 0;; i++) {
        char name[256];
        size_t size = sizeof name - 1;
        int type = gnutls_x509_crt_get_subject_alt_name(crt, i, name, &size, NULL);

        if (type == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
            return false;
        if (type < 0)
            continue;
        name[size < sizeof name ? size : sizeof name - 1] = '\0';
        if ((type == GNUTLS_SAN_DNSNAME || type == GNUTLS_SAN_RFC822NAME ||
             type == GNUTLS_SAN_URI) &&
            strcasecmp(name, rule + 4) == 0)
            return true;
    }
}

static void describe(gnutls_x509_crt_t crt, struct identity *id)
{
    gnutls_datum_t dn = {NULL, 0};
    unsigned char digest[32];
    size_t size = sizeof digest, i;

    if (gnutls_x509_crt_get_dn3(crt, &dn, 0) >= 0)
        snprintf(id->subject, sizeof id->subject, "%s", (const char *)dn.data);
    gnutls_free(dn.data);
    dn.data = NULL;
    if (gnutls_x509_crt_get_issuer_dn3(crt, &dn, 0) >= 0)
        snprintf(id->issuer, sizeof id->issuer, "%s", (const char *)dn.data);
    gnutls_free(dn.data);
    if (gnutls_x509_crt_get_fingerprint(crt, GNUTLS_DIG_SHA256, digest, &size) >= 0)
        for (i = 0; i < size && i < 32; i++)
            snprintf(id->sha256 + 2 * i, 3, "%02x", digest[i]);
}

bool identity_check(gnutls_session_t session, const struct config *cfg,
                    const struct identity_local *local, struct identity *id)
{
    const gnutls_datum_t *peers;
    gnutls_x509_crt_t crt = NULL;
    unsigned int n = 0, status = 0;
    bool ok = false;
    size_t i;
    int ret;

    memset(id, 0, sizeof *id);
    id->verify = "NONE";
    if (cfg->verify_level <= 0)
        return true;
    peers = gnutls_certificate_get_peers(session, &n);
    if (peers == NULL || n == 0)
        return cfg->verify_level == 1 ? true : refuse(id, "no client certificate", NULL);
    if (gnutls_x509_crt_init(&crt) < 0 ||
        gnutls_x509_crt_import(crt, &peers[0], GNUTLS_X509_FMT_DER) < 0) {
        refuse(id, "unreadable client certificate", NULL);
        goto out;
    }
    describe(crt, id);
    ret = gnutls_certificate_verify_peers3(session, NULL, &status);
    if (ret < 0) {
        refuse(id, "client certificate", gnutls_strerror(ret));
        goto out;
    }
    if (status != 0) {
        gnutls_datum_t text = {NULL, 0};
        gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &text, 0);
        refuse(id, "client certificate", text.data ? (const char *)text.data : "invalid");
        gnutls_free(text.data);
        goto out;
    }
    if (cfg->verify_level == 3) {
        for (i = 0; i < local->n && !gnutls_x509_crt_equals(local->crts[i], crt); i++)
            ;
        if (i == local->n) {
            refuse(id, "client certificate is not installed locally (-v 3)", NULL);
            goto out;
        }
    }
    if (cfg->n_allow_client > 0) {
        for (i = 0; i < cfg->n_allow_client; i++)
            if (identity_rule_matches(cfg->allow_client[i], crt, id->subject, id->sha256))
                break;
        if (i == cfg->n_allow_client) {
            refuse(id, "client certificate matches no --allow-client rule", NULL);
            goto out;
        }
    }
    id->verify = "SUCCESS";
    ok = true;
out:
    if (crt != NULL)
        gnutls_x509_crt_deinit(crt);
    return ok;
}
