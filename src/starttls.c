/*
 * starttls.c: the plaintext phase of --starttls smtp (RFC 3207, 5321, 2920),
 * imap (RFC 3501 6.2.1, 9051, 2595) and pop3 (RFC 2595 4, 2449).
 *
 * tlsfilter connects to the backend first and relays the plaintext
 * conversation line by line, reading every line: it adds STARTTLS to the
 * backend's EHLO reply (dropping one the backend may send), answers
 * STARTTLS itself, and in required mode answers every command the upgrade
 * does not need with 530, so that it never reaches the backend. Replies
 * keep the commands' order: a command answered here waits until the
 * backend has answered the ones relayed before it.
 *
 * The upgrade: once STARTTLS is answered, nothing the client sent after
 * it, up to its first TLS byte (0x16, a handshake record), is kept: the
 * classic command injection (Postfix CVE-2011-0411) cannot happen, since
 * those bytes are never relayed. The backend gets RSET (its reply is
 * read here, not relayed) so that no envelope state from before TLS
 * survives; the client must start again with EHLO (RFC 3207 4.2). Backend
 * bytes not yet relayed at the upgrade are dropped with it.
 *
 * The first half of this file is pure (no I/O): tests/unit-starttls.c
 * drives it. starttls_run() at the end does the reading and writing.
 */
#include "config.h"

#include "starttls.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

/* --- the state machine ------------------------------------------------------ */

void starttls_init(struct starttls *s, enum starttls_proto proto, bool required)
{
    memset(s, 0, sizeof *s);
    s->proto = proto;
    s->required = required;
    s->state = STARTTLS_S_PLAIN;
    s->pending[0] = STARTTLS_R_GREETING;
    s->n_pending = 1;
    s->reply_first = true;
}

const char *starttls_proto_name(enum starttls_proto proto)
{
    switch (proto) {
    case STARTTLS_SMTP:
        return "smtp";
    case STARTTLS_IMAP:
        return "imap";
    case STARTTLS_POP3:
        return "pop3";
    case STARTTLS_OFF:
    default:
        return "none";
    }
}

const char *starttls_unavailable(enum starttls_proto proto)
{
    if (proto == STARTTLS_IMAP)
        return "* BYE Service not available\r\n";
    if (proto == STARTTLS_POP3)
        return "-ERR Service not available\r\n";
    return "421 4.3.0 Service not available, closing transmission channel\r\n";
}

/* The line without its CRLF (or bare LF). */
static size_t content_len(const char *line, size_t len)
{
    if (len > 0 && line[len - 1] == '\n')
        len--;
    if (len > 0 && line[len - 1] == '\r')
        len--;
    return len;
}

/* The first word, up to a space: its length. */
static size_t verb_len(const char *line, size_t n)
{
    size_t i = 0;

    while (i < n && line[i] != ' ' && line[i] != '\t')
        i++;
    return i;
}

static bool verb_is(const char *line, size_t vn, const char *word)
{
    return vn == strlen(word) && strncasecmp(line, word, vn) == 0;
}

/* Anything but blanks after the verb. */
static bool has_argument(const char *line, size_t vn, size_t n)
{
    for (size_t i = vn; i < n; i++)
        if (line[i] != ' ' && line[i] != '\t')
            return true;
    return false;
}

/* A control character other than tab (CR and LF are cut off before). */
static bool has_control(const char *line, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)line[i] < 0x20 && line[i] != '\t') || line[i] == 0x7f)
            return true;
    return false;
}

static enum starttls_verdict say(const char *text, char *out, size_t outlen, size_t *outn,
                                 enum starttls_verdict v)
{
    int n = snprintf(out, outlen, "%s", text);

    *outn = n < 0 ? 0 : (size_t)n < outlen ? (size_t)n : outlen - 1;
    return v;
}

static enum starttls_verdict fail(struct starttls *s, int status, const char *reason,
                                  const char *answer, char *out, size_t outlen, size_t *outn)
{
    s->state = STARTTLS_S_FAILED;
    s->status = status;
    snprintf(s->reason, sizeof s->reason, "%s", reason);
    return say(answer, out, outlen, outn, STARTTLS_FAIL);
}

static void expect(struct starttls *s, enum starttls_reply r)
{
    s->pending[s->n_pending++] = r;
}

static void set_verb(struct starttls *s, const char *line, size_t vn)
{
    size_t i, n = vn < sizeof s->verb - 1 ? vn : sizeof s->verb - 1;

    for (i = 0; i < n; i++)
        s->verb[i] = line[i];
    s->verb[n] = '\0';
}

static enum starttls_verdict handover(struct starttls *s)
{
    if (s->n_pending > 0)
        return STARTTLS_WAIT;
    s->state = STARTTLS_S_HANDOVER;
    return STARTTLS_HANDOVER;
}

static void put(char *out, size_t outlen, size_t *outn, const char *p, size_t n)
{
    if (n > outlen - 1 - *outn)
        n = outlen - 1 - *outn;
    memcpy(out + *outn, p, n);
    *outn += n;
}

static void put_s(char *out, size_t outlen, size_t *outn, const char *p)
{
    put(out, outlen, outn, p, strlen(p));
}

/* The n bytes at p, case-insensitively, in line[0..len): its offset, or -1. */
static long find(const char *line, size_t len, const char *p)
{
    size_t n = strlen(p);

    for (size_t i = 0; i + n <= len; i++)
        if (strncasecmp(line + i, p, n) == 0)
            return (long)i;
    return -1;
}

/*
 * SMTP and POP3: a command that is not one of the upgrade's own. In
 * opportunistic mode it, QUIT included, hands the session over in clear
 * (once the replies owed are relayed; an EHLO reply is still rewritten).
 * In required mode QUIT is the last command relayed, and anything else is
 * answered with `answer` (after the replies owed, so that their order holds)
 * and not relayed.
 */
static enum starttls_verdict quit_or_refuse(struct starttls *s, const char *line, size_t vn,
                                            const char *reason, const char *answer, char *out,
                                            size_t outlen, size_t *outn)
{
    if (!s->required)
        return handover(s);
    if (verb_is(line, vn, "QUIT")) {
        expect(s, STARTTLS_R_OTHER);
        s->state = STARTTLS_S_QUIT;
        return STARTTLS_RELAY;
    }
    if (s->n_pending > 0)
        return STARTTLS_WAIT;
    snprintf(s->reason, sizeof s->reason, "%s", reason);
    set_verb(s, line, vn);
    return say(answer, out, outlen, outn, STARTTLS_ANSWER);
}

static enum starttls_verdict smtp_client(struct starttls *s, const char *line, size_t len,
                                         char *out, size_t outlen, size_t *outn)
{
    size_t n = content_len(line, len), vn = verb_len(line, n);

    *outn = 0;
    if (has_control(line, n))
        return fail(s, EX_PROTOCOL, "binary data in a command before TLS",
                    "500 5.5.2 Syntax error, closing\r\n", out, outlen, outn);
    /* Verbs in the order the upgrade uses them. */
    if (verb_is(line, vn, "STARTTLS")) {
        if (s->n_pending > 0)
            return STARTTLS_WAIT;
        if (has_argument(line, vn, n)) {
            snprintf(s->reason, sizeof s->reason, "STARTTLS with an argument");
            set_verb(s, line, vn);
            return say("501 5.5.4 Syntax error: STARTTLS takes no parameters\r\n", out, outlen,
                       outn, STARTTLS_ANSWER);
        }
        s->state = STARTTLS_S_UPGRADE;
        return say("220 2.0.0 Ready to start TLS\r\n", out, outlen, outn, STARTTLS_UPGRADE);
    }
    if (s->n_pending == STARTTLS_MAX_PENDING)
        return STARTTLS_WAIT;
    if (verb_is(line, vn, "EHLO")) {
        expect(s, STARTTLS_R_EHLO);
        return STARTTLS_RELAY;
    }
    if (verb_is(line, vn, "HELO") || verb_is(line, vn, "NOOP") || verb_is(line, vn, "RSET")) {
        expect(s, STARTTLS_R_OTHER);
        return STARTTLS_RELAY;
    }
    return quit_or_refuse(s, line, vn, "command before STARTTLS",
                          "530 5.7.0 Must issue a STARTTLS command first\r\n", out, outlen,
                          outn);
}

/* --- IMAP (RFC 3501 6.2.1, RFC 9051, RFC 2595) ------------------------------ */

/*
 * A capability list (space-separated, n bytes at caps) as the client must
 * see it before TLS: without STARTTLS of the backend's own, then ours; in
 * required mode without AUTH= mechanisms and with LOGINDISABLED, since
 * LOGIN and AUTHENTICATE get NO until TLS.
 */
static void imap_caps(const struct starttls *s, const char *caps, size_t n, char *out,
                      size_t outlen, size_t *outn)
{
    size_t i = 0;

    while (i < n) {
        size_t j = i, tn;

        while (j < n && caps[j] != ' ')
            j++;
        tn = j - i;
        if (tn > 0 && !(tn == 8 && strncasecmp(caps + i, "STARTTLS", 8) == 0) &&
            !(s->required && ((tn >= 5 && strncasecmp(caps + i, "AUTH=", 5) == 0) ||
                              (tn == 13 && strncasecmp(caps + i, "LOGINDISABLED", 13) == 0)))) {
            put(out, outlen, outn, caps + i, tn);
            put_s(out, outlen, outn, " ");
        }
        i = j + 1;
    }
    put_s(out, outlen, outn, s->required ? "STARTTLS LOGINDISABLED" : "STARTTLS");
}

/* A backend line, its CAPABILITY (untagged, or a [CAPABILITY] code) rewritten. */
static void imap_rewrite(const struct starttls *s, const char *line, size_t len, char *out,
                         size_t outlen, size_t *outn)
{
    size_t n = content_len(line, len);
    long at;

    *outn = 0;
    if (n >= 13 && strncasecmp(line, "* CAPABILITY ", 13) == 0) {
        put(out, outlen, outn, line, 13);
        imap_caps(s, line + 13, n - 13, out, outlen, outn);
        put_s(out, outlen, outn, "\r\n");
        return;
    }
    at = find(line, n, "[CAPABILITY ");
    if (at >= 0) {
        const char *caps = line + at + 12, *end = memchr(caps, ']', n - (size_t)at - 12);

        if (end != NULL) {
            put(out, outlen, outn, line, (size_t)at + 12);
            imap_caps(s, caps, (size_t)(end - caps), out, outlen, outn);
            put(out, outlen, outn, end, n - (size_t)(end - line));
            put_s(out, outlen, outn, "\r\n");
            return;
        }
    }
    put(out, outlen, outn, line, len);
}

/* A literal at the end of a command line, "{N}" or "{N+}": N, or -1. */
static long imap_literal(const char *line, size_t n, bool *sync)
{
    size_t i;
    long v = 0;

    if (n < 3 || line[n - 1] != '}')
        return -1;
    i = n - 2;
    *sync = line[i] != '+';
    if (!*sync)
        i--;
    if (i >= n || line[i] < '0' || line[i] > '9')
        return -1;
    while (i > 0 && line[i] >= '0' && line[i] <= '9')
        i--;
    if (line[i] != '{')
        return -1;
    for (i++; line[i] >= '0' && line[i] <= '9'; i++)
        v = v > 100000000 ? v : v * 10 + (line[i] - '0');
    return v;
}

/* "tag TEXT" to out, with the client's tag. */
static enum starttls_verdict imap_say(const char *tag, size_t tn, const char *text, char *out,
                                      size_t outlen, size_t *outn, enum starttls_verdict v)
{
    *outn = 0;
    put(out, outlen, outn, tag, tn);
    put_s(out, outlen, outn, " ");
    put_s(out, outlen, outn, text);
    return v;
}

static enum starttls_verdict imap_client(struct starttls *s, const char *line, size_t len,
                                         char *out, size_t outlen, size_t *outn)
{
    size_t n = content_len(line, len), tn = verb_len(line, n), cs, cn;
    long lit;
    bool sync = true;

    *outn = 0;
    if (has_control(line, n))
        return fail(s, EX_PROTOCOL, "binary data in a command before TLS",
                    "* BYE Syntax error, closing\r\n", out, outlen, outn);
    lit = imap_literal(line, n, &sync);
    if (lit > STARTTLS_MAX_DISCARD)
        return fail(s, EX_PROTOCOL, "a literal too large before TLS",
                    "* BYE Literal too large before STARTTLS\r\n", out, outlen, outn);
    /* The rest of a refused command, after its non-synchronizing literal. */
    if (s->cont) {
        s->cont = lit >= 0 && !sync;
        s->skip = s->cont ? (size_t)lit : 0;
        return STARTTLS_SKIP;
    }
    cs = tn < n ? tn + 1 : n;
    cn = verb_len(line + cs, n - cs);
    if (tn == 0 || cn == 0) {
        if (s->n_pending > 0)
            return STARTTLS_WAIT;
        snprintf(s->reason, sizeof s->reason, "not an IMAP command");
        set_verb(s, line, tn);
        return say("* BAD Missing tag or command\r\n", out, outlen, outn, STARTTLS_ANSWER);
    }
    if (verb_is(line + cs, cn, "STARTTLS")) {
        if (s->n_pending > 0)
            return STARTTLS_WAIT;
        if (has_argument(line + cs, cn, n - cs)) {
            snprintf(s->reason, sizeof s->reason, "STARTTLS with an argument");
            set_verb(s, line + cs, cn);
            return imap_say(line, tn, "BAD STARTTLS takes no arguments\r\n", out, outlen, outn,
                            STARTTLS_ANSWER);
        }
        s->state = STARTTLS_S_UPGRADE;
        return imap_say(line, tn, "OK Begin TLS negotiation now\r\n", out, outlen, outn,
                        STARTTLS_UPGRADE);
    }
    if (s->n_pending == STARTTLS_MAX_PENDING)
        return STARTTLS_WAIT;
    if ((verb_is(line + cs, cn, "CAPABILITY") || verb_is(line + cs, cn, "NOOP")) && lit < 0) {
        expect(s, STARTTLS_R_OTHER);
        return STARTTLS_RELAY;
    }
    if (!s->required)
        return handover(s);
    if (verb_is(line + cs, cn, "LOGOUT") && lit < 0) {
        expect(s, STARTTLS_R_OTHER);
        s->state = STARTTLS_S_QUIT;
        return STARTTLS_RELAY;
    }
    if (s->n_pending > 0)
        return STARTTLS_WAIT;
    /* Refused. A synchronizing literal is not sent after a tagged NO (RFC
     * 3501 7.5); a non-synchronizing one comes anyway and is skipped, with
     * the rest of its command. */
    if (lit >= 0 && !sync) {
        s->cont = true;
        s->skip = (size_t)lit;
    }
    snprintf(s->reason, sizeof s->reason, "command before STARTTLS");
    set_verb(s, line + cs, cn);
    return imap_say(line, tn, "NO [PRIVACYREQUIRED] Must issue a STARTTLS command first\r\n",
                    out, outlen, outn, STARTTLS_ANSWER);
}

static enum starttls_verdict imap_backend(struct starttls *s, const char *line, size_t len,
                                          char *out, size_t outlen, size_t *outn)
{
    size_t n = content_len(line, len);
    bool untagged = n >= 2 && line[0] == '*' && line[1] == ' ';

    *outn = 0;
    if (s->n_pending > 0 && s->pending[0] == STARTTLS_R_GREETING) {
        s->n_pending = 0;
        if (n >= 4 && strncasecmp(line, "* OK", 4) == 0) {
            imap_rewrite(s, line, len, out, outlen, outn);
            return STARTTLS_RELAY;
        }
        if (n >= 9 && strncasecmp(line, "* PREAUTH", 9) == 0) {
            /* Logged in already: no STARTTLS is possible (RFC 3501 6.2.1). */
            if (!s->required) {
                s->state = STARTTLS_S_HANDOVER;
                put(out, outlen, outn, line, len);
                return STARTTLS_HANDOVER;
            }
            return fail(
                s, EX_UNAVAILABLE, "the backend's greeting is PREAUTH: no STARTTLS is possible",
                "* BYE Pre-authenticated session, but TLS is required\r\n", out, outlen, outn);
        }
        s->state = STARTTLS_S_FAILED;
        s->status = EX_UNAVAILABLE;
        if (n >= 5 && strncasecmp(line, "* BYE", 5) == 0) {
            snprintf(s->reason, sizeof s->reason, "the backend's greeting is %.*s",
                     (int)(n < 60 ? n : 60), line);
            put(out, outlen, outn, line, len);
            return STARTTLS_FAIL;
        }
        return fail(s, EX_UNAVAILABLE, "the backend's greeting is not IMAP",
                    starttls_unavailable(s->proto), out, outlen, outn);
    }
    /* A tagged line ends the oldest command; untagged and "+" lines do not. */
    if (!untagged && !(n >= 1 && line[0] == '+') && s->n_pending > 0) {
        memmove(s->pending, s->pending + 1, (s->n_pending - 1) * sizeof s->pending[0]);
        s->n_pending--;
    }
    imap_rewrite(s, line, len, out, outlen, outn);
    return STARTTLS_RELAY;
}

/* --- POP3 (RFC 1939, RFC 2449, RFC 2595 4) ------------------------------------ */

static enum starttls_verdict pop3_client(struct starttls *s, const char *line, size_t len,
                                         char *out, size_t outlen, size_t *outn)
{
    size_t n = content_len(line, len), vn = verb_len(line, n);

    *outn = 0;
    if (has_control(line, n))
        return fail(s, EX_PROTOCOL, "binary data in a command before TLS",
                    "-ERR Syntax error, closing\r\n", out, outlen, outn);
    if (verb_is(line, vn, "STLS")) {
        if (s->n_pending > 0)
            return STARTTLS_WAIT;
        if (has_argument(line, vn, n)) {
            snprintf(s->reason, sizeof s->reason, "STLS with an argument");
            set_verb(s, line, vn);
            return say("-ERR STLS takes no arguments\r\n", out, outlen, outn, STARTTLS_ANSWER);
        }
        s->state = STARTTLS_S_UPGRADE;
        return say("+OK Begin TLS negotiation\r\n", out, outlen, outn, STARTTLS_UPGRADE);
    }
    if (s->n_pending == STARTTLS_MAX_PENDING)
        return STARTTLS_WAIT;
    if (verb_is(line, vn, "CAPA")) {
        expect(s, STARTTLS_R_CAPA);
        return STARTTLS_RELAY;
    }
    return quit_or_refuse(s, line, vn, "command before STLS",
                          "-ERR Must issue a STLS command first\r\n", out, outlen, outn);
}

static enum starttls_verdict pop3_backend(struct starttls *s, const char *line, size_t len,
                                          char *out, size_t outlen, size_t *outn)
{
    size_t n = content_len(line, len), vn = verb_len(line, n);
    bool ok = n >= 3 && strncmp(line, "+OK", 3) == 0,
         err = n >= 4 && strncmp(line, "-ERR", 4) == 0;
    enum starttls_reply r = s->n_pending > 0 ? s->pending[0] : STARTTLS_R_OTHER;
    bool first = s->reply_first;

    *outn = 0;
    if (s->n_pending == 0) {
        put(out, outlen, outn, line, len);
        return STARTTLS_RELAY;
    }
    if (first && !ok && !err)
        return fail(s, EX_UNAVAILABLE, "the backend's reply is not POP3",
                    starttls_unavailable(s->proto), out, outlen, outn);
    /* A one-line reply, or the end of CAPA's list: the command is answered. */
    if ((first && (r != STARTTLS_R_CAPA || err)) || (!first && n == 1 && line[0] == '.')) {
        memmove(s->pending, s->pending + 1, (s->n_pending - 1) * sizeof s->pending[0]);
        s->n_pending--;
        s->reply_first = true;
        if (!first) {
            put_s(out, outlen, outn, "STLS\r\n.\r\n");
            return STARTTLS_RELAY;
        }
    } else {
        s->reply_first = false;
    }
    if (r == STARTTLS_R_GREETING && err) {
        s->state = STARTTLS_S_FAILED;
        s->status = EX_UNAVAILABLE;
        snprintf(s->reason, sizeof s->reason, "the backend's greeting is %.*s",
                 (int)(n < 60 ? n : 60), line);
        put(out, outlen, outn, line, len);
        return STARTTLS_FAIL;
    }
    /* CAPA's list: STLS is ours; in required mode USER and SASL wait for TLS. */
    if (r == STARTTLS_R_CAPA && !first &&
        (verb_is(line, vn, "STLS") ||
         (s->required && (verb_is(line, vn, "USER") || verb_is(line, vn, "SASL")))))
        return STARTTLS_RELAY;
    put(out, outlen, outn, line, len);
    return STARTTLS_RELAY;
}

enum starttls_verdict starttls_client_line(struct starttls *s, const char *line, size_t len,
                                           char *out, size_t outlen, size_t *outn)
{
    enum starttls_verdict v;

    *outn = 0;
    /* Nothing goes to a backend before its greeting (it may refuse). */
    if (s->state != STARTTLS_S_PLAIN ||
        (s->n_pending > 0 && s->pending[0] == STARTTLS_R_GREETING))
        return STARTTLS_WAIT;
    if (s->commands >= STARTTLS_MAX_COMMANDS) {
        if (s->n_pending > 0)
            return STARTTLS_WAIT;
        return fail(s, EX_PROTOCOL, "too many commands before STARTTLS",
                    s->proto == STARTTLS_IMAP   ? "* BYE Too many commands before STARTTLS\r\n"
                    : s->proto == STARTTLS_POP3 ? "-ERR Too many commands before STLS\r\n"
                                                : "421 4.7.0 Too many commands before "
                                                  "STARTTLS, closing\r\n",
                    out, outlen, outn);
    }
    v = s->proto == STARTTLS_IMAP   ? imap_client(s, line, len, out, outlen, outn)
        : s->proto == STARTTLS_POP3 ? pop3_client(s, line, len, out, outlen, outn)
                                    : smtp_client(s, line, len, out, outlen, outn);
    if (v != STARTTLS_WAIT && v != STARTTLS_SKIP)
        s->commands++;
    return v;
}

/* An EHLO keyword line ("250-STARTTLS", "250 AUTH PLAIN"): whether to drop it. */
static bool ehlo_hidden(const struct starttls *s, const char *kw, size_t n)
{
    size_t vn = verb_len(kw, n);

    if (verb_is(kw, vn, "STARTTLS"))
        return true;
    /* Required: AUTH before TLS gets 530, so it is not offered. */
    return s->required && verb_is(kw, vn, "AUTH");
}

/* Append "250<sep><text>\r\n" to out at *outn. */
static void put_line(char *out, size_t outlen, size_t *outn, char sep, const char *text,
                     size_t n)
{
    int w = snprintf(out + *outn, outlen - *outn, "250%c%.*s\r\n", sep, (int)n, text);

    if (w > 0)
        *outn += (size_t)w < outlen - *outn ? (size_t)w : outlen - *outn - 1;
}

static enum starttls_verdict smtp_backend(struct starttls *s, const char *line, size_t len,
                                          char *out, size_t outlen, size_t *outn)
{
    size_t n = content_len(line, len);
    bool valid = n >= 3 && line[0] >= '1' && line[0] <= '5' && line[1] >= '0' &&
                 line[1] <= '9' && line[2] >= '0' && line[2] <= '9' &&
                 (n == 3 || line[3] == ' ' || line[3] == '-');
    bool final = valid && (n == 3 || line[3] == ' ');
    bool first = s->reply_first;
    enum starttls_reply r;

    *outn = 0;
    if (!valid)
        return fail(s, EX_UNAVAILABLE, "the backend's reply is not SMTP",
                    starttls_unavailable(s->proto), out, outlen, outn);
    /* Unasked (a 421 before the backend closes): the client should hear it. */
    if (s->n_pending == 0) {
        *outn = len < outlen ? len : outlen;
        memcpy(out, line, *outn);
        return STARTTLS_RELAY;
    }
    r = s->pending[0];
    s->reply_first = final;
    if (final) {
        memmove(s->pending, s->pending + 1, (s->n_pending - 1) * sizeof s->pending[0]);
        s->n_pending--;
    }
    switch (r) {
    case STARTTLS_R_GREETING:
        /* Not 220 (421, 554): relayed, it is the backend's own answer, then the end. */
        if (final && strncmp(line, "220", 3) != 0) {
            s->state = STARTTLS_S_FAILED;
            s->status = EX_UNAVAILABLE;
            snprintf(s->reason, sizeof s->reason, "the backend's greeting is %.*s",
                     (int)(n < 60 ? n : 60), line);
        }
        break;
    case STARTTLS_R_RESET:
        if (final && line[0] != '2') {
            s->state = STARTTLS_S_FAILED;
            s->status = EX_UNAVAILABLE;
            snprintf(s->reason, sizeof s->reason, "the backend refused RSET after STARTTLS");
            return STARTTLS_FAIL; /* the client hears nothing of it */
        }
        return STARTTLS_RELAY; /* swallowed */
    case STARTTLS_R_EHLO:
        if (first)
            s->reply_ok = strncmp(line, "250", 3) == 0;
        if (!s->reply_ok)
            break;
        if (first) {
            /* The greeting line, never a keyword. */
            put_line(out, outlen, outn, '-', n > 4 ? line + 4 : "", n > 4 ? n - 4 : 0);
        } else if (!ehlo_hidden(s, line + 4, n > 4 ? n - 4 : 0)) {
            put_line(out, outlen, outn, '-', line + 4, n > 4 ? n - 4 : 0);
        }
        /* Ours goes last, so that the backend's last line need not be held. */
        if (final)
            put_line(out, outlen, outn, ' ', "STARTTLS", 8);
        return STARTTLS_RELAY;
    case STARTTLS_R_OTHER:
    default:
        break;
    }
    *outn = len < outlen ? len : outlen;
    memcpy(out, line, *outn);
    return s->state == STARTTLS_S_FAILED ? STARTTLS_FAIL : STARTTLS_RELAY;
}

enum starttls_verdict starttls_backend_line(struct starttls *s, const char *line, size_t len,
                                            char *out, size_t outlen, size_t *outn)
{
    enum starttls_verdict v =
        s->proto == STARTTLS_IMAP   ? imap_backend(s, line, len, out, outlen, outn)
        : s->proto == STARTTLS_POP3 ? pop3_backend(s, line, len, out, outlen, outn)
                                    : smtp_backend(s, line, len, out, outlen, outn);

    /* After STARTTLS the client hears nothing more in clear. */
    if (s->state == STARTTLS_S_UPGRADE)
        *outn = 0;
    return v;
}

size_t starttls_reset(struct starttls *s, char *out, size_t outlen)
{
    if (s->proto != STARTTLS_SMTP || outlen < 7)
        return 0;
    expect(s, STARTTLS_R_RESET);
    s->reply_first = true;
    memcpy(out, "RSET\r\n", 6);
    return 6;
}

size_t starttls_line_max(enum starttls_proto proto)
{
    if (proto == STARTTLS_IMAP)
        return STARTTLS_IMAP_LINE;
    if (proto == STARTTLS_POP3)
        return STARTTLS_POP3_LINE;
    return STARTTLS_SMTP_LINE;
}

const char *starttls_too_long(enum starttls_proto proto)
{
    if (proto == STARTTLS_IMAP)
        return "* BYE Line too long\r\n";
    if (proto == STARTTLS_POP3)
        return "-ERR Line too long\r\n";
    return "500 5.5.6 Line too long, closing\r\n";
}

const char *starttls_timeout(enum starttls_proto proto)
{
    if (proto == STARTTLS_IMAP)
        return "* BYE Timeout before TLS\r\n";
    if (proto == STARTTLS_POP3)
        return "-ERR Timeout before TLS\r\n";
    return "421 4.4.2 Timeout before TLS, closing\r\n";
}

/* --- the I/O loop --------------------------------------------------------------- */

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Write all of buf to the non-blocking fd before the deadline: 0, or -1. */
static int send_all(int fd, const void *buf, size_t len, long long deadline)
{
    const unsigned char *p = buf;

    while (len > 0) {
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        ssize_t w = write(fd, p, len);
        long long left;

        if (w > 0) {
            p += w;
            len -= (size_t)w;
            continue;
        }
        if (w < 0 && errno != EAGAIN && errno != EINTR)
            return -1;
        left = deadline - now_ms();
        if (left <= 0 || poll(&pfd, 1, (int)left) == 0)
            return -1;
    }
    return 0;
}

/* Read what fd has into buf[*n..cap): false at its end (EOF or an error). */
static bool fill(int fd, char *buf, size_t *n, size_t cap)
{
    ssize_t r = read(fd, buf + *n, cap - *n);

    if (r > 0) {
        *n += (size_t)r;
        return true;
    }
    return r < 0 && (errno == EAGAIN || errno == EINTR);
}

static void drop(char *buf, size_t *n, size_t k)
{
    memmove(buf, buf + k, *n - k);
    *n -= k;
}

/* IMAP: the literal of a refused command, not to be read as commands. */
static void skip_literal(struct starttls *s, char *cin, size_t *cn, struct starttls_result *res)
{
    size_t k = s->skip < *cn ? s->skip : *cn;

    if (k == 0)
        return;
    drop(cin, cn, k);
    s->skip -= k;
    res->skipped += k;
}

static enum starttls_outcome failed(struct starttls_result *res, int status, const char *reason)
{
    res->status = status;
    snprintf(res->reason, sizeof res->reason, "%s", reason);
    return STARTTLS_FAILED;
}

static enum starttls_outcome ended(struct starttls_result *res, const char *client,
                                   const char *backend, const char *note)
{
    res->client_how = client;
    res->backend_how = backend;
    snprintf(res->reason, sizeof res->reason, "%s", note);
    return STARTTLS_ENDED;
}

enum starttls_outcome starttls_run(struct starttls *s, int bfd, const void *pre, size_t len,
                                   unsigned timeout_sec, const char *peer,
                                   struct starttls_result *res)
{
    /* Static: one phase runs per process, and the stack stays small. */
    static char cin[STARTTLS_CLIENT_BUF], bin[STARTTLS_BACKEND_LINE],
        out[2 * STARTTLS_BACKEND_LINE + 64];
    size_t cn = 0, bn = 0, on, cap = starttls_line_max(s->proto);
    long long deadline = now_ms() + (long long)timeout_sec * 1000;
    bool client_open = true, backend_open = true;
    enum starttls_verdict v;
    char *nl;

    memset(res, 0, sizeof *res);
    if (cap > sizeof cin)
        cap = sizeof cin;
    if (len > cap)
        len = cap;
    memcpy(cin, pre, len);
    cn = len;
    for (;;) {
        struct pollfd pfd[2];
        long long left;
        int n;

        /* The backend's lines, in order: relayed, rewritten or swallowed. */
        while ((nl = memchr(bin, '\n', bn)) != NULL) {
            size_t l = (size_t)(nl - bin) + 1;

            v = starttls_backend_line(s, bin, l, out, sizeof out, &on);
            drop(bin, &bn, l);
            if (on > 0 && send_all(1, out, on, deadline) < 0)
                return ended(res, "reset", "open", "the client went away");
            res->to_client += on;
            if (v == STARTTLS_FAIL)
                return failed(res, s->status, s->reason);
            if (v == STARTTLS_HANDOVER) {
                /* IMAP PREAUTH, opportunistic: in clear from the start. */
                memcpy(res->pre, cin, cn); /* cn <= cap <= sizeof res->pre */
                res->n_pre = cn;
                memcpy(res->back, bin, bn);
                res->n_back = bn;
                return STARTTLS_GO_PLAIN;
            }
        }
        if (bn == sizeof bin) {
            (void)send_all(1, starttls_unavailable(s->proto),
                           strlen(starttls_unavailable(s->proto)), deadline);
            return failed(res, EX_UNAVAILABLE, "the backend's reply line is too long");
        }

        /* The client's lines, while no upgrade or end is under way. */
        skip_literal(s, cin, &cn, res);
        while (s->state == STARTTLS_S_PLAIN && cn > 0 && s->skip == 0) {
            size_t l;

            /* A ClientHello without STARTTLS: an SMTP answer would be noise. */
            if ((unsigned char)cin[0] == 0x16)
                return failed(res, EX_PROTOCOL,
                              "a TLS handshake without STARTTLS (implicit TLS on a "
                              "STARTTLS port?)");
            nl = memchr(cin, '\n', cn);
            if (nl == NULL)
                break;
            l = (size_t)(nl - cin) + 1;
            v = starttls_client_line(s, cin, l, out, sizeof out, &on);
            if (v == STARTTLS_WAIT)
                break;
            if (v == STARTTLS_SKIP) {
                drop(cin, &cn, l);
                skip_literal(s, cin, &cn, res);
                continue;
            }
            if (v == STARTTLS_RELAY || v == STARTTLS_HANDOVER) {
                if (send_all(bfd, cin, l, deadline) < 0) {
                    (void)send_all(1, starttls_unavailable(s->proto),
                                   strlen(starttls_unavailable(s->proto)), deadline);
                    return failed(res, EX_UNAVAILABLE, "writing to the backend failed");
                }
                res->to_backend += l;
            } else if (send_all(1, out, on, deadline) < 0) {
                return ended(res, "reset", "open", "the client went away");
            } else {
                res->to_client += on;
            }
            drop(cin, &cn, l);
            skip_literal(s, cin, &cn, res);
            if (v == STARTTLS_ANSWER) {
                char verb[40], reason[240];

                res->refusals++;
                log_msg(LOG_WARNING,
                        "event=command-refused peer=%s starttls=%s command=%s reason=%s", peer,
                        starttls_proto_name(s->proto), log_value(s->verb, verb, sizeof verb),
                        log_value(s->reason, reason, sizeof reason));
            } else if (v == STARTTLS_FAIL) {
                return failed(res, s->status, s->reason);
            } else if (v == STARTTLS_HANDOVER) {
                /* Opportunistic, in clear from here: the rest is the relay's. */
                memcpy(res->pre, cin, cn); /* cn <= cap <= sizeof res->pre */
                res->n_pre = cn;
                memcpy(res->back, bin, bn);
                res->n_back = bn;
                return STARTTLS_GO_PLAIN;
            } else if (v == STARTTLS_UPGRADE) {
                /* What the backend had begun to say before is not replayed. */
                bn = 0;
                on = starttls_reset(s, out, sizeof out);
                if (on > 0 && send_all(bfd, out, on, deadline) < 0)
                    return failed(res, EX_UNAVAILABLE, "writing to the backend failed");
                res->to_backend += on;
            }
        }
        if (s->state == STARTTLS_S_PLAIN && s->skip == 0 && cn == cap &&
            memchr(cin, '\n', cn) == NULL) {
            (void)send_all(1, starttls_too_long(s->proto), strlen(starttls_too_long(s->proto)),
                           deadline);
            return failed(res, EX_PROTOCOL, "command line too long before TLS");
        }

        /* The upgrade: nothing before the client's first TLS byte is kept. */
        if (s->state == STARTTLS_S_UPGRADE) {
            nl = memchr(cin, 0x16, cn);
            on = nl != NULL ? (size_t)(nl - cin) : cn;
            res->discarded += on;
            drop(cin, &cn, on);
            if (res->discarded > STARTTLS_MAX_DISCARD)
                return failed(res, EX_PROTOCOL, "too many bytes after STARTTLS, before TLS");
            if (cn > 0 && s->n_pending == 0) {
                memcpy(res->pre, cin, cn);
                res->n_pre = cn;
                return STARTTLS_GO_TLS;
            }
        }
        /* After QUIT (required mode) nothing more goes to the backend. */
        if (s->state == STARTTLS_S_QUIT) {
            res->discarded += cn;
            cn = 0;
            if (!backend_open)
                return ended(res, client_open ? "quit" : "eof", "eof", "");
        }
        /* A client that half-closed still hears the replies it asked for. */
        if (!client_open &&
            !(s->state == STARTTLS_S_PLAIN &&
              (s->n_pending > 0 || memchr(cin, '\n', cn) != NULL)) &&
            !(s->state == STARTTLS_S_QUIT && backend_open))
            return ended(res, "eof", "open",
                         s->state == STARTTLS_S_UPGRADE ? "the client closed after STARTTLS"
                         : cn > 0                       ? "the client closed mid-command"
                                                        : "");
        if (!backend_open) {
            (void)send_all(1, starttls_unavailable(s->proto),
                           strlen(starttls_unavailable(s->proto)), deadline);
            return failed(res, EX_UNAVAILABLE, "the backend closed the connection before TLS");
        }

        /* Wait for either side, within the phase's time. */
        pfd[0] = (struct pollfd){.fd = -1};
        pfd[1] = (struct pollfd){.fd = -1};
        if (client_open && cn < cap && (s->state != STARTTLS_S_UPGRADE || cn == 0))
            pfd[0] = (struct pollfd){.fd = 0, .events = POLLIN};
        if (backend_open && bn < sizeof bin)
            pfd[1] = (struct pollfd){.fd = bfd, .events = POLLIN};
        left = deadline - now_ms();
        n = left > 0 ? poll(pfd, 2, (int)left) : 0;
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0) {
            char reason[80];

            if (s->state == STARTTLS_S_PLAIN)
                (void)send_all(1, starttls_timeout(s->proto),
                               strlen(starttls_timeout(s->proto)), now_ms() + 1000);
            snprintf(reason, sizeof reason, "no TLS within %u seconds", timeout_sec);
            return failed(res, EX_TEMPFAIL, reason);
        }
        if (n < 0)
            return failed(res, EX_OSERR, "poll failed");
        if (pfd[0].revents)
            client_open = fill(0, cin, &cn, cap);
        if (pfd[1].revents)
            backend_open = fill(bfd, bin, &bn, sizeof bin);
    }
}
