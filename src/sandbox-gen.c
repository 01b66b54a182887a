/*
 * sandbox-gen.c: the seccomp allow-lists of sandbox.c, compiled at build
 * time with libseccomp into BPF programs, written as C arrays on stdout
 * (the build makes sandbox-bpf.h of them).
 *
 * At run time tlsfilter only hands the kernel the program its mode needs:
 * building one with libseccomp in every process (rules, BPF generation,
 * the library's loading and relocation) cost 460,000 instructions per
 * connection under callgrind, 5.8 % of a whole connection; a prebuilt
 * program costs a few hundred. The build and run machines must share an
 * architecture (libseccomp's native one: the program checks it first).
 *
 * The lists were found with strace -f over the test suite's scenarios
 * (every launcher and mode), not guessed; docs/security.md has the table.
 * Calls that only a sanitizer's runtime makes (ASan's reports, its
 * allocator) are added in sanitizer builds only: this file is compiled
 * with the same flags as tlsfilter, so the compiler decides, never a
 * run-time switch.
 */
#include "config.h"

#include <errno.h>
#include <linux/futex.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <seccomp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sandbox.h"

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

/* A -l program: reaped at the end (backend_reap() waits in 20 ms steps;
 * wait4 is in every network list: the key process is reaped too). */
static const int program_calls[] = {
    SCMP_SYS(clock_nanosleep),
};

#ifdef SANDBOX_SANITIZER
/* ASan/UBSan's runtime: its report files, symbolizer and allocator. On a
 * fatal signal it checks its report descriptor with isatty() (ioctl), looks
 * for llvm-symbolizer (stat, access), forks it (fork, execve) and the
 * symbolizer, inheriting the filter, starts up and reads the binary
 * (arch_prctl ... pread64: what strace saw it make). Seen: a SIGSEGV sent
 * to a sandboxed ASan build's listener child ended in SIGSYS, not SIGABRT. */
static const int sanitizer_calls[] = {
    SCMP_SYS(openat),
    SCMP_SYS(open),
    SCMP_SYS(readlink),
    SCMP_SYS(gettid),
    SCMP_SYS(tgkill),
    SCMP_SYS(sched_yield),
    SCMP_SYS(sigaltstack),
    SCMP_SYS(rt_sigprocmask),
    SCMP_SYS(rt_sigaction),
    SCMP_SYS(prctl),
    SCMP_SYS(fstat),
    SCMP_SYS(newfstatat),
    SCMP_SYS(lseek),
    SCMP_SYS(getrlimit),
    SCMP_SYS(prlimit64),
    SCMP_SYS(pipe2),
    SCMP_SYS(clone),
    SCMP_SYS(clone3),
    SCMP_SYS(vfork),
    SCMP_SYS(execve),
    SCMP_SYS(dup2),
    SCMP_SYS(dup3),
    SCMP_SYS(fcntl),
    SCMP_SYS(getppid),
    SCMP_SYS(kill),
    SCMP_SYS(mprotect),
    SCMP_SYS(mmap),
    SCMP_SYS(ioctl),
    SCMP_SYS(stat),
    SCMP_SYS(lstat),
    SCMP_SYS(access),
    SCMP_SYS(fork),
    SCMP_SYS(getdents64),
    SCMP_SYS(arch_prctl),
    SCMP_SYS(pread64),
    SCMP_SYS(rseq),
    SCMP_SYS(set_robust_list),
    SCMP_SYS(set_tid_address),
    SCMP_SYS(futex),
    SCMP_SYS(nanosleep),
    SCMP_SYS(clock_nanosleep),
    SCMP_SYS(sched_getaffinity),
    SCMP_SYS(wait4), /* the symbolizer's process */
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
 * The network process: poll; wait4; shutdown(SHUT_WR), its half-close; recv() only
 * to peek (peer.c: is the client gone?); sendto() only on a connected
 * socket (syslog's), never to an address of the caller's choosing.
 */
static int add_network(scmp_filter_ctx ctx)
{
    int r;

    if ((r = RULE(ctx, poll, 0)) < 0)
        return r;
#ifndef SANDBOX_SANITIZER /* its list has wait4 */
    /* Its own children only: the key process, a -l program. No kill(): a
     * key process that does not exit is killed by the kernel when this
     * process ends (PR_SET_PDEATHSIG, keyproc.c). */
    if ((r = RULE(ctx, wait4, 0)) < 0)
        return r;
#endif
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

/* One network-process list: its mode's parameters, as sandbox_enter() indexes them. */
static scmp_filter_ctx network(enum sandbox_connect conn, bool program, bool bind_addr,
                               bool to_file)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
    int r;

    if (ctx == NULL)
        return NULL;
    r = add_base(ctx);
    if (r == 0)
        r = add_network(ctx);
    if (r == 0 && program)
        r = ALLOW_ALL(ctx, program_calls);
    if (r == 0 && conn != SANDBOX_CONNECT_NONE)
        r = add_connect(ctx, conn, bind_addr);
    /* syslog() reconnects when its socket went away: it is told no, and
     * the line is lost (as it would be in a chroot without /dev/log). */
    if (r == 0 && !to_file && conn != SANDBOX_CONNECT_UNIX)
        r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EACCES), SCMP_SYS(socket), 1,
                             SCMP_A0(SCMP_CMP_EQ, AF_UNIX));
#ifdef SANDBOX_SANITIZER
    if (r == 0)
        r = ALLOW_ALL(ctx, sanitizer_calls);
#endif
    if (r < 0) {
        seccomp_release(ctx);
        return NULL;
    }
    return ctx;
}

/* The key process: signing needs the memory calls and random bytes (RSA-PSS
 * salts, blinding, ECDSA nonces); poll() to wait for a request against the
 * handshake's deadline; send() of its answers (MSG_NOSIGNAL: keyproc.c's
 * write_full()), to no address; nothing more. */
static scmp_filter_ctx key(bool holder)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
    int r;

    if (ctx == NULL)
        return NULL;
    r = add_base(ctx);
    if (r == 0)
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(poll), 0);
    if (r == 0)
        r = RULE(ctx, sendto, 1, SCMP_A4(SCMP_CMP_EQ, 0));
    /* The listener's key holder: a connection's socket from the listener. */
    if (r == 0 && holder)
        r = RULE(ctx, recvmsg, 1, SCMP_A2(SCMP_CMP_EQ, MSG_CMSG_CLOEXEC));
#ifdef SANDBOX_SANITIZER
    if (r == 0)
        r = ALLOW_ALL(ctx, sanitizer_calls);
#endif
    if (r < 0) {
        seccomp_release(ctx);
        return NULL;
    }
    return ctx;
}

/* The program of ctx (released) as a C array named name. 0 or -1. */
static int emit(scmp_filter_ctx ctx, const char *name)
{
    FILE *tmp;
    unsigned char buf[8];
    size_t n = 0;
    int r;

    if (ctx == NULL)
        return -1;
    tmp = tmpfile();
    r = tmp == NULL ? -1 : seccomp_export_bpf(ctx, fileno(tmp));
    seccomp_release(ctx);
    if (r < 0) {
        if (tmp != NULL)
            fclose(tmp);
        return -1;
    }
    rewind(tmp);
    printf("static const struct sock_filter %s[] = {\n", name);
    /* struct sock_filter: u16 code, u8 jt, u8 jf, u32 k, in host order. */
    while (fread(buf, 1, sizeof buf, tmp) == sizeof buf) {
        unsigned short code;
        unsigned k;
        memcpy(&code, buf, 2);
        memcpy(&k, buf + 4, 4);
        printf("    {0x%04x, %u, %u, 0x%08x},\n", code, buf[2], buf[3], k);
        n++;
    }
    printf("};\n\n");
    fclose(tmp);
    return n > 0 ? 0 : -1;
}

int main(void)
{
    static const char *const conns[] = {"none", "inet", "unix"};
    char name[64];
    int c, p, b, f;

    printf("/* Generated by sandbox-gen (sandbox-gen.c) with libseccomp %u.%u.%u: do not edit. "
           "*/\n\n",
           seccomp_version()->major, seccomp_version()->minor, seccomp_version()->micro);
    for (c = 0; c < 3; c++)
        for (p = 0; p < 2; p++)
            for (b = 0; b < 2; b++)
                for (f = 0; f < 2; f++) {
                    snprintf(name, sizeof name, "bpf_%s_p%d_b%d_f%d", conns[c], p, b, f);
                    if (emit(network((enum sandbox_connect)c, p, b, f), name) < 0) {
                        fprintf(stderr, "sandbox-gen: %s: libseccomp failed\n", name);
                        return 1;
                    }
                }
    if (emit(key(false), "bpf_key") < 0 || emit(key(true), "bpf_key_holder") < 0) {
        fprintf(stderr, "sandbox-gen: bpf_key: libseccomp failed\n");
        return 1;
    }
    printf("#define BPF_PROG(a) {sizeof a / sizeof a[0], (struct sock_filter *)a}\n");
    printf("/* [conn][program][bind][to_file] */\n");
    printf("static const struct sock_fprog network_programs[3][2][2][2] = {\n");
    for (c = 0; c < 3; c++) {
        printf("    {\n");
        for (p = 0; p < 2; p++) {
            printf("        {\n");
            for (b = 0; b < 2; b++) {
                printf("            {");
                for (f = 0; f < 2; f++)
                    printf("BPF_PROG(bpf_%s_p%d_b%d_f%d), ", conns[c], p, b, f);
                printf("},\n");
            }
            printf("        },\n");
        }
        printf("    },\n");
    }
    printf("};\nstatic const struct sock_fprog key_program = BPF_PROG(bpf_key);\n");
    printf("static const struct sock_fprog key_holder_program = BPF_PROG(bpf_key_holder);\n");
    return 0;
}
