/*
 * unit-backend.c: how -r is split and resolved.
 */
#include "config.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <sysexits.h>

#include "backend.h"
#include "tap.h"

static int split(const char *spec, const char *want_host, const char *want_port)
{
    char host[256], port[64], err[256];

    if (backend_split(spec, host, sizeof host, port, sizeof port, err, sizeof err) < 0)
        return 0;
    return strcmp(host, want_host) == 0 && strcmp(port, want_port) == 0;
}

static int split_fails(const char *spec)
{
    char host[256], port[64], err[256];

    return backend_split(spec, host, sizeof host, port, sizeof port, err, sizeof err) < 0 &&
           err[0] != '\0';
}

static unsigned port_of(const struct addrinfo *ai)
{
    if (ai->ai_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)ai->ai_addr)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)ai->ai_addr)->sin6_port);
}

int main(void)
{
    struct config cfg;
    struct backend b;
    char err[256];

    TAP_OK(split("143", "", "143"), "port alone: loopback");
    TAP_OK(split("imap", "", "imap"), "service name alone");
    TAP_OK(split("localhost:25", "localhost", "25"), "host:port");
    TAP_OK(split("192.0.2.1:smtp", "192.0.2.1", "smtp"), "IPv4:service");
    TAP_OK(split("[::1]:143", "::1", "143"), "[IPv6]:port");
    TAP_OK(split("::1:143", "::1", "143"), "IPv6:port split on the last colon");
    TAP_OK(split("2001:db8::5:110", "2001:db8::5", "110"), "longer IPv6 on the last colon");
    TAP_OK(split(":143", "", "143"), "empty host is the loopback");
    TAP_OK(split_fails("[::1]"), "[IPv6] without a port refused");
    TAP_OK(split_fails("[::1"), "unclosed bracket refused");
    TAP_OK(split_fails("host:"), "empty port refused");
    TAP_OK(split_fails("host:a/b"), "junk port refused");

    memset(&cfg, 0, sizeof cfg);
    cfg.connect = "imap";
    TAP_OK(backend_resolve(&cfg, &b, err, sizeof err) == 0 && b.ai != NULL &&
               port_of(b.ai) == 143,
           "-r imap resolves to port 143 (%s)", err);
    backend_free(&b);
    cfg.connect = "2525";
    TAP_OK(backend_resolve(&cfg, &b, err, sizeof err) == 0 && b.ai != NULL, "-r 2525");
    if (b.ai != NULL) {
        const struct addrinfo *ai;
        int all_loopback = 1;
        for (ai = b.ai; ai != NULL; ai = ai->ai_next) {
            if (ai->ai_family == AF_INET)
                all_loopback &= ntohl(((struct sockaddr_in *)ai->ai_addr)->sin_addr.s_addr) ==
                                INADDR_LOOPBACK;
            else
                all_loopback &=
                    IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr);
        }
        TAP_OK(all_loopback, "a bare port means the loopback only, never a wildcard");
    }
    backend_free(&b);
    cfg.connect = "no-such-service-xyz";
    TAP_OK(backend_resolve(&cfg, &b, err, sizeof err) == EX_CONFIG &&
               strstr(err, "no-such-service-xyz") != NULL,
           "unknown service is a configuration error naming it");
    cfg.connect = "/run/dovecot/imap.sock";
    TAP_OK(backend_resolve(&cfg, &b, err, sizeof err) == 0 && b.is_unix &&
               strcmp(b.un.sun_path, "/run/dovecot/imap.sock") == 0,
           "-r /path is a Unix socket");
    cfg.connect = "127.0.0.1:25";
    cfg.bind_addr = "127.0.0.2";
    TAP_OK(backend_resolve(&cfg, &b, err, sizeof err) == 0 && b.bind_ai != NULL,
           "-I resolved with -r");
    backend_free(&b);
    return tap_done();
}
