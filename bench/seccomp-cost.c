/*
 * seccomp-cost.c: what the kernel charges a process for loading
 * tlsfilter's seccomp filter (docs/performance.md, "The sandbox").
 *
 *   cc -O2 -I BUILDDIR -o seccomp-cost bench/seccomp-cost.c
 *   ./seccomp-cost N [CALLS]
 *
 * Forks N children that exit at once (after CALLS getpid() calls), then N
 * that first load the filter of `-r HOST:PORT` with an -o log
 * (sandbox-bpf.h from BUILDDIR, as tlsfilter does), then N with the key
 * process's, and prints each kind's mean user + system time from wait4():
 * the difference is the filter's cost (loading, the per-call checks,
 * freeing it at exit), which callgrind, counting user-space instructions,
 * does not see.
 */
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox-bpf.h"

int main(int argc, char **argv)
{
    static const char *const names[] = {"no filter", "network filter", "key filter"};
    int n = argc > 1 ? atoi(argv[1]) : 1000, calls = argc > 2 ? atoi(argv[2]) : 0, mode, i, k;

    for (mode = 0; mode < 3; mode++) {
        double total = 0;
        for (i = 0; i < n; i++) {
            struct rusage ru;
            int st;
            pid_t p = fork();
            if (p == 0) {
                if (mode > 0 &&
                    (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
                     syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0,
                             mode == 1 ? &network_programs[1][0][0][1] : &key_program) < 0))
                    _exit(1);
                for (k = 0; k < calls; k++)
                    (void)syscall(SYS_getpid);
                _exit(0);
            }
            if (p < 0 || wait4(p, &st, 0, &ru) < 0 || st != 0)
                return 1;
            total += ru.ru_utime.tv_sec * 1e6 + ru.ru_utime.tv_usec + ru.ru_stime.tv_sec * 1e6 +
                     ru.ru_stime.tv_usec;
        }
        printf("%-15s %7.1f us per process (%d processes, %d getpid each)\n", names[mode],
               total / n, n, calls);
    }
    return 0;
}
