/*
 * log.h: where tlsfilter's words go. syslog by default, a file with -o,
 * stderr with -f only when fd 2 is provably not the client's socket.
 */
#ifndef TLSFILTER_LOG_H
#define TLSFILTER_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <syslog.h>

#include "options.h"

/*
 * Open the log sink chosen by cfg (syslog is opened at once, so that it
 * still works after a chroot). Returns 0, or -1 with errno when -o FILE
 * cannot be opened; syslog is used then.
 */
int log_open(const struct config *cfg);

/* One log line at a syslog level. No newline in fmt. */
void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The sink log_open() chose is a file (-o, or -f with a safe stderr), not syslog. */
bool log_to_file(void);

/*
 * True when the fd 2 tlsfilter was started with is not the client's socket,
 * so a usage message may be printed there (log_stderr_write()).
 */
bool log_stderr_safe(void);

/* Write s to the original stderr if that is safe; otherwise nothing. */
void log_stderr_write(const char *s);

/*
 * Copy a peer-supplied string (an SNI name, an error text) into buf as one
 * key=value value: printable ASCII kept, anything else as '?', and the
 * whole quoted when it holds a space or a quote. Returns buf.
 */
const char *log_value(const char *s, char *buf, size_t len);

#endif
