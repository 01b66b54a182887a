/*
 * log.c: the only module that writes words anywhere.
 *
 * Under inetd and xinetd fds 0, 1 and 2 are all the client's socket: a byte
 * on stderr reaches the client in clear text and breaks the handshake. So
 * before any library initialiser runs (a preinit_array entry runs before the
 * constructors of GnuTLS, which prints to stderr when GNUTLS_DEBUG_LEVEL is
 * set), fd 2 is pointed at /dev/null. The original fd 2 is kept only when it
 * is not the same file as fd 0 or fd 1, for -f and usage messages.
 */
#include "config.h"

#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum sink { SINK_SYSLOG, SINK_FILE, SINK_STDERR };

static int stderr_fd = -1; /* the original fd 2 when it is safe */
static int file_fd = -1;
static enum sink sink = SINK_SYSLOG;
static int max_level = LOG_NOTICE;
static const char *ident = "tlsfilter";

static bool same_file(int a, int b)
{
    struct stat sa, sb;

    return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

/*
 * Runs before any shared library's constructor. Only system calls here:
 * the C library may not be fully set up yet.
 */
static void log_preinit(int argc, char **argv, char **envp)
{
    struct stat st;
    int null;

    (void)argc, (void)argv, (void)envp;
    /* fd 2 is the client's channel when it is the socket or pipe of fd 0/1;
     * a terminal shared with fd 0/1 is someone trying tlsfilter by hand. */
    if (fstat(2, &st) == 0 && (S_ISCHR(st.st_mode) || (!same_file(2, 0) && !same_file(2, 1))))
        stderr_fd = fcntl(2, F_DUPFD_CLOEXEC, 3);
    null = open("/dev/null", O_RDWR);
    if (null >= 0 && null != 2) {
        dup2(null, 2);
        close(null);
    }
}

__attribute__((section(".preinit_array"),
               used)) static void (*const log_preinit_entry)(int, char **,
                                                             char **) = log_preinit;

bool log_to_file(void)
{
    return sink != SINK_SYSLOG;
}

bool log_stderr_safe(void)
{
    return stderr_fd >= 0;
}

static void write_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

void log_stderr_write(const char *s)
{
    if (stderr_fd >= 0)
        write_all(stderr_fd, s, strlen(s));
}

int log_open(const struct config *cfg)
{
    int ret = 0;

    ident = cfg->service;
    max_level = cfg->log_level;
    if (cfg->log_file != NULL) {
        file_fd = open(cfg->log_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        if (file_fd >= 0) {
            sink = SINK_FILE;
            return 0;
        }
        ret = -1;
    } else if (cfg->log_stderr && stderr_fd >= 0) {
        sink = SINK_STDERR;
        return 0;
    }
    sink = SINK_SYSLOG;
    openlog(ident, LOG_PID | LOG_NDELAY, cfg->log_facility);
    setlogmask(LOG_UPTO(cfg->log_level));
    return ret;
}

void log_msg(int level, const char *fmt, ...)
{
    char line[2048];
    size_t n = 0;
    va_list ap;
    int r;

    if (level > max_level)
        return;
    if (sink == SINK_SYSLOG) {
        va_start(ap, fmt);
        vsyslog(level, fmt, ap);
        va_end(ap);
        return;
    }
    if (sink == SINK_FILE) {
        struct tm tm;
        time_t now = time(NULL);
        if (gmtime_r(&now, &tm) != NULL)
            n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%SZ ", &tm);
    }
    r = snprintf(line + n, sizeof line - n, "%s[%ld]: ", ident, (long)getpid());
    if (r > 0)
        n += (size_t)r < sizeof line - n ? (size_t)r : sizeof line - n - 1;
    va_start(ap, fmt);
    r = vsnprintf(line + n, sizeof line - n, fmt, ap);
    va_end(ap);
    if (r > 0)
        n += (size_t)r < sizeof line - n ? (size_t)r : sizeof line - n - 1;
    line[n++] = '\n';
    write_all(sink == SINK_FILE ? file_fd : stderr_fd, line, n);
}

const char *log_value(const char *s, char *buf, size_t len)
{
    bool quote = false;
    size_t i, o = 0;

    if (len < 4) {
        if (len > 0)
            buf[0] = '\0';
        return buf;
    }
    if (s == NULL || *s == '\0') {
        snprintf(buf, len, "-");
        return buf;
    }
    for (i = 0; s[i] != '\0'; i++)
        if (s[i] == ' ' || s[i] == '"' || s[i] == '=')
            quote = true;
    if (quote)
        buf[o++] = '"';
    for (i = 0; s[i] != '\0' && o < len - 2; i++) {
        unsigned char ch = (unsigned char)s[i];
        buf[o++] = (ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\') ? '?' : (char)ch;
    }
    if (quote)
        buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}
