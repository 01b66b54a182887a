/*
 * fuzz.h: what the harnesses share.
 */
#ifndef TLSFILTER_FUZZ_H
#define TLSFILTER_FUZZ_H

#include <stddef.h>
#include <stdint.h>

/* Free everything conffile_load() has kept (see common.c). */
void fuzz_conffile_release(void);

/*
 * Reset glibc's getopt completely (optind = 0 with a "+" optstring, so that
 * the next options_parse(), which sets optind = 1, starts from a clean
 * state in tlsfilter's REQUIRE_ORDER mode). See README: without it a call
 * that stopped inside an option cluster leaves getopt pointing into the
 * previous call's argv.
 */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
