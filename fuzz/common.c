/*
 * common.c: what the harnesses share, with src/conffile.c compiled in.
 *
 * conffile_load() keeps what a successful load allocated for the life of
 * the process, chained from a static list (by design: tlsfilter reads one
 * configuration and exits; the blocks stay reachable, so LeakSanitizer does
 * not call them leaks). A fuzzer calls it millions of times, so the pool
 * would only grow until libFuzzer's RSS limit ended the run. Including the
 * source file gives this translation unit the static pool_release(), which
 * the harnesses call after each input, once nothing points into the pool.
 * src/ is left as it is; the harnesses link this file instead of
 * src/conffile.c.
 *
 * src/log.c is not linked: its .preinit_array entry points fd 2 at
 * /dev/null before main(), which would silence the sanitizers' reports.
 * backend.c's log calls (only in backend_spawn's logger, never reached
 * here) get the stubs below, and so do keyproc.c's calls into the key
 * process's and the key holder's sandbox (sandbox.c is not linked: no key
 * process runs here).
 */
#include "../src/conffile.c"

#include "fuzz.h"
#include "log.h"
#include "sandbox.h"

#include <getopt.h>

void fuzz_conffile_release(void)
{
    pool_release(NULL);
}


void log_msg(int level, const char *fmt, ...)
{
    (void)level, (void)fmt;
}

const char *log_value(const char *s, char *buf, size_t len)
{
    snprintf(buf, len, "%s", s);
    return buf;
}

int sandbox_enter_key(char *err, size_t errlen)
{
    (void)err, (void)errlen;
    return 0;
}

int sandbox_enter_key_holder(unsigned max_fds, char *err, size_t errlen)
{
    (void)max_fds, (void)err, (void)errlen;
    return 0;
}
