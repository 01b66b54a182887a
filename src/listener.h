/*
 * listener.h: xinetd `wait = yes` and systemd `Accept=no`: one parent that
 * accepts, a child per connection (listener.c).
 */
#ifndef TLSFILTER_LISTENER_H
#define TLSFILTER_LISTENER_H

#include <stdbool.h>
#include <sys/types.h>

#include "options.h"

/*
 * The listening socket we were given: fd 3 from systemd (LISTEN_FDS for
 * this pid; the variables are removed either way), fd 0 from inetd or
 * xinetd with wait = yes; -1 for the usual connected socket.
 */
int listener_find(void);

/* What the listener asks of the rest of the program (main.c). */
struct listener_ops {
    void *ctx;
    /* SIGHUP: new credentials for new connections; on failure the old stay. */
    int (*reload)(void *ctx);
    /* Before each fork: a descriptor the child keeps (its link to the key
     * holder), or -1 for none. The parent closes its copy after the fork. */
    int (*link)(void *ctx);
    /* A child of the listener's that is not a session ended (the key
     * holder): 0 when that is taken care of, -1 when the listener cannot go
     * on (it then stops as at SIGTERM and exits EX_OSERR). */
    int (*reaped)(void *ctx, pid_t pid, int status);
};

/*
 * Accept on lfd until SIGTERM (then the sessions get --timeout-close to end)
 * or --exit-idle. SIGHUP calls ops->reload. Returns in the parent with its
 * exit status; in a child with *child set and 0, the connection on fds 0
 * and 1, *link_fd what ops->link gave for it, and the signal handlers as
 * they were before the call.
 */
int listener_run(const struct config *cfg, int lfd, const struct listener_ops *ops, bool *child,
                 int *link_fd);

#endif
