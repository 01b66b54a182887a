/*
 * listener.h: xinetd `wait = yes` and systemd `Accept=no`: one parent that
 * accepts, a child per connection (listener.c).
 */
#ifndef TLSFILTER_LISTENER_H
#define TLSFILTER_LISTENER_H

#include <stdbool.h>

#include "options.h"

/*
 * The listening socket we were given: fd 3 from systemd (LISTEN_FDS for
 * this pid; the variables are removed either way), fd 0 from inetd or
 * xinetd with wait = yes; -1 for the usual connected socket.
 */
int listener_find(void);

/*
 * Accept on lfd until SIGTERM (then the sessions get --timeout-close to end)
 * or --exit-idle. SIGHUP calls reload(ctx), which keeps the old credentials
 * when the new ones fail. Returns in the parent with its exit status; in a
 * child with *child set and 0, the connection on fds 0 and 1 and the
 * signal handlers as they were before the call.
 */
int listener_run(const struct config *cfg, int lfd, int (*reload)(void *), void *ctx,
                 bool *child);

#endif
