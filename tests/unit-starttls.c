/*
 * unit-starttls.c: the plaintext phase's state machine (starttls.c), line
 * by line, without a socket: what is relayed, rewritten, answered, refused.
 * Then the filter after TLS (stfilter.c), fed as the relay feeds it, whole
 * or a byte at a time: what reaches each side, and in which order.
 */
#include "config.h"

#include <sysexits.h>

#include "starttls.h"
#include "stfilter.h"
#include "tap.h"

static char out[2048];
static size_t outn;

static enum starttls_verdict client(struct starttls *s, const char *line)
{
    return starttls_client_line(s, line, strlen(line), out, sizeof out, &outn);
}

static enum starttls_verdict backend(struct starttls *s, const char *line)
{
    return starttls_backend_line(s, line, strlen(line), out, sizeof out, &outn);
}

/* out as a string */
static const char *said(void)
{
    out[outn] = '\0';
    return out;
}

/* --- the filter after TLS: two buffers as the relay keeps them ------------ */

static unsigned char cbuf[16384], bbuf[16384];
static size_t cn_, bn_;
static char tob[65536], toc[65536]; /* what the backend and the client got */
static size_t ntob, ntoc;

/* Run both directions until nothing moves, as the relay's passes do. */
static void settle(struct stfilter *f)
{
    for (int i = 0; i < 8; i++) {
        size_t r = stfilter_client(f, cbuf, &cn_);

        memcpy(tob + ntob, cbuf, r);
        ntob += r;
        memmove(cbuf, cbuf + r, cn_ - r);
        cn_ -= r;
        r = stfilter_backend(f, bbuf, &bn_, sizeof bbuf);
        memcpy(toc + ntoc, bbuf, r);
        ntoc += r;
        memmove(bbuf, bbuf + r, bn_ - r);
        bn_ -= r;
    }
    tob[ntob] = toc[ntoc] = '\0';
}

static void fresh(struct stfilter *f, enum starttls_proto proto)
{
    stfilter_init(f, proto);
    cn_ = bn_ = ntob = ntoc = 0;
    tob[0] = toc[0] = '\0';
}

/* n bytes from one side, in pieces of `step` bytes (0: at once). */
static void put_n(struct stfilter *f, bool from_client, const char *p, size_t n, size_t step)
{
    if (step == 0)
        step = n;
    for (size_t i = 0; i < n; i += step) {
        size_t k = n - i < step ? n - i : step;

        if (from_client) {
            memcpy(cbuf + cn_, p + i, k);
            cn_ += k;
        } else {
            memcpy(bbuf + bn_, p + i, k);
            bn_ += k;
        }
        settle(f);
    }
}

static void put_s(struct stfilter *f, bool from_client, const char *p, size_t step)
{
    put_n(f, from_client, p, strlen(p), step);
}

static void cl(struct stfilter *f, const char *p)
{
    put_n(f, true, p, strlen(p), 0);
}

static void be(struct stfilter *f, const char *p)
{
    put_n(f, false, p, strlen(p), 0);
}

/* What the client got since the last call. */
static const char *client_got(void)
{
    static char copy[65536];

    memcpy(copy, toc, ntoc + 1);
    ntoc = 0;
    toc[0] = '\0';
    return copy;
}

static const char *backend_got(void)
{
    static char copy[65536];

    memcpy(copy, tob, ntob + 1);
    ntob = 0;
    tob[0] = '\0';
    return copy;
}

/* TAP_STREQ that shows what it got when it differs (escaped). */
#define SAME(got, want, ...)                                                   \
    do {                                                                       \
        const char *got_ = (got);                                              \
        TAP_OK(strcmp(got_, (want)) == 0, __VA_ARGS__);                        \
        if (strcmp(got_, (want)) != 0) {                                       \
            printf("#   got: ");                                               \
            for (const char *q_ = got_; *q_; q_++)                             \
                printf(*q_ == '\r' ? "\\r" : *q_ == '\n' ? "\\n" : "%c", *q_); \
            printf("\n");                                                      \
        }                                                                      \
    } while (0)

static void filter_tests(void)
{
    static struct stfilter f;
    static char big[12000];
    const char *ehlo = "250-mx.test\r\n250-PIPELINING\r\n250-STARTTLS\r\n250-CHUNKING\r\n"
                       "250 8BITMIME\r\n";
    const char *ehlo_last = "250-mx.test\r\n250-SIZE 100\r\n250 STARTTLS\r\n";
    const char *body = "Subject: x\r\n\r\nSTARTTLS\r\n250-STARTTLS\r\n..leading dot\r\n.\r\n";

    /* SMTP */
    for (size_t step = 0; step <= 1; step++) {
        fresh(&f, STARTTLS_SMTP);
        put_s(&f, true, "EHLO c.test\r\n", step);
        SAME(backend_got(), "EHLO c.test\r\n", "SMTP (step %zu): EHLO relayed", step);
        put_n(&f, false, ehlo, strlen(ehlo), step);
        SAME(client_got(), "250-mx.test\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 8BITMIME\r\n",
             "SMTP (step %zu): the backend's STARTTLS taken out of the EHLO reply", step);
        put_s(&f, true, "EHLO c.test\r\n", step);
        put_n(&f, false, ehlo_last, strlen(ehlo_last), step);
        SAME(client_got(), "250-mx.test\r\n250 SIZE 100\r\n",
             "SMTP (step %zu): a last STARTTLS line goes, the line before ends the reply",
             step);
        backend_got();
        put_s(&f, true, "STARTTLS\r\n", step);
        TAP_OK(strcmp(backend_got(), "") == 0 &&
                   strcmp(client_got(), "503 5.5.1 TLS already active\r\n") == 0,
               "SMTP (step %zu): a second STARTTLS: 503 from us, nothing to the backend", step);
        put_s(&f, true, "MAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n", step);
        SAME(backend_got(), "MAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n",
             "SMTP (step %zu): a pipelined group relayed", step);
        put_n(&f, true, body, strlen(body), step);
        SAME(backend_got(), "", "SMTP (step %zu): the body waits for 354", step);
        put_s(&f, false, "250 ok\r\n250 ok\r\n354 go\r\n", step);
        SAME(backend_got(), body,
             "SMTP (step %zu): after 354 the body, STARTTLS lines and all, arrives whole",
             step);
        put_s(&f, true, "STARTTLS\r\nQUIT\r\n", step);
        TAP_OK(strcmp(client_got(), "250 ok\r\n250 ok\r\n354 go\r\n") == 0 &&
                   strcmp(backend_got(), "") == 0,
               "SMTP (step %zu): STARTTLS after the body waits for the body's reply", step);
        put_s(&f, false, "250 queued\r\n", step);
        SAME(client_got(), "250 queued\r\n503 5.5.1 TLS already active\r\n",
             "SMTP (step %zu): ... then 503, in its place", step);
        SAME(backend_got(), "QUIT\r\n", "SMTP (step %zu): ... and QUIT after it", step);
    }
    fresh(&f, STARTTLS_SMTP);
    cl(&f, "MAIL FROM:<a@x>\r\nSTARTTLS\r\nRCPT TO:<b@x>\r\n");
    TAP_OK(strcmp(backend_got(), "MAIL FROM:<a@x>\r\n") == 0 && strcmp(client_got(), "") == 0,
           "SMTP pipelining: STARTTLS waits for MAIL's reply, RCPT after it");
    be(&f, "250 ok\r\n");
    SAME(client_got(), "250 ok\r\n503 5.5.1 TLS already active\r\n",
         "SMTP pipelining: MAIL's reply, then our 503");
    SAME(backend_got(), "RCPT TO:<b@x>\r\n", "SMTP pipelining: then RCPT goes");
    cl(&f, "DATA\r\n");
    be(&f, "250 ok\r\n554 no valid recipients\r\n");
    cl(&f, "STARTTLS\r\n");
    TAP_OK(strstr(client_got(), "554 no valid recipients\r\n503 ") != NULL &&
               strcmp(backend_got(), "DATA\r\n") == 0,
           "SMTP: DATA refused: the next line is a command again");
    cl(&f, "BDAT 24 LAST\r\nSTARTTLS\r\n250-STARTTLS\r\nSTARTTLS\r\n");
    SAME(backend_got(), "BDAT 24 LAST\r\nSTARTTLS\r\n250-STARTTLS\r\n",
         "SMTP BDAT: the chunk (24 bytes) passes whole, the STARTTLS after it waits");
    be(&f, "250 2.0.0 chunk\r\n");
    SAME(client_got(), "250 2.0.0 chunk\r\n503 5.5.1 TLS already active\r\n",
         "SMTP BDAT: ... and is answered after the chunk's reply");
    cl(&f, "AUTH LOGIN\r\nSTARTTLS\r\n");
    SAME(backend_got(), "AUTH LOGIN\r\n", "SMTP AUTH: what follows waits for its reply");
    be(&f, "334 VXNlcm5hbWU6\r\n");
    SAME(backend_got(), "STARTTLS\r\n",
         "SMTP AUTH: after 334 the line is a SASL response (even \"STARTTLS\"), relayed");
    be(&f, "235 ok\r\n");
    cl(&f, "STARTTLS\r\n");
    SAME(client_got(), "334 VXNlcm5hbWU6\r\n235 ok\r\n503 5.5.1 TLS already active\r\n",
         "SMTP AUTH: after 235, STARTTLS is a command again");
    memset(big, 'x', sizeof big);
    memcpy(big, "NOOP ", 5);
    memcpy(big + sizeof big - 2, "\r\n", 2);
    put_n(&f, true, big, sizeof big, 1000);
    TAP_OK(ntob == sizeof big && memcmp(tob, big, sizeof big) == 0,
           "SMTP: a %zu-byte line passes whole, in pieces", sizeof big);
    be(&f, "500 line too long\r\n421 bye\r\n");
    SAME(client_got(), "500 line too long\r\n421 bye\r\n",
         "SMTP: its reply, and an unasked one, relayed");

    /* IMAP */
    for (size_t step = 0; step <= 1; step++) {
        const char *lit = "a STARTTLS\r\n* CAPABILITY STARTTLS\r\n";
        char line[64];

        fresh(&f, STARTTLS_IMAP);
        put_s(&f, true, "a CAPABILITY\r\n", step);
        put_s(&f, false,
              "* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED AUTH=PLAIN\r\na OK done\r\n",
              step);
        SAME(client_got(), "* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\na OK done\r\n",
             "IMAP (step %zu): STARTTLS and LOGINDISABLED out of CAPABILITY", step);
        put_s(&f, true, "b LOGIN u p\r\n", step);
        put_s(&f, false, "b OK [CAPABILITY IMAP4rev1 LOGINDISABLED STARTTLS] in\r\n", step);
        SAME(client_got(), "b OK [CAPABILITY IMAP4rev1] in\r\n",
             "IMAP (step %zu): ... and out of a [CAPABILITY] response code", step);
        backend_got();
        put_s(&f, true, "c STARTTLS\r\n", step);
        TAP_OK(strcmp(backend_got(), "") == 0 &&
                   strcmp(client_got(), "c BAD TLS already active\r\n") == 0,
               "IMAP (step %zu): a second STARTTLS: tag BAD from us, nothing to the backend",
               step);
        snprintf(line, sizeof line, "d APPEND INBOX {%zu}\r\n", strlen(lit));
        put_n(&f, true, line, strlen(line), step);
        put_n(&f, true, lit, strlen(lit), step);
        put_s(&f, true, "\r\n", step);
        SAME(backend_got(), line, "IMAP (step %zu): APPEND {N}: the literal waits for +", step);
        put_s(&f, false, "+ go ahead\r\n", step);
        TAP_OK(strncmp(tob, lit, strlen(lit)) == 0 && strcmp(tob + strlen(lit), "\r\n") == 0,
               "IMAP (step %zu): ... after +, the literal passes whole", step);
        backend_got();
        put_s(&f, false, "d OK appended\r\n* 1 FETCH (BODY[] {34}\r\n", step);
        put_s(&f, false, "* CAPABILITY IMAP4rev1 STARTTLS\r\n)\r\n", step);
        SAME(client_got(),
             "+ go ahead\r\nd OK appended\r\n* 1 FETCH (BODY[] {34}\r\n"
             "* CAPABILITY IMAP4rev1 STARTTLS\r\n)\r\n",
             "IMAP (step %zu): a FETCH literal passes unchanged", step);
        put_s(&f, true, "e APPEND INBOX {12+}\r\nf STARTTLS\r\n\r\ng NOOP\r\n", step);
        SAME(backend_got(), "e APPEND INBOX {12+}\r\nf STARTTLS\r\n\r\ng NOOP\r\n",
             "IMAP (step %zu): a {N+} literal passes at once, whole", step);
        put_s(&f, true, "h APPEND INBOX {5}\r\n", step);
        put_s(&f, false, "h NO too big\r\n", step);
        put_s(&f, true, "i STARTTLS\r\n", step);
        TAP_OK(strstr(client_got(), "h NO too big\r\ni BAD TLS already active\r\n") != NULL &&
                   strcmp(backend_got(), "h APPEND INBOX {5}\r\n") == 0,
               "IMAP (step %zu): a {N} refused: the next line is a command again", step);
    }

    /* IMAP: lines longer than STFILTER_LINE go on as they come */
    fresh(&f, STARTTLS_IMAP);
    memset(big, 'x', sizeof big);
    memcpy(big, "j SEARCH ", 9);
    memcpy(big + sizeof big - 6, "{10}\r\n", 6);
    put_n(&f, true, big, sizeof big, 1000);
    TAP_OK(ntob == sizeof big && memcmp(tob, big, sizeof big) == 0,
           "IMAP: a %zu-byte command line passes whole, in pieces", sizeof big);
    backend_got();
    cl(&f, "k STARTTLS");
    SAME(backend_got(), "", "IMAP: ... its {10} at the end is seen: the literal waits for +");
    be(&f, "+ go\r\n");
    cl(&f, "\r\n");
    SAME(backend_got(), "k STARTTLS\r\n", "IMAP: ... and then passes as the literal it is");
    memcpy(big, "* CAPABILITY STARTTLS ", 22);
    memcpy(big + sizeof big - 6, "xxxx\r\n", 6);
    client_got();
    put_n(&f, false, big, sizeof big, 1000);
    TAP_OK(ntoc == sizeof big && memcmp(toc, big, sizeof big) == 0,
           "IMAP: a %zu-byte backend line passes unchanged (too long to edit)", sizeof big);

    /* POP3 */
    for (size_t step = 0; step <= 1; step++) {
        const char *msg = "+OK 40 octets\r\nSTLS\r\n..dot\r\n+OK\r\n.\r\n";
        char want[128];

        fresh(&f, STARTTLS_POP3);
        put_s(&f, true, "CAPA\r\n", step);
        put_s(&f, false, "+OK\r\nUSER\r\nSTLS\r\nSASL PLAIN\r\n.\r\n", step);
        SAME(client_got(), "+OK\r\nUSER\r\nSASL PLAIN\r\n.\r\n",
             "POP3 (step %zu): STLS out of CAPA", step);
        put_s(&f, true, "STLS\r\n", step);
        TAP_OK(strcmp(backend_got(), "CAPA\r\n") == 0 &&
                   strcmp(client_got(), "-ERR TLS already active\r\n") == 0,
               "POP3 (step %zu): a second STLS: -ERR from us, nothing to the backend", step);
        put_s(&f, true, "RETR 1\r\nSTLS\r\nLIST 1\r\n", step);
        SAME(backend_got(), "RETR 1\r\n", "POP3 (step %zu): STLS waits for RETR's reply", step);
        put_n(&f, false, msg, strlen(msg), step);
        snprintf(want, sizeof want, "%s-ERR TLS already active\r\n", msg);
        SAME(client_got(), want,
             "POP3 (step %zu): RETR's message (STLS and +OK lines in it) passes whole, then "
             "our -ERR",
             step);
        SAME(backend_got(), "LIST 1\r\n", "POP3 (step %zu): then LIST goes", step);
        put_s(&f, false, "+OK 1 40\r\n", step);
        SAME(client_got(), "+OK 1 40\r\n", "POP3 (step %zu): LIST n is one line", step);
    }
}

int main(void)
{
    struct starttls s;
    char buf[16];
    size_t n;
    int i;

    starttls_init(&s, STARTTLS_SMTP, true);
    TAP_OK(client(&s, "EHLO early\r\n") == STARTTLS_WAIT,
           "a command before the greeting waits for it");
    TAP_OK(backend(&s, "220 mx ESMTP\r\n") == STARTTLS_RELAY &&
               strcmp(said(), "220 mx ESMTP\r\n") == 0,
           "the greeting is relayed as it is");
    TAP_OK(client(&s, "EHLO c.test\r\n") == STARTTLS_RELAY, "EHLO is relayed");
    TAP_OK(client(&s, "STARTTLS\r\n") == STARTTLS_WAIT, "STARTTLS waits for the EHLO reply");
    backend(&s, "250-mx.test hello\r\n");
    SAME(said(), "250-mx.test hello\r\n", "EHLO reply: first line kept");
    backend(&s, "250-STARTTLS\r\n");
    SAME(said(), "", "EHLO reply: the backend's own STARTTLS dropped");
    backend(&s, "250-AUTH PLAIN LOGIN\r\n");
    SAME(said(), "", "EHLO reply: AUTH hidden in required mode");
    TAP_OK(backend(&s, "250 8BITMIME\r\n") == STARTTLS_RELAY, "EHLO reply: last line relayed");
    SAME(said(), "250-8BITMIME\r\n250 STARTTLS\r\n", "EHLO reply: ... and ours goes last");
    TAP_OK(client(&s, "AUTH PLAIN AAAA\r\n") == STARTTLS_ANSWER &&
               strncmp(said(), "530 5.7.0 ", 10) == 0 && strcmp(s.verb, "AUTH") == 0,
           "AUTH before TLS: 530, verb kept for the log");
    TAP_OK(client(&s, "mail FROM:<a@b>\r\n") == STARTTLS_ANSWER, "MAIL (any case): 530");
    TAP_OK(client(&s, "STARTTLS x\r\n") == STARTTLS_ANSWER && strncmp(said(), "501 ", 4) == 0,
           "STARTTLS with an argument: 501");
    TAP_OK(s.state == STARTTLS_S_PLAIN, "... and nothing happens");
    TAP_OK(client(&s, "NOOP\r\n") == STARTTLS_RELAY, "NOOP relayed");
    TAP_OK(client(&s, "AUTH LOGIN\r\n") == STARTTLS_WAIT,
           "a refusal waits for the replies owed first (order of replies)");
    backend(&s, "250 2.0.0 Ok\r\n");
    TAP_OK(client(&s, "AUTH LOGIN\r\n") == STARTTLS_ANSWER, "... then it comes");
    TAP_OK(client(&s, "StartTLS\r\n") == STARTTLS_UPGRADE &&
               strcmp(said(), "220 2.0.0 Ready to start TLS\r\n") == 0,
           "STARTTLS (any case): 220, upgrade");
    TAP_OK(client(&s, "RSET\r\n") == STARTTLS_WAIT, "after STARTTLS no client line is taken");
    backend(&s, "250 late\r\n");
    SAME(said(), "", "after STARTTLS the backend's words are not relayed");
    n = starttls_reset(&s, buf, sizeof buf);
    TAP_OK(n == 6 && memcmp(buf, "RSET\r\n", 6) == 0 && s.n_pending == 1, "the reset is RSET");
    TAP_OK(backend(&s, "250 2.0.0 Ok\r\n") == STARTTLS_RELAY && outn == 0 && s.n_pending == 0,
           "its reply is swallowed");

    starttls_init(&s, STARTTLS_SMTP, true);
    backend(&s, "220-mx first\r\n");
    TAP_OK(s.n_pending == 1, "a multi-line greeting is one reply");
    backend(&s, "220 mx\r\n");
    client(&s, "EHLO c\r\n");
    backend(&s, "250 mx.test\r\n");
    SAME(said(), "250-mx.test\r\n250 STARTTLS\r\n", "one-line EHLO reply: STARTTLS added");
    client(&s, "EHLO c\r\n");
    backend(&s, "250-mx.test\r\n");
    backend(&s, "250 STARTTLS\r\n");
    SAME(said(), "250 STARTTLS\r\n", "the backend's STARTTLS as last line: ours instead");
    client(&s, "EHLO c\r\n");
    backend(&s, "550 no\r\n");
    SAME(said(), "550 no\r\n", "a failed EHLO reply is relayed as it is");
    TAP_OK(client(&s, "HELP\r\n") == STARTTLS_ANSWER, "HELP: 530");
    TAP_OK(client(&s, "EHLO a\x01\r\n") == STARTTLS_FAIL && s.status == EX_PROTOCOL &&
               strncmp(said(), "500 ", 4) == 0,
           "a control character: 500 and the end (76)");

    starttls_init(&s, STARTTLS_SMTP, true);
    backend(&s, "220 mx\r\n");
    for (i = 0; i < STARTTLS_MAX_COMMANDS; i++) {
        client(&s, "NOOP\r\n");
        backend(&s, "250 ok\r\n");
    }
    TAP_OK(client(&s, "NOOP\r\n") == STARTTLS_FAIL && strncmp(said(), "421 ", 4) == 0 &&
               s.status == EX_PROTOCOL,
           "command %d: 421 and the end (76)", STARTTLS_MAX_COMMANDS + 1);

    starttls_init(&s, STARTTLS_SMTP, true);
    TAP_OK(backend(&s, "421 busy\r\n") == STARTTLS_FAIL && s.status == EX_UNAVAILABLE &&
               strcmp(said(), "421 busy\r\n") == 0,
           "greeting 421: relayed, then the end (69)");
    starttls_init(&s, STARTTLS_SMTP, true);
    TAP_OK(backend(&s, "HTTP/1.1 400\r\n") == STARTTLS_FAIL && s.status == EX_UNAVAILABLE &&
               strncmp(said(), "421 ", 4) == 0,
           "a backend that is not SMTP: 421 to the client (69)");

    starttls_init(&s, STARTTLS_SMTP, false);
    backend(&s, "220 mx\r\n");
    client(&s, "EHLO c\r\n");
    backend(&s, "250-mx\r\n");
    backend(&s, "250-AUTH PLAIN\r\n");
    SAME(said(), "250-AUTH PLAIN\r\n", "opportunistic: AUTH still offered");
    backend(&s, "250 SIZE\r\n");
    TAP_OK(client(&s, "MAIL FROM:<a@b>\r\n") == STARTTLS_HANDOVER,
           "opportunistic: MAIL hands over");
    starttls_init(&s, STARTTLS_SMTP, false);
    backend(&s, "220 mx\r\n");
    TAP_OK(client(&s, "QUIT\r\n") == STARTTLS_HANDOVER, "opportunistic: QUIT hands over");
    starttls_init(&s, STARTTLS_SMTP, true);
    backend(&s, "220 mx\r\n");
    TAP_OK(client(&s, "QUIT\r\n") == STARTTLS_RELAY && s.state == STARTTLS_S_QUIT,
           "required: QUIT relayed, then nothing more from the client");

    SAME(starttls_proto_name(STARTTLS_SMTP), "smtp", "protocol names");

    /* IMAP */
    starttls_init(&s, STARTTLS_IMAP, true);
    TAP_OK(
        backend(&s,
                "* OK [CAPABILITY IMAP4rev1 SASL-IR LITERAL+ AUTH=PLAIN STARTTLS] ready\r\n") ==
                STARTTLS_RELAY &&
            strcmp(said(),
                   "* OK [CAPABILITY IMAP4rev1 SASL-IR LITERAL+ STARTTLS LOGINDISABLED] "
                   "ready\r\n") == 0,
        "IMAP greeting: STARTTLS ours, AUTH= hidden, LOGINDISABLED added");
    TAP_OK(client(&s, "a1 CAPABILITY\r\n") == STARTTLS_RELAY, "IMAP CAPABILITY relayed");
    backend(&s, "* CAPABILITY IMAP4rev1 AUTH=PLAIN LOGINDISABLED\r\n");
    SAME(said(), "* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED\r\n",
         "IMAP CAPABILITY reply rewritten once");
    TAP_OK(client(&s, "a2 LOGIN u p\r\n") == STARTTLS_WAIT, "IMAP LOGIN waits for a1's end");
    backend(&s, "a1 OK done\r\n");
    TAP_OK(s.n_pending == 0, "a tagged line ends the command");
    TAP_OK(client(&s, "a2 LOGIN u p\r\n") == STARTTLS_ANSWER &&
               strcmp(said(),
                      "a2 NO [PRIVACYREQUIRED] Must issue a STARTTLS command first\r\n") == 0,
           "IMAP LOGIN before TLS: tagged NO [PRIVACYREQUIRED]");
    TAP_OK(client(&s, "a3 LOGIN {5+}\r\n") == STARTTLS_ANSWER && s.skip == 5 && s.cont,
           "a non-synchronizing literal of a refused command is skipped");
    s.skip = 0; /* starttls_run() drops the 5 bytes */
    TAP_OK(client(&s, " pass\r\n") == STARTTLS_SKIP && !s.cont,
           "... with the rest of its line");
    TAP_OK(client(&s, "a4 LOGIN {5}\r\n") == STARTTLS_ANSWER && s.skip == 0,
           "a synchronizing one is not sent after NO: nothing skipped");
    TAP_OK(client(&s, "a5 STARTTLS x\r\n") == STARTTLS_ANSWER &&
               strncmp(said(), "a5 BAD", 6) == 0,
           "IMAP STARTTLS with an argument: BAD");
    TAP_OK(client(&s, "a6 starttls\r\n") == STARTTLS_UPGRADE &&
               strcmp(said(), "a6 OK Begin TLS negotiation now\r\n") == 0,
           "IMAP STARTTLS: tagged OK, upgrade");
    TAP_OK(starttls_reset(&s, buf, sizeof buf) == 0, "IMAP needs no reset");
    starttls_init(&s, STARTTLS_IMAP, true);
    TAP_OK(backend(&s, "* PREAUTH welcome\r\n") == STARTTLS_FAIL &&
               s.status == EX_UNAVAILABLE && strncmp(said(), "* BYE", 5) == 0,
           "IMAP PREAUTH greeting, required: BYE and the end (69)");
    starttls_init(&s, STARTTLS_IMAP, false);
    TAP_OK(backend(&s, "* PREAUTH welcome\r\n") == STARTTLS_HANDOVER,
           "... opportunistic: in clear");
    starttls_init(&s, STARTTLS_IMAP, true);
    TAP_OK(backend(&s, "* BYE busy\r\n") == STARTTLS_FAIL &&
               strcmp(said(), "* BYE busy\r\n") == 0,
           "IMAP BYE greeting: relayed, the end");
    starttls_init(&s, STARTTLS_IMAP, false);
    backend(&s, "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n");
    SAME(said(), "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN STARTTLS] hi\r\n",
         "IMAP opportunistic: AUTH= kept, no LOGINDISABLED");
    TAP_OK(client(&s, "b LOGIN u p\r\n") == STARTTLS_HANDOVER,
           "IMAP opportunistic: LOGIN hands over");

    /* POP3 */
    starttls_init(&s, STARTTLS_POP3, true);
    backend(&s, "+OK ready\r\n");
    SAME(said(), "+OK ready\r\n", "POP3 greeting relayed");
    TAP_OK(client(&s, "CAPA\r\n") == STARTTLS_RELAY, "POP3 CAPA relayed");
    backend(&s, "+OK list\r\n");
    backend(&s, "USER\r\n");
    SAME(said(), "", "POP3 CAPA: USER hidden in required mode");
    backend(&s, "STLS\r\n");
    SAME(said(), "", "POP3 CAPA: the backend's STLS dropped");
    backend(&s, "UIDL\r\n");
    SAME(said(), "UIDL\r\n", "POP3 CAPA: others kept");
    backend(&s, ".\r\n");
    TAP_OK(strcmp(said(), "STLS\r\n.\r\n") == 0 && s.n_pending == 0,
           "POP3 CAPA: ours last, then the end");
    TAP_OK(client(&s, "USER bob\r\n") == STARTTLS_ANSWER && strncmp(said(), "-ERR", 4) == 0,
           "POP3 USER before TLS: -ERR");
    TAP_OK(client(&s, "STLS\r\n") == STARTTLS_UPGRADE &&
               strcmp(said(), "+OK Begin TLS negotiation\r\n") == 0,
           "POP3 STLS: +OK, upgrade");
    starttls_init(&s, STARTTLS_POP3, true);
    TAP_OK(backend(&s, "-ERR busy\r\n") == STARTTLS_FAIL && s.status == EX_UNAVAILABLE,
           "POP3 -ERR greeting: the end (69)");
    filter_tests();
    return tap_done();
}
