/*
 * sandbox.h: what the network-facing process may still ask of the kernel
 * once it reads hostile bytes (seccomp-bpf and resource limits).
 */
#ifndef TLSFILTER_SANDBOX_H
#define TLSFILTER_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>

/* ASan and UBSan builds (scripts/sanitize.sh): the runtime's own calls are
 * allowed too (sandbox-gen.c builds their lists, sandbox.c their limits). */
#if defined(__SANITIZE_ADDRESS__)
#define SANDBOX_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANDBOX_SANITIZER 1
#endif
#endif

#include "options.h"

/* The backend connection still to be made inside the sandbox. */
enum sandbox_connect {
    SANDBOX_CONNECT_NONE, /* made before (--starttls, -c) or a -l program: no socket() */
    SANDBOX_CONNECT_INET, /* -r [HOST:]PORT: one TCP socket, IPv4 or IPv6 */
    SANDBOX_CONNECT_UNIX  /* -r /PATH: one AF_UNIX stream socket */
};

/* Built with libseccomp: the allow-list is installed (else only the limits). */
bool sandbox_available(void);

/*
 * The network process's sandbox, after the privilege drop and before the
 * first byte read from anyone: RLIMIT_CORE 0, RLIMIT_NPROC 0 (it never
 * starts a process: a -l program's process exists by then), RLIMIT_FSIZE 0
 * unless it logs to a file, RLIMIT_NOFILE to the descriptors open plus the
 * backend socket still to come, PR_SET_NO_NEW_PRIVS, then the seccomp
 * allow-list of what the handshake, conn, the relay and the close line
 * need (cfg says which: a -l program to reap, syslog or a file, -I).
 * Any other system call kills the process with SIGSYS. 0, or -1 with a
 * message in err (nothing is installed halfway: a failure is fatal).
 */
int sandbox_enter(const struct config *cfg, enum sandbox_connect conn, char *err,
                  size_t errlen);

/*
 * The key process's smaller list (issue 13's key process): read, write,
 * close, poll, the memory calls, futex, getrandom, clock_gettime, getpid,
 * exit; no socket, no file, no process. Resource limits as above (no
 * file growth, no descriptor to come), PR_SET_NO_NEW_PRIVS. Call it once
 * the process holds only its end of the socketpair. 0, or -1 with a
 * message in err.
 */
int sandbox_enter_key(char *err, size_t errlen);

/*
 * The listener's key holder (keyproc.h): the key process's list and
 * recvmsg() for the descriptors the listener hands it, with room for
 * max_fds of them (RLIMIT_NOFILE).
 */
int sandbox_enter_key_holder(unsigned max_fds, char *err, size_t errlen);

#endif
