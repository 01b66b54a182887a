/*
 * sandbox.c: the system calls the network-facing process may still make
 * once it reads hostile bytes, and the resource limits around it.
 *
 * main.c's enter_sandbox step calls sandbox_enter() after the privilege
 * drop and before the first byte read from anyone. A code-execution bug in
 * the TLS or PROXY parsing then gets the calls the connection itself makes
 * (read and write on the descriptors it has, poll, memory, time, random
 * bytes, the end of the process) and, only while the backend is still to
 * be connected, one kind of socket(); nothing that opens a file, starts a
 * process, signals one, or makes memory executable. Anything else kills the
 * process (SECCOMP_RET_KILL_PROCESS): the launcher sees SIGSYS, not a hang.
 *
 * The lists were found with strace -f over the test suite's scenarios
 * (every launcher and mode), not guessed; docs/security.md has the table.
 * Calls that only a sanitizer's runtime makes (ASan's reports, its
 * allocator) are added in sanitizer builds only, decided by the compiler,
 * never by a run-time switch. The test-only switches (TEST_HOOKS: never in
 * a default build) are TLSFILTER_TEST_NO_SANDBOX (valgrind's pass: the
 * tool runs inside the process and makes calls of its own) and
 * TLSFILTER_TEST_SYSCALL (a forbidden call once the filter is in place).
 */
#include "config.h"

#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <time.h>
#include <unistd.h>

#ifdef HAVE_SECCOMP
#include <seccomp.h>
#endif

/* ASan and UBSan builds (scripts/sanitize.sh): the runtime's own calls. */
#if defined(__SANITIZE_ADDRESS__)
#define SANDBOX_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANDBOX_SANITIZER 1
#endif
#endif

/* The relay polls four slots: poll() refuses more than RLIMIT_NOFILE. */
#define MIN_NOFILE 4

bool sandbox_available(void)
{
#ifdef HAVE_SECCOMP
    return true;
#else
    return false;
#endif
}

static int fail(char *err, size_t errlen, const char *what, int e)
{
    snprintf(err, errlen, "sandbox: %s: %s", what, strerror(e));
    return -1;
}

/*
 * No core, no new process, no file growth (unless it logs to a file), and
 * new descriptors only for what is still to be opened (new_fds): the
 * lowest free descriptor is where the next one would go.
 */
static int set_limits(bool writes_files, int new_fds, char *err, size_t errlen)
{
    struct rlimit zero = {0, 0}, nofile;
    int lowest = fcntl(0, F_DUPFD_CLOEXEC, 0);

    if (lowest < 0)
        return fail(err, errlen, "fcntl(F_DUPFD)", errno);
    close(lowest);
    nofile.rlim_cur = nofile.rlim_max =
        (rlim_t)(lowest + new_fds > MIN_NOFILE ? lowest + new_fds : MIN_NOFILE);
    if (setrlimit(RLIMIT_CORE, &zero) < 0)
        return fail(err, errlen, "RLIMIT_CORE", errno);
    if (setrlimit(RLIMIT_NPROC, &zero) < 0)
        return fail(err, errlen, "RLIMIT_NPROC", errno);
#ifndef SANDBOX_SANITIZER /* its reports are files */
    if (!writes_files && setrlimit(RLIMIT_FSIZE, &zero) < 0)
        return fail(err, errlen, "RLIMIT_FSIZE", errno);
#endif
    (void)writes_files;
    if (setrlimit(RLIMIT_NOFILE, &nofile) < 0)
        return fail(err, errlen, "RLIMIT_NOFILE", errno);
    return 0;
}

#ifdef HAVE_SECCOMP
/*
 * Every role: its descriptors, memory, time, random bytes, the end. The
 * lists are what strace -f saw the test suite's processes make after this
 * point, and what a rare path needs: mmap, munmap and mremap for an
 * allocation past malloc's mmap threshold, rt_sigreturn for the stop
 * signals' handler, restart_syscall for a call a stop signal interrupted,
 * time and clock_gettime where the vDSO is missing. futex: pthread_once()'s
 * wake in GnuTLS.
 */
static const int base_calls[] = {
    SCMP_SYS(read),
    SCMP_SYS(write),
    SCMP_SYS(close),
    SCMP_SYS(brk),
    SCMP_SYS(munmap),
    SCMP_SYS(mremap),
    SCMP_SYS(madvise),
    SCMP_SYS(getrandom),
    SCMP_SYS(clock_gettime),
    SCMP_SYS(time),
    SCMP_SYS(getpid),
    SCMP_SYS(rt_sigreturn),
    SCMP_SYS(restart_syscall),
    SCMP_SYS(exit),
    SCMP_SYS(exit_group),
};

/* A -l program: reaped at the end (backend_reap() waits in 20 ms steps). */
static const int program_calls[] = {
    SCMP_SYS(wait4),
    SCMP_SYS(clock_nanosleep),
};

#ifdef SANDBOX_SANITIZER
/* ASan/UBSan's runtime: its report files, symbolizer and allocator. */
static const int sanitizer_calls[] = {
    SCMP_SYS(openat),      SCMP_SYS(open),           SCMP_SYS(readlink),
    SCMP_SYS(gettid),      SCMP_SYS(tgkill),         SCMP_SYS(sched_yield),
    SCMP_SYS(sigaltstack), SCMP_SYS(rt_sigprocmask), SCMP_SYS(rt_sigaction),
    SCMP_SYS(prctl),       SCMP_SYS(fstat),          SCMP_SYS(newfstatat),
    SCMP_SYS(lseek),       SCMP_SYS(getrlimit),      SCMP_SYS(prlimit64),
    SCMP_SYS(pipe2),       SCMP_SYS(clone),          SCMP_SYS(clone3),
    SCMP_SYS(vfork),       SCMP_SYS(execve),         SCMP_SYS(dup2),
    SCMP_SYS(dup3),        SCMP_SYS(fcntl),          SCMP_SYS(getppid),
    SCMP_SYS(kill),        SCMP_SYS(mprotect),       SCMP_SYS(mmap),
};
#endif

static int allow_all(scmp_filter_ctx ctx, const int *calls, size_t n)
{
    size_t i;
    int r;

    for (i = 0; i < n; i++)
        if ((r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, calls[i], 0)) < 0)
            return r;
    return 0;
}

#define ALLOW_ALL(ctx, list) allow_all(ctx, list, sizeof list / sizeof list[0])

#define RULE(ctx, name, ...) seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(name), __VA_ARGS__)

/* The rules every role has: the calls above; mmap never executable; futex's private wait and
 * wake. */
static int add_base(scmp_filter_ctx ctx)
{
    int r;

    if ((r = ALLOW_ALL(ctx, base_calls)) < 0)
        return r;
    if ((r = RULE(ctx, mmap, 1, SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0))) < 0)
        return r;
    if ((r = RULE(ctx, futex, 1, SCMP_A1(SCMP_CMP_EQ, FUTEX_WAKE_PRIVATE))) < 0)
        return r;
    return RULE(ctx, futex, 1, SCMP_A1(SCMP_CMP_EQ, FUTEX_WAIT_PRIVATE));
}

/*
 * The network process: poll; shutdown(SHUT_WR), its half-close; recv() only
 * to peek (peer.c: is the client gone?); sendto() only on a connected
 * socket (syslog's), never to an address of the caller's choosing.
 */
static int add_network(scmp_filter_ctx ctx)
{
    int r;

    if ((r = RULE(ctx, poll, 0)) < 0)
        return r;
    if ((r = RULE(ctx, shutdown, 1, SCMP_A1(SCMP_CMP_EQ, SHUT_WR))) < 0)
        return r;
    if ((r = RULE(ctx, recvfrom, 1, SCMP_A3(SCMP_CMP_EQ, MSG_PEEK))) < 0)
        return r;
    return RULE(ctx, sendto, 1, SCMP_A4(SCMP_CMP_EQ, 0));
}

/* The backend's one socket: of its family, a non-blocking stream, no other kind. */
static int add_connect(scmp_filter_ctx ctx, enum sandbox_connect conn, bool bind_addr)
{
    const unsigned long type = SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC;
    int r = 0;

    if (conn == SANDBOX_CONNECT_UNIX) {
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 3,
                             SCMP_A0(SCMP_CMP_EQ, AF_UNIX), SCMP_A1(SCMP_CMP_EQ, type),
                             SCMP_A2(SCMP_CMP_EQ, 0));
    } else {
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 3,
                             SCMP_A0(SCMP_CMP_EQ, AF_INET), SCMP_A1(SCMP_CMP_EQ, type),
                             SCMP_A2(SCMP_CMP_EQ, 0));
        if (r == 0)
            r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 3,
                                 SCMP_A0(SCMP_CMP_EQ, AF_INET6), SCMP_A1(SCMP_CMP_EQ, type),
                                 SCMP_A2(SCMP_CMP_EQ, 0));
        /* TCP_NODELAY on the backend socket, and nothing else settable. */
        if (r == 0)
            r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(setsockopt), 2,
                                 SCMP_A1(SCMP_CMP_EQ, IPPROTO_TCP),
                                 SCMP_A2(SCMP_CMP_EQ, TCP_NODELAY));
        if (r == 0 && bind_addr)
            r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(bind), 0);
    }
    if (r == 0)
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(connect), 0);
    /* The non-blocking connect's result. */
    if (r == 0)
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(getsockopt), 2,
                             SCMP_A1(SCMP_CMP_EQ, SOL_SOCKET), SCMP_A2(SCMP_CMP_EQ, SO_ERROR));
    return r;
}

static int load(scmp_filter_ctx ctx, char *err, size_t errlen)
{
    int r;

#ifdef SANDBOX_SANITIZER
    if ((r = ALLOW_ALL(ctx, sanitizer_calls)) < 0) {
        seccomp_release(ctx);
        return fail(err, errlen, "seccomp_rule_add", -r);
    }
#endif
    r = seccomp_load(ctx);
    seccomp_release(ctx);
    if (r < 0)
        return fail(err, errlen, "seccomp_load", -r);
    return 0;
}
#endif /* HAVE_SECCOMP */

int sandbox_enter(const struct config *cfg, enum sandbox_connect conn, char *err, size_t errlen)
{
    bool to_file = cfg->log_file != NULL || cfg->log_stderr;
#ifdef HAVE_SECCOMP
    scmp_filter_ctx ctx;
    int r;
#endif

#ifdef TEST_HOOKS
    /* valgrind's pass: memcheck runs inside the process and makes calls
     * (its log file, its own signals) that no list of ours has. */
    if (getenv("TLSFILTER_TEST_NO_SANDBOX") != NULL) {
        (void)prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        return 0;
    }
#endif
    /* The first time of day read loads the time zone (a file): now, not
     * inside the filter (syslog's timestamp, the -o log's gmtime_r()). */
    tzset();
    if (set_limits(to_file, conn == SANDBOX_CONNECT_NONE ? 0 : 1, err, errlen) < 0)
        return -1;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return fail(err, errlen, "PR_SET_NO_NEW_PRIVS", errno);
#ifdef HAVE_SECCOMP
    ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
    if (ctx == NULL)
        return fail(err, errlen, "seccomp_init", ENOMEM);
    r = add_base(ctx);
    if (r == 0)
        r = add_network(ctx);
    if (r == 0 && cfg->exec_path != NULL)
        r = ALLOW_ALL(ctx, program_calls);
    if (r == 0 && conn != SANDBOX_CONNECT_NONE)
        r = add_connect(ctx, conn, cfg->bind_addr != NULL);
    /* syslog() reconnects when its socket went away: it is told no, and
     * the line is lost (as it would be in a chroot without /dev/log). */
    if (r == 0 && !to_file && conn != SANDBOX_CONNECT_UNIX)
        r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EACCES), SCMP_SYS(socket), 1,
                             SCMP_A0(SCMP_CMP_EQ, AF_UNIX));
    if (r < 0) {
        seccomp_release(ctx);
        return fail(err, errlen, "seccomp_rule_add", -r);
    }
    if (load(ctx, err, errlen) < 0)
        return -1;
#endif
#ifdef TEST_HOOKS
    /* sandbox.test: a call no list has, once the filter is in place. */
    if (getenv("TLSFILTER_TEST_SYSCALL") != NULL)
        (void)!open("/", O_RDONLY | O_CLOEXEC);
#endif
    return 0;
}

int sandbox_enter_key(char *err, size_t errlen)
{
#ifdef HAVE_SECCOMP
    scmp_filter_ctx ctx;
    int r;
#endif

#ifdef TEST_HOOKS
    if (getenv("TLSFILTER_TEST_NO_SANDBOX") != NULL) {
        (void)prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        return 0;
    }
#endif
    if (set_limits(false, 0, err, errlen) < 0)
        return -1;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return fail(err, errlen, "PR_SET_NO_NEW_PRIVS", errno);
#ifdef HAVE_SECCOMP
    ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
    if (ctx == NULL)
        return fail(err, errlen, "seccomp_init", ENOMEM);
    /* Signing needs the memory calls and random bytes (RSA-PSS salts,
     * blinding; ECDSA nonces come from them too), nothing more. */
    r = add_base(ctx);
    if (r < 0) {
        seccomp_release(ctx);
        return fail(err, errlen, "seccomp_rule_add", -r);
    }
    if (load(ctx, err, errlen) < 0)
        return -1;
#endif
    return 0;
}
