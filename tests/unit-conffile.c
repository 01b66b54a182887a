/*
 * unit-conffile.c: stunnel 4/5 configuration files as stunnel's inetd mode
 * reads them: the seeds' file, RHEL's sample, and every refusal.
 *
 * Fixtures are found through $srcdir (set by automake's test harness; "."
 * when run by hand from the top of the tree). Cases that need odd bytes
 * (CRLF, NUL, long lines, bad UTF-8) are written to temporary files.
 *
 * What conffile_load guarantees and these tests hold it to: on success the
 * file's values are mapped and the notes recorded; on failure the message
 * is "FILE:LINE: ..." and the caller's config is byte for byte unchanged.
 */
#include "config.h"

#include <errno.h>
#include <gnutls/gnutls.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "conffile.h"
#include "options.h"
#include "starttls.h"
#include "tap.h"

static char path_buf[4096];
static char tmp_path[4096];

/* A fixture under $srcdir/tests/data. */
static const char *fixture(const char *name)
{
    const char *srcdir = getenv("srcdir");

    if (srcdir == NULL || *srcdir == '\0')
        srcdir = ".";
    snprintf(path_buf, sizeof path_buf, "%s/tests/data/%s", srcdir, name);
    return path_buf;
}

/* The defaults, as the command line leaves them with only a backend given. */
static void base(struct config *cfg)
{
    char *argv[] = {(char *)"tlsfilter", (char *)"-r", (char *)"110", NULL};
    char err[256];

    if (options_parse(3, argv, cfg, err, sizeof err) != OPTIONS_RUN) {
        printf("Bail out! options_parse(-r 110) failed: %s\n", err);
        exit(1);
    }
}

/* Write len bytes to a fresh temporary file; its name is in tmp_path. */
static const char *write_tmp(const char *bytes, size_t len)
{
    const char *dir = getenv("TMPDIR");
    FILE *f;
    int fd;

    snprintf(tmp_path, sizeof tmp_path, "%s/unit-conffile.XXXXXX",
             dir != NULL && *dir != '\0' ? dir : "/tmp");
    fd = mkstemp(tmp_path);
    if (fd < 0) {
        printf("Bail out! mkstemp %s: %s\n", tmp_path, strerror(errno));
        exit(1);
    }
    f = fdopen(fd, "w");
    if (f == NULL || fwrite(bytes, 1, len, f) != len || fclose(f) != 0) {
        printf("Bail out! writing %s failed\n", tmp_path);
        exit(1);
    }
    return tmp_path;
}

/*
 * Load text from a temporary file into *cfg (which starts from base()).
 * On failure also check that *cfg was left untouched.
 */
static int load_len(struct config *cfg, const char *text, size_t len, char *err, size_t errlen)
{
    struct config before;
    int r;

    base(cfg);
    before = *cfg;
    r = conffile_load(write_tmp(text, len), cfg, err, errlen);
    if (r != 0 && memcmp(&before, cfg, sizeof before) != 0) {
        printf("# config changed by a failed load of %s\n", tmp_path);
        r = -2;
    }
    unlink(tmp_path);
    return r;
}

static int load(struct config *cfg, const char *text, char *err, size_t errlen)
{
    return load_len(cfg, text, strlen(text), err, errlen);
}

#define LOAD(text) load(&cfg, text, err, sizeof err)

/* The error message without the temporary file's name: from the first ':'. */
static const char *where(const char *err)
{
    size_t n = strlen(tmp_path);

    return strncmp(err, tmp_path, n) == 0 ? err + n : err;
}

/* The message, after the temporary file's name, starts with prefix. */
static bool says(const char *err, const char *prefix)
{
    return strncmp(where(err), prefix, strlen(prefix)) == 0;
}

static bool has_note(const struct config *cfg, const char *prefix)
{
    size_t i;

    for (i = 0; i < cfg->n_notes; i++)
        if (strncmp(cfg->notes[i], prefix, strlen(prefix)) == 0)
            return true;
    return false;
}

/* The TLS versions a priority string enables, as a bit set: bit 2 TLS 1.2, bit 3 TLS 1.3. */
static unsigned versions(const char *priority)
{
    gnutls_priority_t prio;
    const unsigned *list;
    unsigned bits = 0;
    int i, n;

    if (gnutls_priority_init(&prio, priority, NULL) < 0)
        return 0x100;
    n = gnutls_priority_protocol_list(prio, &list);
    for (i = 0; i < n; i++) {
        if (list[i] == GNUTLS_TLS1_2)
            bits |= 1u << 2;
        else if (list[i] == GNUTLS_TLS1_3)
            bits |= 1u << 3;
        else
            bits |= 1u << 8; /* anything older */
    }
    gnutls_priority_deinit(prio);
    return bits;
}

static void test_seed(void)
{
    struct config cfg, before;
    char err[512];

    base(&cfg);
    before = cfg;
    TAP_OK(conffile_load(fixture("stunnel-seed.conf"), &cfg, err, sizeof err) == 0,
           "seeds' stunnel.conf loads (%s)", err);
    TAP_STREQ(cfg.cert_file, "/etc/pki/tls/private/mail.pem", "cert = -> cert_file");
    TAP_OK(cfg.cert_set, "cert = counts as given");
    TAP_OK(cfg.key_file == NULL, "no key = : key stays in the cert file");
    TAP_STREQ(cfg.connect, "25", "[ssmtp] connect = 25");
    TAP_STREQ(cfg.chroot_dir, "/var/lib/stunnel/", "chroot = -> chroot_dir");
    TAP_STREQ(cfg.user, "stunnel", "setuid = -> user");
    TAP_STREQ(cfg.group, "stunnel", "setgid = -> group");
    TAP_OK(cfg.log_level == LOG_DEBUG && cfg.log_facility == LOG_DAEMON,
           "debug = debug: level debug, facility unchanged");
    TAP_STREQ(cfg.service, "ssmtp", "the section's name is the service name");
    TAP_OK(cfg.service_set, "and counts as given (TCP wrappers use it)");
    TAP_STREQ(cfg.config_file, fixture("stunnel-seed.conf"), "config_file recorded");
    TAP_OK(cfg.n_notes == 3, "three notes: accept, foreground, section (%zu)", cfg.n_notes);
    TAP_OK(has_note(&cfg, "accept ignored: the launcher (xinetd, inetd, systemd) owns"),
           "accept = noted");
    TAP_OK(has_note(&cfg, "foreground ignored"), "foreground = noted");
    TAP_OK(has_note(&cfg, "[ssmtp] accepted: inetd mode serves this one service, and its"),
           "[ssmtp] noted");
    /* What must not happen. */
    TAP_OK(cfg.log_file == NULL && !cfg.log_stderr, "foreground = yes does not log to stderr");
    TAP_STREQ(cfg.priority, OPTIONS_DEFAULT_PRIORITY, "priority untouched");
    TAP_OK(!cfg.client_mode && cfg.verify_level == before.verify_level &&
               cfg.exec_path == NULL && cfg.ca_file == NULL && cfg.bind_addr == NULL &&
               cfg.server_name == NULL,
           "nothing else mapped");
    TAP_OK(cfg.timeout_idle == before.timeout_idle &&
               cfg.timeout_close == before.timeout_close &&
               cfg.timeout_handshake == before.timeout_handshake &&
               cfg.timeout_connect == before.timeout_connect && cfg.libwrap,
           "timeouts and libwrap keep their defaults");
}

static void test_rhel_sample(void)
{
    struct config cfg, before;
    char err[512];

    base(&cfg);
    before = cfg;
    TAP_OK(conffile_load(fixture("stunnel-rhel-sample.conf"), &cfg, err, sizeof err) == 0,
           "RHEL-shaped sample loads (%s)", err);
    TAP_STREQ(cfg.connect, "110", "[pop3s] connect = 110");
    TAP_STREQ(cfg.service, "pop3s", "service from [pop3s]");
    TAP_STREQ(cfg.log_file, "/var/log/stunnel.log", "output = -> log_file");
    TAP_OK(cfg.log_facility == LOG_MAIL && cfg.log_level == LOG_INFO, "debug = mail.info");
    TAP_STREQ(cfg.chroot_dir, "/var/run/stunnel/", "chroot");
    TAP_STREQ(cfg.user, "nobody", "setuid = nobody");
    TAP_OK(cfg.timeout_close == 1, "TIMEOUTclose = 0 becomes 1 second");
    TAP_OK(has_note(&cfg, "TIMEOUTclose = 0 means 1 second"), "and says so");
    TAP_OK(has_note(&cfg, "pid ignored"), "pid = noted");
    TAP_OK(has_note(&cfg, "socket ignored"), "socket = noted");
    TAP_OK(cfg.n_notes == 5,
           "one note per kind: pid, socket (twice), accept, TIMEOUTclose, "
           "section (%zu)",
           cfg.n_notes);
    TAP_OK(cfg.key_file == NULL && cfg.ca_file == NULL && cfg.ca_dir == NULL &&
               cfg.verify_level == before.verify_level && !cfg.client_mode,
           "commented-out key, CAfile, CApath, verify, client stay unset");
    TAP_STREQ(cfg.priority, OPTIONS_DEFAULT_PRIORITY,
              "commented-out sslVersion: priority kept");
}

static void test_errors_in_fixtures(void)
{
    struct config cfg, before;
    char err[512], want[1024];

    base(&cfg);
    before = cfg;
    TAP_OK(conffile_load(fixture("stunnel-two-sections.conf"), &cfg, err, sizeof err) == -1,
           "two sections refused");
    snprintf(want, sizeof want,
             "%s:11: inetd mode serves one service; found a second section [imaps] "
             "(the first, [pop3s], is on line 7): give each service its own file",
             fixture("stunnel-two-sections.conf"));
    TAP_STREQ(err, want, "the message names file, line and both sections");
    TAP_OK(memcmp(&before, &cfg, sizeof cfg) == 0, "nothing mapped after that error");

    TAP_OK(conffile_load(fixture("stunnel-unknown.conf"), &cfg, err, sizeof err) == -1,
           "unknown key refused");
    snprintf(want, sizeof want, "%s:3: unknown option 'CAfiel'",
             fixture("stunnel-unknown.conf"));
    TAP_STREQ(err, want, "the message names file, line and key");
    TAP_OK(memcmp(&before, &cfg, sizeof cfg) == 0,
           "cert = on the line before is not mapped either");

    TAP_OK(conffile_load(fixture("stunnel-no-such-file.conf"), &cfg, err, sizeof err) == -1,
           "missing file refused");
    snprintf(want, sizeof want, "%s: cannot open: %s", fixture("stunnel-no-such-file.conf"),
             strerror(ENOENT));
    TAP_STREQ(err, want, "with the file's name and strerror");
    TAP_OK(memcmp(&before, &cfg, sizeof cfg) == 0, "and no change");
}

static void test_exec(void)
{
    struct config cfg;
    char err[512];

    base(&cfg);
    TAP_OK(conffile_load(fixture("stunnel-exec.conf"), &cfg, err, sizeof err) == 0,
           "exec fixture loads (%s)", err);
    TAP_STREQ(cfg.exec_path, "/usr/sbin/in.pop3d", "exec = -> exec_path");
    TAP_OK(cfg.exec_argv != NULL && cfg.exec_argv[0] != NULL &&
               strcmp(cfg.exec_argv[0], "in.pop3d") == 0 && cfg.exec_argv[1] != NULL &&
               strcmp(cfg.exec_argv[1], "-s") == 0 && cfg.exec_argv[2] != NULL &&
               strcmp(cfg.exec_argv[2], "-d") == 0 && cfg.exec_argv[3] == NULL,
           "execArgs split on tabs and runs of spaces, argv[0] included");
    TAP_OK(!cfg.exec_pty, "pty = no");
    TAP_OK(cfg.connect == NULL, "the command line's -r is replaced by the file's exec =");
    TAP_STREQ(cfg.service, "pop3d", "service = wins over the section's name");
    TAP_OK(has_note(&cfg, "[pop3s] accepted: inetd mode serves this one service") &&
               !has_note(&cfg, "[pop3s] accepted: inetd mode serves this one service, and"),
           "the section's note does not claim the name");

    TAP_OK(LOAD("exec = /bin/cat\npty = yes\n") == 0 && cfg.exec_pty && cfg.exec_argv == NULL,
           "pty = yes; exec without execArgs leaves argv to the backend");
    TAP_OK(LOAD("exec = bin/cat\n") == -1 && strcmp(where(err), ":1: exec = bin/cat: must be "
                                                                "an absolute path") == 0,
           "relative exec refused: %s", where(err));
    TAP_OK(LOAD("execArgs = cat -u\n") == -1 && says(err, ":1: execArgs = without exec"),
           "execArgs without exec refused");
    TAP_OK(LOAD("connect = 25\nexec = /bin/cat\n") == -1 &&
               strcmp(where(err), ":2: connect = and exec = both given (lines 1 and 2): give "
                                  "one backend") == 0,
           "connect and exec together refused: %s", where(err));
    TAP_OK(LOAD("connect = 25\nconnect = 26\n") == -1 &&
               says(err, ":2: a second connect = (the first is on line 1)"),
           "a failover list refused");
    TAP_OK(LOAD("connect = mail.example.com:smtp\n") == 0 &&
               strcmp(cfg.connect, "mail.example.com:smtp") == 0,
           "connect = HOST:SERVICE kept as written");
    TAP_OK(LOAD("connect = [::1]:143\n") == 0 && strcmp(cfg.connect, "[::1]:143") == 0,
           "connect = [IPv6]:PORT");
    TAP_OK(LOAD("connect = /run/dovecot/imap\n") == 0, "connect = /PATH (Unix socket)");
    TAP_OK(LOAD("connect = localhost:\n") == -1 && says(err, ":1: connect = localhost:"),
           "connect without a port refused");
    TAP_OK(LOAD("local = 127.0.0.2\n") == 0 && strcmp(cfg.bind_addr, "127.0.0.2") == 0,
           "local = -> bind_addr");
}

static void test_syntax(void)
{
    struct config cfg;
    char err[512], big[3000], xs[1100];
    static const char crlf[] = "; written on Windows\r\ncert = /x.pem\r\n\r\n[imaps]\r\n"
                               "connect = 143\r\nclient = no\r\n";

    TAP_OK(LOAD("# hash\n; semicolon\n   # indented\n\t; tab\n\n   \ncert = /a.pem\n") == 0 &&
               strcmp(cfg.cert_file, "/a.pem") == 0 && cfg.n_notes == 0,
           "# and ; comments, blank lines");
    TAP_OK(LOAD("cert = /a.pem ; not a comment\n") == 0 &&
               strcmp(cfg.cert_file, "/a.pem ; not a comment") == 0,
           "no inline comments, as in stunnel");
    TAP_OK(LOAD("   CERT\t=\t  /b.pem  \t\nCaFile=/ca.pem\ntimeoutIDLE = 60\n") == 0 &&
               strcmp(cfg.cert_file, "/b.pem") == 0 && strcmp(cfg.ca_file, "/ca.pem") == 0 &&
               cfg.timeout_idle == 60,
           "whitespace trimmed, keys case-insensitive");
    TAP_OK(load_len(&cfg, crlf, sizeof crlf - 1, err, sizeof err) == 0 &&
               strcmp(cfg.cert_file, "/x.pem") == 0 && strcmp(cfg.connect, "143") == 0 &&
               strcmp(cfg.service, "imaps") == 0 && !cfg.client_mode,
           "CRLF line endings tolerated (%s)", err);
    TAP_OK(LOAD("cert = /last.pem") == 0 && strcmp(cfg.cert_file, "/last.pem") == 0,
           "last line without a newline");
    TAP_OK(LOAD("\xef\xbb\xbf"
                "cert = /bom.pem\n") == 0 &&
               strcmp(cfg.cert_file, "/bom.pem") == 0,
           "UTF-8 byte order mark skipped");
    TAP_OK(LOAD("") == 0 && cfg.n_notes == 0 && strcmp(cfg.connect, "110") == 0 &&
               cfg.config_file != NULL,
           "an empty file changes nothing but config_file");
    TAP_OK(LOAD("cert = /a.pem\ncert = /b.pem\n") == 0 && strcmp(cfg.cert_file, "/b.pem") == 0,
           "a repeated key: the last wins, as in stunnel");

    TAP_OK(LOAD("cert\n") == -1 &&
               strcmp(where(err), ":1: expected KEY = VALUE or [SECTION]") == 0,
           "a line without '=' refused");
    TAP_OK(LOAD("\n= /a.pem\n") == -1 && says(err, ":2: expected KEY"),
           "a line without a key refused");
    TAP_OK(LOAD("cert =   \n") == -1 && strcmp(where(err), ":1: cert: empty value") == 0,
           "an empty value refused");
    TAP_OK(LOAD("[ssmtp\n") == -1 && says(err, ":1: a section header is [NAME]"),
           "an unclosed section refused");
    TAP_OK(LOAD("[]\n") == -1 && says(err, ":1: []: a service name is"),
           "an empty section name refused");
    TAP_OK(LOAD("[my service]\n") == -1 && says(err, ":1: [my service]:"),
           "a section name hosts.allow cannot hold refused");
    TAP_OK(LOAD("sslv3 = no\n") == -1 && strcmp(where(err), ":1: unknown option 'sslv3'") == 0,
           "unknown key: %s", where(err));

    /* Bytes that must not reach a path, a log line or an argv. */
    TAP_OK(LOAD("cert = /a\x01"
                "b.pem\n") == -1 &&
               strcmp(where(err),
                      ":1: cert: control character or invalid UTF-8 in the value") == 0,
           "control character refused");
    TAP_OK(LOAD("cert = /a\tb.pem\n") == -1, "tab inside a path refused");
    TAP_OK(LOAD("cert = /caf\xe9.pem\n") == -1, "Latin-1 (invalid UTF-8) value refused");
    TAP_OK(LOAD("cert = /caf\xc3\xa9.pem\n") == 0 &&
               strcmp(cfg.cert_file, "/caf\xc3\xa9.pem") == 0,
           "UTF-8 value accepted");
    TAP_OK(LOAD("cert = /a\xc0\xaf.pem\n") == -1, "overlong UTF-8 refused");
    TAP_OK(LOAD("cert = /a\xed\xa0\x80.pem\n") == -1, "UTF-16 surrogate refused");
    TAP_OK(LOAD("cert = /a\xc2\x85.pem\n") == -1, "C1 control (NEL) refused");
    TAP_OK(LOAD("; caf\xe9 in a Latin-1 comment\ncert = /a.pem\n") == 0,
           "comments are not checked");
    TAP_OK(load_len(&cfg, "cert = /a.pem\n\0x = y\n", 20, err, sizeof err) == -1 &&
               strcmp(where(err), ":2: NUL byte in the line") == 0,
           "NUL byte refused: %s", where(err));

    /* 1023 characters is the longest line, CR and LF not counted. */
    memset(xs, 'x', sizeof xs - 1);
    xs[sizeof xs - 1] = '\0';
    snprintf(big, sizeof big, "#%.1022s\r\ncert = /long.pem\n", xs);
    TAP_OK(LOAD(big) == 0 && strcmp(cfg.cert_file, "/long.pem") == 0,
           "a 1023-character line (CRLF) accepted (%s)", err);
    snprintf(big, sizeof big, "cert = /ok.pem\n#%.1023s\ncert = /not-reached.pem\n", xs);
    TAP_OK(LOAD(big) == -1 && strcmp(where(err), ":2: line longer than 1023 characters") == 0,
           "a 1024-character line refused: %s", where(err));
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    TAP_OK(LOAD(big) == -1 && says(err, ":1: line longer"),
           "a 3000-character line without a newline refused");
}

static void test_values(void)
{
    struct config cfg;
    char err[512];

    /* yes/no, strictly. */
    TAP_OK(LOAD("client = yes\nlibwrap = no\npty = YES\n") == 0 && cfg.client_mode &&
               !cfg.libwrap && cfg.exec_pty,
           "yes / no / YES");
    TAP_OK(LOAD("client = true\n") == -1 &&
               strcmp(where(err), ":1: client = true: expected yes or no") == 0,
           "true refused: %s", where(err));
    TAP_OK(LOAD("\nlibwrap = 1\n") == -1 && says(err, ":2: libwrap = 1: expected yes or no"),
           "1 refused");
    TAP_OK(LOAD("pty = on\n") == -1, "on refused");

    /* verify: stunnel 4 levels 0-3 are ours; 4 is not. */
    TAP_OK(LOAD("verify = 0\n") == 0 && cfg.verify_level == 0, "verify = 0");
    TAP_OK(LOAD("verify = 1\n") == 0 && cfg.verify_level == 1, "verify = 1");
    TAP_OK(LOAD("verify = 2\nCAfile = /ca.pem\nCApath = /certs\n") == 0 &&
               cfg.verify_level == 2 && strcmp(cfg.ca_file, "/ca.pem") == 0 &&
               strcmp(cfg.ca_dir, "/certs") == 0,
           "verify = 2 with CAfile and CApath");
    TAP_OK(LOAD("verify = 3\n") == 0 && cfg.verify_level == 3, "verify = 3");
    TAP_OK(LOAD("verify = 4\n") == -1 && says(err, ":1: verify = 4 not supported"),
           "verify = 4 refused: %s", where(err));
    TAP_OK(LOAD("verify = 5\n") == -1 && says(err, ":1: verify = 5: expected 0, 1, 2 or 3"),
           "verify = 5");
    TAP_OK(LOAD("verify = -1\n") == -1, "verify = -1");
    TAP_OK(LOAD("verify = 02\n") == -1, "verify = 02");
    TAP_OK(LOAD("verifyChain = yes\n") == -1 &&
               says(err, ":1: verifyChain is not supported: use verify = "),
           "stunnel 5's verifyChain points at verify =");

    /* debug. */
    TAP_OK(LOAD("debug = 7\n") == 0 && cfg.log_level == LOG_DEBUG, "debug = 7");
    TAP_OK(LOAD("debug = 3\n") == 0 && cfg.log_level == LOG_ERR, "debug = 3");
    TAP_OK(LOAD("debug = local5.warning\n") == 0 && cfg.log_facility == LOG_LOCAL5 &&
               cfg.log_level == LOG_WARNING,
           "debug = local5.warning");
    TAP_OK(LOAD("debug = loud\n") == -1 && says(err, ":1: debug = loud: expected"),
           "debug = loud refused");
    TAP_OK(LOAD("debug = 8\n") == -1, "debug = 8 refused");

    /* Timeouts. */
    TAP_OK(
        LOAD("TIMEOUTidle = 600\nTIMEOUTbusy = 20\nTIMEOUTconnect = 5\nTIMEOUTclose = 2\n") ==
                0 &&
            cfg.timeout_idle == 600 && cfg.timeout_handshake == 20 &&
            cfg.timeout_connect == 5 && cfg.timeout_close == 2 && cfg.n_notes == 0,
        "TIMEOUTidle, TIMEOUTbusy (handshake), TIMEOUTconnect, TIMEOUTclose");
    TAP_OK(LOAD("TIMEOUTidle = 0\n") == -1 &&
               strcmp(where(err), ":1: TIMEOUTidle = 0: must be at least 1 second") == 0,
           "TIMEOUTidle = 0 refused");
    TAP_OK(LOAD("TIMEOUTbusy = 1e3\n") == -1, "TIMEOUTbusy = 1e3 refused");
    TAP_OK(LOAD("TIMEOUTconnect = 604801\n") == -1, "more than a week refused");

    /* Service names. */
    TAP_OK(LOAD("service = imapd\n") == 0 && strcmp(cfg.service, "imapd") == 0 &&
               cfg.service_set,
           "service = without a section");
    TAP_OK(LOAD("service = a,b\n") == -1, "service = with a comma refused");

    /* syslog. */
    TAP_OK(LOAD("syslog = no\n") == 0 && has_note(&cfg, "syslog = no ignored"),
           "syslog = no without output: noted");
    TAP_OK(LOAD("syslog = no\noutput = /var/log/t.log\n") == 0 && cfg.n_notes == 0 &&
               strcmp(cfg.log_file, "/var/log/t.log") == 0,
           "syslog = no with output: nothing to note");
    TAP_OK(LOAD("syslog = maybe\n") == -1, "syslog = maybe refused");

    /* Notes, each once. */
    TAP_OK(LOAD("ciphers = HIGH:!aNULL\nciphers = ALL\n") == 0 && cfg.n_notes == 1 &&
               strcmp(cfg.notes[0], "ciphers ignored: OpenSSL cipher list; use priority =") ==
                   0 &&
               strcmp(cfg.priority, OPTIONS_DEFAULT_PRIORITY) == 0,
           "ciphers noted once, priority untouched");
    TAP_OK(LOAD("priority = NORMAL:-VERS-TLS1.0\n") == 0 &&
               strcmp(cfg.priority, "NORMAL:-VERS-TLS1.0") == 0,
           "priority = is ours, taken as written");
    TAP_OK(LOAD("renegotiation = yes\n") == 0 &&
               has_note(&cfg, "renegotiation = yes ignored: renegotiation is always refused"),
           "renegotiation = yes noted");
    TAP_OK(LOAD("renegotiation = no\n") == 0 && cfg.n_notes == 0,
           "renegotiation = no: nothing");
    TAP_OK(LOAD("compression = zlib\nsessionCacheSize = 1000\nRNDfile = /dev/urandom\n"
                "delay = yes\nfips = no\n") == 0 &&
               cfg.n_notes == 4,
           "compression, session cache, RNDfile, delay noted; fips = no is silent (%zu)",
           cfg.n_notes);
    TAP_OK(LOAD("foreground = maybe\n") == -1, "foreground = maybe refused");

    /* Refusals. */
    TAP_OK(LOAD("protocol = smtp\n") == 0 && cfg.starttls == STARTTLS_SMTP &&
               !cfg.starttls_optional,
           "protocol = smtp maps to --starttls smtp, required");
    TAP_OK(LOAD("protocol = IMAP\n") == 0 && cfg.starttls == STARTTLS_IMAP,
           "protocol = IMAP maps to --starttls imap");
    TAP_OK(LOAD("protocol = pop3\n") == 0 && cfg.starttls == STARTTLS_POP3,
           "protocol = pop3 maps to --starttls pop3");
    TAP_OK(LOAD("protocol = ldap\n") == -1 &&
               says(err, ":1: protocol = ldap is not supported") && cfg.starttls == 0,
           "protocol = ldap refused: %s", where(err));
    TAP_OK(LOAD("protocol = proxy\n") == 0 && cfg.proxy_protocol == 1,
           "protocol = proxy maps to --proxy-protocol v1");
    TAP_OK(LOAD("protocol = socks\n") == -1 && cfg.proxy_protocol == 0,
           "protocol = socks refused, no PROXY header");
    TAP_OK(LOAD("transparent = source\n") == -1 &&
               says(err, ":1: transparent makes no sense here"),
           "transparent refused");
    TAP_OK(LOAD("engine = auto\n") == -1, "engine refused");
    TAP_OK(LOAD("include = /etc/stunnel/conf.d\n") == -1 &&
               says(err, ":1: include is not supported"),
           "include refused");
    TAP_OK(LOAD("CRLfile = /crl.pem\n") == 0 && cfg.crl_file != NULL &&
               strcmp(cfg.crl_file, "/crl.pem") == 0,
           "CRLfile maps to --crl-file");
    TAP_OK(LOAD("CRLpath = /crls\n") == -1 && strstr(err, "CRLfile =") != NULL,
           "CRLpath refused, pointing at CRLfile");
    TAP_OK(LOAD("ident = nobody\n") == -1, "ident refused, not dropped");
    TAP_OK(LOAD("fips = yes\n") == -1, "fips = yes refused");
}

static void test_versions(void)
{
    struct config cfg;
    char err[512];

    TAP_OK(LOAD("sslVersion = SSLv3\n") == -1 &&
               says(err, ":1: sslVersion = SSLv3 refused: tlsfilter speaks only TLS 1.2 "
                         "and TLS 1.3"),
           "sslVersion = SSLv3 refused: %s", where(err));
    TAP_OK(LOAD("cert = /a.pem\nsslVersion = TLSv1\n") == -1 &&
               says(err, ":2: sslVersion = TLSv1 refused"),
           "sslVersion = TLSv1 refused");
    TAP_OK(LOAD("sslVersionMin = TLSv1.1\n") == -1, "sslVersionMin = TLSv1.1 refused");
    TAP_OK(LOAD("sslVersionMax = TLSv1.1\n") == -1, "sslVersionMax = TLSv1.1 refused");
    TAP_OK(LOAD("sslVersion = TLSv1.4\n") == -1 &&
               says(err, ":1: sslVersion = TLSv1.4: expected all, TLSv1.2 or TLSv1.3"),
           "an unknown version refused");
    TAP_OK(LOAD("options = -NO_SSLv3\n") == -1, "options = -NO_SSLv3 (enabling SSL 3) refused");

    TAP_OK(LOAD("sslVersion = TLSv1.3\n") == 0 && versions(cfg.priority) == 1u << 3,
           "sslVersion = TLSv1.3: TLS 1.3 only (%s)", cfg.priority);
    TAP_OK(strncmp(cfg.priority, OPTIONS_DEFAULT_PRIORITY, strlen(OPTIONS_DEFAULT_PRIORITY)) ==
               0,
           "built on the default priority");
    TAP_OK(LOAD("sslVersion = TLSv1.2\n") == 0 && versions(cfg.priority) == 1u << 2,
           "sslVersion = TLSv1.2: TLS 1.2 only, as stunnel means it");
    TAP_OK(LOAD("sslVersionMin = TLSv1.3\n") == 0 && versions(cfg.priority) == 1u << 3,
           "sslVersionMin = TLSv1.3");
    TAP_OK(LOAD("sslVersionMax = TLSv1.2\n") == 0 && versions(cfg.priority) == 1u << 2,
           "sslVersionMax = TLSv1.2");
    TAP_OK(LOAD("options = NO_TLSv1_3\noptions = NO_SSLv3\n") == 0 &&
               versions(cfg.priority) == 1u << 2 && cfg.n_notes == 0,
           "options = NO_TLSv1_3: TLS 1.2 only; NO_SSLv3 already holds");
    TAP_OK(LOAD("options = DONT_INSERT_EMPTY_FRAGMENTS\n") == 0 &&
               has_note(&cfg, "options ignored") &&
               strcmp(cfg.priority, OPTIONS_DEFAULT_PRIORITY) == 0,
           "other OpenSSL options noted");
    TAP_OK(LOAD("sslVersion = all\n") == 0 &&
               strcmp(cfg.priority, OPTIONS_DEFAULT_PRIORITY) == 0 &&
               has_note(&cfg, "sslVersion all means TLS 1.2 and 1.3"),
           "sslVersion = all: default kept, noted");
    TAP_OK(LOAD("sslVersionMin = TLSv1.2\nsslVersionMax = TLSv1.3\n") == 0 &&
               strcmp(cfg.priority, OPTIONS_DEFAULT_PRIORITY) == 0,
           "TLS 1.2 to 1.3 is the default: priority untouched");
    TAP_OK(LOAD("sslVersionMin = TLSv1.3\nsslVersionMax = TLSv1.2\n") == -1 &&
               says(err, ":2: no TLS version left"),
           "min above max refused: %s", where(err));
    TAP_OK(LOAD("priority = NORMAL\nsslVersionMin = TLSv1.2\n") == 0 &&
               versions(cfg.priority) == ((1u << 2) | (1u << 3)),
           "with priority = NORMAL, sslVersionMin = TLSv1.2 still drops TLS 1.0/1.1 (%s)",
           cfg.priority);
    TAP_OK(versions("NORMAL") & (1u << 8), "(NORMAL alone would allow older versions)");
    TAP_OK(LOAD("sslVersion = TLSv1.3\npriority = NORMAL\n") == 0 &&
               versions(cfg.priority) == 1u << 3,
           "versions apply whatever the order of priority = in the file");
}

static void test_client_names(void)
{
    struct config cfg;
    char err[512];

    TAP_OK(
        LOAD("client = yes\nconnect = mail.example.com:465\ncheckHost = mail.example.com\n") ==
                0 &&
            cfg.client_mode && strcmp(cfg.server_name, "mail.example.com") == 0,
        "client mode: checkHost -> server_name");
    TAP_OK(LOAD("sni = imap.example.com\nclient = yes\n") == 0 &&
               strcmp(cfg.server_name, "imap.example.com") == 0,
           "client mode: sni -> server_name, whatever the order");
    TAP_OK(LOAD("client = yes\nsni = a.example\ncheckHost = b.example\n") == -1 &&
               says(err, ":3: checkHost b.example and sni a.example differ"),
           "different sni and checkHost refused: %s", where(err));
    TAP_OK(LOAD("\ncheckHost = client.example\n") == -1 &&
               says(err, ":2: checkHost in server mode"),
           "checkHost in server mode refused: %s", where(err));
    TAP_OK(LOAD("sni = pop3s:mail.example\n") == -1 && says(err, ":1: sni in server mode"),
           "sni in server mode refused");
}

/*
 * tlsfilter's own keys for the options stunnel has no key for: the same
 * ranges as the long options, the errors naming line and key, and a bad
 * value leaving the caller's config as it was (load() checks that).
 */
static void test_own_keys(void)
{
    static const struct {
        const char *text, *want; /* want: the message after the file's name */
    } bad[] = {
        /* 0 would refuse every client. */
        {"cert = /a.pem\nmaxConnections = 0\n",
         ":2: maxConnections = 0: expected a number (1-65536)"},
        {"maxConnections = 65537\n", ":1: maxConnections = 65537: expected a number (1-65536)"},
        {"maxPerSource = -1\n", ":1: maxPerSource = -1: expected a number (0-65536)"},
        {"maxRate = 10/s\n", ":1: maxRate = 10/s: expected a number (0-65536)"},
        {"maxRate = 99999999999999999999\n",
         ":1: maxRate = 99999999999999999999: expected a number (0-65536)"},
        {"\nexitIdle = 604801\n",
         ":2: exitIdle = 604801: expected a number of seconds (0-604800; 0: never)"},
        {"exitIdle = 5m\n",
         ":1: exitIdle = 5m: expected a number of seconds (0-604800; 0: never)"},
        {"keyProcess = off\n", ":1: keyProcess = off: expected yes or no"},
        {"sandbox = 0\n", ":1: sandbox = 0: expected yes or no"},
        /* The long option's spelling is not a key. */
        {"max-connections = 5\n", ":1: unknown option 'max-connections'"},
    };
    struct config cfg, before;
    char err[512];
    size_t i;

    base(&before);
    TAP_OK(before.max_connections == 64 && before.max_per_source == 0 && before.max_rate == 0 &&
               before.exit_idle == 0 && before.key_process && before.sandbox,
           "(the defaults these keys change)");
    TAP_OK(LOAD("maxConnections = 256\nmaxPerSource = 32\nmaxRate = 10\nexitIdle = 600\n"
                "keyProcess = no\nsandbox = no\n") == 0,
           "maxConnections, maxPerSource, maxRate, exitIdle, keyProcess, sandbox (%s)", err);
    TAP_OK(cfg.max_connections == 256 && cfg.max_per_source == 32 && cfg.max_rate == 10 &&
               cfg.exit_idle == 600,
           "the listener's limits and exitIdle set");
    TAP_OK(!cfg.key_process && !cfg.sandbox, "keyProcess = no and sandbox = no set");
    TAP_OK(cfg.n_notes == 0, "none of them is a note: they take effect (%zu notes)",
           cfg.n_notes);
    TAP_OK(LOAD("MAXCONNECTIONS = 1\nmaxpersource = 0\nMaxRate = 65536\nEXITIDLE = 0\n"
                "KeyProcess = YES\nSANDBOX = Yes\n") == 0 &&
               cfg.max_connections == 1 && cfg.max_per_source == 0 && cfg.max_rate == 65536 &&
               cfg.exit_idle == 0 && cfg.key_process && cfg.sandbox,
           "keys case-insensitive; the ends of each range accepted; yes in any case");
    TAP_OK(LOAD("keyProcess = no\n") == 0 && !cfg.key_process && cfg.sandbox &&
               cfg.max_connections == before.max_connections &&
               cfg.max_per_source == before.max_per_source && cfg.max_rate == before.max_rate &&
               cfg.exit_idle == before.exit_idle,
           "keyProcess = no changes nothing else");
    TAP_OK(LOAD("sandbox = no\n") == 0 && !cfg.sandbox && cfg.key_process,
           "sandbox = no changes nothing else");

    /* Bad values: FILE:LINE: KEY = VALUE: what was expected, as the options say it. */
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int r = LOAD(bad[i].text);
        TAP_OK(r == -1 && strcmp(where(err), bad[i].want) == 0, "refused: FILE%s", bad[i].want);
        if (r != -1 || strcmp(where(err), bad[i].want) != 0)
            printf("#   got: %s\n", r == -1 ? where(err) : "(loaded)");
    }
}

/* The options.c hook: "tlsfilter FILE" and "--config FILE", taken in order. */
static void test_hook(void)
{
    struct config cfg;
    char err[512];
    char *one[] = {(char *)"tlsfilter", (char *)fixture("stunnel-seed.conf"), NULL};
    char seed[4096];

    snprintf(seed, sizeof seed, "%s", fixture("stunnel-seed.conf"));
    one[1] = seed;
    TAP_OK(options_parse(2, one, &cfg, err, sizeof err) == OPTIONS_RUN,
           "tlsfilter FILE: the stunnel 4 inetd form (%s)", err);
    TAP_OK(strcmp(cfg.connect, "25") == 0 && strcmp(cfg.service, "ssmtp") == 0 &&
               strcmp(cfg.config_file, seed) == 0,
           "the file is mapped");
    {
        char *argv[] = {(char *)"tlsfilter", (char *)"--config", seed,
                        (char *)"-r",        (char *)"143",      NULL};
        TAP_OK(options_parse(5, argv, &cfg, err, sizeof err) == OPTIONS_RUN &&
                   strcmp(cfg.connect, "143") == 0 && strcmp(cfg.user, "stunnel") == 0,
               "--config FILE -r 143: the later option wins (%s)", err);
    }
    {
        char *argv[] = {(char *)"tlsfilter", (char *)"-r",       (char *)"143", (char *)"-s",
                        (char *)"nobody",    (char *)"--config", seed,          NULL};
        TAP_OK(options_parse(7, argv, &cfg, err, sizeof err) == OPTIONS_RUN &&
                   strcmp(cfg.connect, "25") == 0 && strcmp(cfg.user, "stunnel") == 0,
               "-r 143 -s nobody --config FILE: the file wins (%s)", err);
    }
    {
        char missing[] = "/nonexistent/stunnel.conf";
        char *argv[] = {(char *)"tlsfilter", missing, NULL};
        TAP_OK(options_parse(2, argv, &cfg, err, sizeof err) == OPTIONS_CONFIG_ERROR &&
                   strncmp(err, "/nonexistent/stunnel.conf: cannot open: ", 40) == 0,
               "tlsfilter MISSING-FILE: configuration error (78) naming the file (%s)", err);
    }
    {
        /* tlsfilter's own keys, taken in order with the options like any other. */
        static const char text[] = "connect = 110\nkeyProcess = no\nmaxConnections = 8\n";
        char file[4096];
        char *alone[] = {(char *)"tlsfilter", file, NULL};
        char *after[] = {(char *)"tlsfilter",         (char *)"--config", file,
                         (char *)"--max-connections", (char *)"9",        NULL};
        char *before[] = {(char *)"tlsfilter",
                          (char *)"--key-process",
                          (char *)"yes",
                          (char *)"--config",
                          file,
                          NULL};

        snprintf(file, sizeof file, "%s", write_tmp(text, sizeof text - 1));
        TAP_OK(options_parse(2, alone, &cfg, err, sizeof err) == OPTIONS_RUN &&
                   !cfg.key_process && cfg.max_connections == 8,
               "tlsfilter FILE: keyProcess = no and maxConnections = 8 apply (%s)", err);
        TAP_OK(options_parse(5, after, &cfg, err, sizeof err) == OPTIONS_RUN &&
                   cfg.max_connections == 9 && !cfg.key_process,
               "--config FILE --max-connections 9: the later option wins (%s)", err);
        TAP_OK(options_parse(5, before, &cfg, err, sizeof err) == OPTIONS_RUN &&
                   !cfg.key_process,
               "--key-process yes --config FILE: the file wins (%s)", err);
        unlink(file);
    }
    {
        static const char text[] = "connect = 110\nmaxConnections = 0\n";
        char file[4096], want[4200];
        char *alone[] = {(char *)"tlsfilter", file, NULL};

        snprintf(file, sizeof file, "%s", write_tmp(text, sizeof text - 1));
        snprintf(want, sizeof want, "%s:2: maxConnections = 0: expected a number (1-65536)",
                 file);
        TAP_OK(options_parse(2, alone, &cfg, err, sizeof err) == OPTIONS_CONFIG_ERROR,
               "tlsfilter FILE with maxConnections = 0: a configuration error (exit 78)");
        TAP_STREQ(err, want, "... naming the file, the line and the key");
        unlink(file);
    }
    {
        char *argv[] = {(char *)"tlsfilter", (char *)"25", (char *)"-r", NULL};
        TAP_OK(options_parse(3, argv, &cfg, err, sizeof err) == OPTIONS_ERROR,
               "two arguments are not the file form");
    }
}

int main(void)
{
    test_seed();
    test_rhel_sample();
    test_errors_in_fixtures();
    test_exec();
    test_syntax();
    test_values();
    test_versions();
    test_client_names();
    test_own_keys();
    test_hook();
    return tap_done();
}
