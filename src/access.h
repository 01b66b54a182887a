/*
 * access.h: TCP wrappers (hosts.allow / hosts.deny).
 */
#ifndef TLSFILTER_ACCESS_H
#define TLSFILTER_ACCESS_H

#include <stdbool.h>
#include <stddef.h>

#include "options.h"
#include "peer.h"

/*
 * The service name libwrap matches on: -N when given, else stunnel 3's rule:
 * the port part of -r as written (imap for "-r imap" or "-r localhost:imap"),
 * or the basename of the -l program. Written into buf; returns buf.
 */
const char *access_service(const struct config *cfg, char *buf, size_t len);

/*
 * Ask TCP wrappers whether the client may use the service, matching the
 * real client address (from the socket or the launcher's environment; an
 * unknown address matches as unknown, never as localhost). Returns true
 * when allowed, or when tlsfilter is built without libwrap or a stunnel
 * configuration file says "libwrap = no".
 */
bool access_allowed(const struct config *cfg, const struct peer *p, const char *service);

/*
 * With --accept-proxy the tables are read after the chroot (the address to
 * judge comes from the header, which is read with privileges dropped): both
 * must then exist inside the jail, or a missing hosts.deny would allow all.
 * 0, or -1 with a message in err.
 */
int access_check_jail(const struct config *cfg, char *err, size_t errlen);

/* Whether this build has TCP wrappers. */
bool access_available(void);

#endif
