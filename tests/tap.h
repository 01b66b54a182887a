/*
 * tap.h: a minimal Test Anything Protocol emitter for the C unit tests.
 */
#ifndef TLSFILTER_TAP_H
#define TLSFILTER_TAP_H

#include <stdio.h>
#include <string.h>

static int tap_n;
static int tap_failed;

#define TAP_OK(cond, ...)                                            \
    do {                                                             \
        int tap_c_ = (cond);                                         \
        printf("%s %d - ", tap_c_ ? "ok" : "not ok", ++tap_n);       \
        printf(__VA_ARGS__);                                         \
        putchar('\n');                                               \
        if (!tap_c_) {                                               \
            tap_failed++;                                            \
            printf("#   at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
        }                                                            \
    } while (0)

#define TAP_STREQ(a, b, ...) TAP_OK(strcmp((a), (b)) == 0, __VA_ARGS__)

static inline int tap_done(void)
{
    printf("1..%d\n", tap_n);
    return tap_failed ? 1 : 0;
}

#endif
