/*
 * unit-starttls.c: the plaintext phase's state machine (starttls.c), line
 * by line, without a socket: what is relayed, rewritten, answered, refused.
 */
#include "config.h"

#include <sysexits.h>

#include "starttls.h"
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
    TAP_STREQ(said(), "250-mx.test hello\r\n", "EHLO reply: first line kept");
    backend(&s, "250-STARTTLS\r\n");
    TAP_STREQ(said(), "", "EHLO reply: the backend's own STARTTLS dropped");
    backend(&s, "250-AUTH PLAIN LOGIN\r\n");
    TAP_STREQ(said(), "", "EHLO reply: AUTH hidden in required mode");
    TAP_OK(backend(&s, "250 8BITMIME\r\n") == STARTTLS_RELAY, "EHLO reply: last line relayed");
    TAP_STREQ(said(), "250-8BITMIME\r\n250 STARTTLS\r\n", "EHLO reply: ... and ours goes last");
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
    TAP_STREQ(said(), "", "after STARTTLS the backend's words are not relayed");
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
    TAP_STREQ(said(), "250-mx.test\r\n250 STARTTLS\r\n", "one-line EHLO reply: STARTTLS added");
    client(&s, "EHLO c\r\n");
    backend(&s, "250-mx.test\r\n");
    backend(&s, "250 STARTTLS\r\n");
    TAP_STREQ(said(), "250 STARTTLS\r\n", "the backend's STARTTLS as last line: ours instead");
    client(&s, "EHLO c\r\n");
    backend(&s, "550 no\r\n");
    TAP_STREQ(said(), "550 no\r\n", "a failed EHLO reply is relayed as it is");
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
    TAP_STREQ(said(), "250-AUTH PLAIN\r\n", "opportunistic: AUTH still offered");
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

    TAP_STREQ(starttls_proto_name(STARTTLS_SMTP), "smtp", "protocol names");

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
    TAP_STREQ(said(), "* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED\r\n",
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
    TAP_STREQ(said(), "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN STARTTLS] hi\r\n",
              "IMAP opportunistic: AUTH= kept, no LOGINDISABLED");
    TAP_OK(client(&s, "b LOGIN u p\r\n") == STARTTLS_HANDOVER,
           "IMAP opportunistic: LOGIN hands over");

    /* POP3 */
    starttls_init(&s, STARTTLS_POP3, true);
    backend(&s, "+OK ready\r\n");
    TAP_STREQ(said(), "+OK ready\r\n", "POP3 greeting relayed");
    TAP_OK(client(&s, "CAPA\r\n") == STARTTLS_RELAY, "POP3 CAPA relayed");
    backend(&s, "+OK list\r\n");
    backend(&s, "USER\r\n");
    TAP_STREQ(said(), "", "POP3 CAPA: USER hidden in required mode");
    backend(&s, "STLS\r\n");
    TAP_STREQ(said(), "", "POP3 CAPA: the backend's STLS dropped");
    backend(&s, "UIDL\r\n");
    TAP_STREQ(said(), "UIDL\r\n", "POP3 CAPA: others kept");
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
    return tap_done();
}
