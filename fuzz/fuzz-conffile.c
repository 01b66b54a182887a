/*
 * fuzz-conffile.c: stunnel 4/5 configuration files, conffile_load().
 *
 * The input is the file. It is written to a memfd and read back through
 * /proc/self/fd/N, so that no file is left behind and parallel fuzzers do
 * not share one. The struct config starts from options_parse()'s defaults
 * (a minimal "-r 25" command line), as it does in tlsfilter. After each
 * input the conffile pool is released (see common.c).
 */
#include "config.h"

#include "conffile.h"
#include "fuzz.h"
#include "options.h"

#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int fd = -1;
    static char path[64];
    char a0[] = "tlsfilter", a1[] = "-r", a2[] = "25";
    char *argv[] = {a0, a1, a2, NULL};
    struct config cfg;
    char err[512];
    size_t i;

    if (fd < 0) {
        fd = memfd_create("fuzz-conffile", 0);
        if (fd < 0)
            return 0;
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) < 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
        return 0;

    if (options_parse(3, argv, &cfg, err, sizeof err) != OPTIONS_RUN)
        __builtin_trap(); /* the defaults themselves must parse */
    if (conffile_load(path, &cfg, err, sizeof err) == 0) {
        /* Touch every string the load put into cfg. */
        (void)strlen(cfg.cert_file);
        (void)strlen(cfg.service);
        (void)strlen(cfg.priority);
        if (cfg.connect != NULL)
            (void)strlen(cfg.connect);
        if (cfg.exec_path != NULL)
            (void)strlen(cfg.exec_path);
        if (cfg.exec_argv != NULL)
            for (i = 0; cfg.exec_argv[i] != NULL; i++)
                (void)strlen(cfg.exec_argv[i]);
        for (i = 0; i < cfg.n_notes; i++)
            (void)strlen(cfg.notes[i]);
    } else {
        (void)strlen(err);
    }
    fuzz_conffile_release();
    return 0;
}
