/*
 * fuzz-options.c: the command line, options_parse() and the parsers it uses.
 *
 * The input is split on NUL bytes into at most 64 arguments after
 * "tlsfilter". Every argument is its own heap block, freed after the call,
 * so that AddressSanitizer sees any pointer options_parse() (or getopt)
 * keeps into an earlier call's argv. The first argument also goes to
 * options_parse_log_level(), options_parse_seconds() and backend_split().
 *
 * Arguments naming /dev, /proc or /sys are refused: options_parse() opens
 * configuration files it is given, and a read of /dev/stdin or /proc/kmsg
 * would block the fuzzer rather than test anything.
 *
 * Nothing resets getopt between inputs here: options_parse() must do that
 * itself (it once did not; see the README).
 */
#include "config.h"

#include "backend.h"
#include "fuzz.h"
#include "options.h"

#include <stdlib.h>
#include <string.h>

#define MAX_ARGS 64

static int unsafe_path(const char *s)
{
    return strstr(s, "/dev") != NULL || strstr(s, "/proc") != NULL || strstr(s, "/sys") != NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *argv[MAX_ARGS + 2];
    int argc = 0, i;
    size_t start = 0, pos;
    struct config cfg;
    char err[256];
    char host[256], port[64];
    int facility = 0, level = 0;
    unsigned secs = 0;

    argv[argc++] = strdup("tlsfilter");
    for (pos = 0; pos <= size && argc < MAX_ARGS + 1; pos++) {
        if (pos == size || data[pos] == '\0') {
            if (pos == size && pos == start && argc > 1)
                break; /* a trailing NUL ends the last argument, adds none */
            argv[argc] = malloc(pos - start + 1);
            if (argv[argc] == NULL)
                goto out;
            memcpy(argv[argc], data + start, pos - start);
            argv[argc][pos - start] = '\0';
            if (unsafe_path(argv[argc])) {
                argc++;
                goto out;
            }
            argc++;
            start = pos + 1;
        }
    }
    argv[argc] = NULL;

    (void)options_parse(argc, argv, &cfg, err, sizeof err);
    /* Touch what was parsed: a pointer left dangling shows up here. */
    if (cfg.connect != NULL)
        (void)strlen(cfg.connect);
    if (cfg.exec_argv != NULL)
        for (i = 0; cfg.exec_argv[i] != NULL; i++)
            (void)strlen(cfg.exec_argv[i]);
    (void)strlen(err);
    fuzz_conffile_release();

    if (argc > 1) {
        (void)options_parse_log_level(argv[1], &facility, &level);
        (void)options_parse_seconds(argv[1], &secs);
        if (backend_split(argv[1], host, sizeof host, port, sizeof port, err, sizeof err) ==
            0) {
            (void)strlen(host);
            (void)strlen(port);
        }
    }
out:
    for (i = 0; i < argc; i++)
        free(argv[i]);
    return 0;
}
