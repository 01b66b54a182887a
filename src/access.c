/*
 * access.c: TCP wrappers, asked once before the handshake.
 *
 * libwrap is given the client's address as text (and as a sockaddr, so
 * that rules naming hosts can be resolved lazily); never the fd, because
 * under socat fd 0 is a socketpair and libwrap would match it as the local
 * host. --hosts-allow/--hosts-deny point libwrap at other tables.
 */
#include "config.h"

#include "access.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <stdio.h>
#include <syslog.h>

#ifdef HAVE_LIBWRAP
#include <tcpd.h>

/* libwrap's own messages (bad rules) go to syslog at these levels. */
int allow_severity = LOG_INFO;
int deny_severity = LOG_WARNING;

#ifdef LIBWRAP_STATIC
#include <unistd.h>
int yp_get_default_domain(char **out);

/*
 * libwrap.a calls this, from libnsl, for the NIS domain of @netgroup rules;
 * it is what libnsl's does: the host's domain name, or YPERR_NODOM (12).
 * Linking libnsl for it would load libtirpc and Kerberos at every
 * connection.
 */
int yp_get_default_domain(char **out)
{
    static char domain[256];

    if (getdomainname(domain, sizeof domain - 1) < 0 || domain[0] == '\0' ||
        strcmp(domain, "(none)") == 0)
        return 12;
    *out = domain;
    return 0;
}
#endif
#endif

const char *access_service(const struct config *cfg, char *buf, size_t len)
{
    const char *s = cfg->service_set ? cfg->service : NULL;

    if (s == NULL && cfg->exec_path != NULL) {
        s = strrchr(cfg->exec_path, '/');
        s = s != NULL ? s + 1 : cfg->exec_path;
    }
    if (s == NULL && cfg->connect != NULL) {
        const char *colon = strrchr(cfg->connect, ':');
        s = colon != NULL ? colon + 1 : cfg->connect;
        if (cfg->connect[0] == '/')
            s = strrchr(cfg->connect, '/') + 1;
    }
    snprintf(buf, len, "%s", s != NULL && *s != '\0' ? s : cfg->service);
    return buf;
}

bool access_available(void)
{
#ifdef HAVE_LIBWRAP
    return true;
#else
    return false;
#endif
}

#ifdef HAVE_LIBWRAP
int access_check_jail(const struct config *cfg, char *err, size_t errlen)
{
    const char *tables[2] = {cfg->hosts_allow ? cfg->hosts_allow : hosts_allow_table,
                             cfg->hosts_deny ? cfg->hosts_deny : hosts_deny_table};
    char path[4096];
    struct stat st;
    size_t i;

    if (!cfg->libwrap || cfg->chroot_dir == NULL)
        return 0;
    for (i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s%s", cfg->chroot_dir, tables[i]);
        if (stat(path, &st) < 0) {
            snprintf(err, errlen,
                     "TCP wrappers read %s inside the --chroot with --accept-proxy: %s "
                     "(copy the tables there)",
                     tables[i], strerror(errno));
            return -1;
        }
    }
    return 0;
}

bool access_allowed(const struct config *cfg, const struct peer *p, const char *service)
{
    struct request_info req;
    union {
        struct sockaddr sa;
        struct sockaddr_in s4;
        struct sockaddr_in6 s6;
    } sin;

    if (!cfg->libwrap)
        return true;
    if (cfg->hosts_allow != NULL)
        hosts_allow_table = (char *)cfg->hosts_allow;
    if (cfg->hosts_deny != NULL)
        hosts_deny_table = (char *)cfg->hosts_deny;
    request_init(&req, RQ_DAEMON, service, 0);
    if (p->known) {
        memset(&sin, 0, sizeof sin);
        if (inet_pton(AF_INET, p->addr, &sin.s4.sin_addr) == 1)
            sin.s4.sin_family = AF_INET;
        else if (inet_pton(AF_INET6, p->addr, &sin.s6.sin6_addr) == 1)
            sin.s6.sin6_family = AF_INET6;
        request_set(&req, RQ_CLIENT_ADDR, p->addr, RQ_CLIENT_SIN, &sin.sa, 0);
        sock_methods(&req);
    }
    return hosts_access(&req) != 0;
}
#else
int access_check_jail(const struct config *cfg, char *err, size_t errlen)
{
    (void)cfg, (void)err, (void)errlen;
    return 0;
}

bool access_allowed(const struct config *cfg, const struct peer *p, const char *service)
{
    (void)cfg, (void)p, (void)service;
    return true;
}
#endif
