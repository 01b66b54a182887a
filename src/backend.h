/*
 * backend.h: the plaintext service behind tlsfilter.
 */
#ifndef TLSFILTER_BACKEND_H
#define TLSFILTER_BACKEND_H

#include <netdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/un.h>

#include "options.h"

/* A -l program's process, started before the sandbox (backend_prespawn()). */
struct backend_child {
    pid_t pid;     /* 0: not started */
    int fd;        /* our end of its socketpair or pty */
    int env_fd;    /* its environment goes here, then it executes the program */
    int report_fd; /* an errno here if it could not */
};

struct backend {
    bool is_unix;
    struct sockaddr_un un;             /* -r /path */
    struct addrinfo *ai;               /* -r [HOST:]PORT, resolved */
    struct addrinfo *bind_ai;          /* -I ADDR, resolved */
    char text[INET6_ADDRSTRLEN + 112]; /* for the log: the address connected to */
    struct backend_child child;        /* -l */
};

/*
 * Split -r's argument as stunnel 3 does: "/path" is a Unix socket; "[v6]:port";
 * otherwise split on the last colon; no colon means a port on the loopback.
 * host gets "" for the loopback. Returns 0, or -1 with a message in err.
 */
int backend_split(const char *spec, char *host, size_t hostlen, char *port, size_t portlen,
                  char *err, size_t errlen);

/*
 * Resolve -r and -I (before any chroot: look-ups need /etc). Returns 0,
 * EX_CONFIG for a name or service that does not exist, or EX_UNAVAILABLE
 * when the resolver itself failed; a message in err.
 */
int backend_resolve(const struct config *cfg, struct backend *b, char *err, size_t errlen);

/*
 * Connect to the first address that answers within timeout_sec (each),
 * TCP_NODELAY on. Returns a non-blocking fd, or -1 with a message in err.
 * b->text names the address connected to, or the last one tried.
 */
int backend_connect(struct backend *b, unsigned timeout_sec, char *err, size_t errlen);

/*
 * Write all of buf to the non-blocking fd, waiting at most timeout_sec
 * seconds at a time. 0, or -1 with a message in err.
 */
int backend_send(int fd, const void *buf, size_t len, unsigned timeout_sec, char *err,
                 size_t errlen);

/* For -l: b names the program in the log. Returns 0. */
int backend_program(const struct config *cfg, struct backend *b);

/*
 * The first half of starting cfg->exec_path: its stderr logger, its
 * socketpair (a pseudo-terminal in raw mode with -L) and its process,
 * which waits for backend_spawn() to send its environment before it
 * executes the program. Called before the sandbox, so that the network
 * process never needs fork() or execve(). It holds none of our
 * descriptors but its end of the pair, and exits at once, running
 * nothing, if we end without sending the environment. 0, or -1 with a
 * message in err.
 */
int backend_prespawn(const struct config *cfg, struct backend *b, char *err, size_t errlen);

/*
 * Start cfg->exec_path (argv cfg->exec_argv, or just its path) with an
 * inetd-like socketpair on its fds 0 and 1 (a pseudo-terminal in raw mode
 * with -L), its stderr going to the log line by line through a small
 * logger process (never to the client), no other fd inherited, and env
 * (NAME=value strings of the names tlsfilter sets, NULL-terminated) added
 * to its environment; through b's process from backend_prespawn(), or a
 * new one. Returns our end of the pair (non-blocking) with *pid set, or -1
 * with a message in err, including when the program cannot be executed.
 */
int backend_spawn(const struct config *cfg, struct backend *b, char *const *env, pid_t *pid,
                  char *err, size_t errlen);

/*
 * Reap the program, waiting at most timeout_sec seconds; how it ended in
 * buf: exit-N, signal-N, or running (it is left to finish on its own).
 */
const char *backend_reap(pid_t pid, unsigned timeout_sec, char *buf, size_t len);

void backend_free(struct backend *b);

#endif
