/*
 * privs.h: the one place where privileges are given up.
 */
#ifndef TLSFILTER_PRIVS_H
#define TLSFILTER_PRIVS_H

#include <stddef.h>

#include "options.h"

/*
 * Look up cfg->user and cfg->group (names or numbers; -s alone takes the
 * user's primary group), chroot to cfg->chroot_dir, drop supplementary
 * groups, set the group and user, and mark the process non-dumpable. Called after the secrets
 * are loaded and before a byte is read from the client. 0, or -1 with a message in err: a
 * failed drop is fatal.
 */
int privs_drop(const struct config *cfg, char *err, size_t errlen);

/* --check: the user, group and chroot directory exist. 0 or -1 with err. */
int privs_check(const struct config *cfg, char *err, size_t errlen);

#endif
