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
 * The lists are in sandbox-gen.c, compiled at build time with libseccomp
 * into one BPF program per mode (sandbox-bpf.h): the process only picks
 * its mode's and hands it to the kernel. The test-only switches (TEST_HOOKS: never in
 * a default build) are TLSFILTER_TEST_NO_SANDBOX (valgrind: the tool runs
 * inside the process and makes calls of its own: everything is done but
 * the filter's loading, and RLIMIT_FSIZE, which would stop valgrind's log,
 * and RLIMIT_NOFILE, whose hard limit valgrind keeps, are not set) and TLSFILTER_TEST_SYSCALL
 * (a forbidden call once the filter is in place).
 */
#include "config.h"

#include "sandbox.h"

#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#ifdef HAVE_SECCOMP
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/syscall.h>

#include "sandbox-bpf.h" /* made by sandbox-gen at build time */
#endif

#ifdef SANDBOX_SANITIZER
/*
 * LeakSanitizer cannot work in tlsfilter (scripts/sanitize.sh: non-dumpable,
 * a changed uid, a chroot; its tracer now also meets the filter), and the
 * sanitizer pass leaves leaks to valgrind with ASAN_OPTIONS=detect_leaks=0.
 * xinetd's passenv = drops that variable: the default says it too.
 */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "detect_leaks=0";
}
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

/* TLSFILTER_TEST_NO_SANDBOX: see the top of the file. */
static bool test_no_sandbox(void)
{
#ifdef TEST_HOOKS
    return getenv("TLSFILTER_TEST_NO_SANDBOX") != NULL;
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
#ifndef SANDBOX_SANITIZER /* its reports: files, a symbolizer process */
    if (setrlimit(RLIMIT_NPROC, &zero) < 0)
        return fail(err, errlen, "RLIMIT_NPROC", errno);
    if (!writes_files && setrlimit(RLIMIT_FSIZE, &zero) < 0)
        return fail(err, errlen, "RLIMIT_FSIZE", errno);
#endif
    (void)writes_files;
    (void)nofile;
    /* valgrind refuses a hard limit other than its own (and FSIZE would stop its log). */
#ifndef SANDBOX_SANITIZER /* its report files */
    if (!test_no_sandbox() && setrlimit(RLIMIT_NOFILE, &nofile) < 0)
        return fail(err, errlen, "RLIMIT_NOFILE", errno);
#endif
    return 0;
}

/*
 * The limits, no new privileges, then the filter: the prebuilt program of
 * the mode (sandbox-bpf.h), handed to the kernel as it is.
 */
static int finish(const void *prog, bool writes_files, int new_fds, char *err, size_t errlen)
{
    if (set_limits(writes_files || test_no_sandbox(), new_fds, err, errlen) < 0)
        return -1;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return fail(err, errlen, "PR_SET_NO_NEW_PRIVS", errno);
#ifdef HAVE_SECCOMP
    /* TLSFILTER_TEST_NO_SANDBOX: all of the above, but no filter loaded. */
    if (!test_no_sandbox() && syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, prog) < 0)
        return fail(err, errlen, "seccomp(SECCOMP_SET_MODE_FILTER)", errno);
#else
    (void)prog;
#endif
    return 0;
}

int sandbox_enter(const struct config *cfg, enum sandbox_connect conn, char *err, size_t errlen)
{
    bool to_file = log_to_file(); /* -o, -f: what log_open() chose, not what was asked */
    const void *prog = NULL;

    /* The first time of day read loads the time zone (a file): now, not
     * inside the filter (syslog's timestamp, the -o log's gmtime_r()). */
    tzset();
#ifdef HAVE_SECCOMP
    prog = &network_programs[conn][cfg->exec_path != NULL][cfg->bind_addr != NULL][to_file];
#endif
    if (finish(prog, to_file, conn == SANDBOX_CONNECT_NONE ? 0 : 1, err, errlen) < 0)
        return -1;
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
    return finish(&key_program, false, 0, err, errlen);
#else
    return finish(NULL, false, 0, err, errlen);
#endif
}

int sandbox_enter_key_holder(unsigned max_fds, char *err, size_t errlen)
{
#ifdef HAVE_SECCOMP
    return finish(&key_holder_program, false, (int)max_fds + 1, err, errlen);
#else
    return finish(NULL, false, (int)max_fds + 1, err, errlen);
#endif
}
