/*
 * privs.h: the one place where privileges are given up.
 */
#ifndef TLSFILTER_PRIVS_H
#define TLSFILTER_PRIVS_H

#include <stddef.h>

#include "options.h"

/*
 * Switch to cfg->group and cfg->user (names or numbers; -s alone takes the
 * user's primary group), drop supplementary groups and mark the process
 * non-dumpable. Called after the secrets are loaded and before a byte is
 * read from the client. 0, or -1 with a message in err: a failed drop is
 * fatal.
 */
int privs_drop(const struct config *cfg, char *err, size_t errlen);

#endif
