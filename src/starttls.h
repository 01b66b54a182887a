/*
 * starttls.h: the plaintext phase of a STARTTLS service (--starttls), from
 * the backend's greeting to the client's first TLS byte.
 *
 * Two halves. The state machine (starttls_init, starttls_client_line,
 * starttls_backend_line) is pure: it reads one line and says what to do
 * with it, writing any text to send into a caller's buffer; no I/O, no
 * log, so a unit test drives it (tests/unit-starttls.c). starttls_run() is
 * the small line-based I/O loop around it, between fds 0/1 and the
 * backend, before any TLS: it is not the relay (relay.c moves bytes without
 * reading them; this phase reads every line, and ends before the relay
 * starts).
 *
 * What it guarantees: before TLS, in required mode, only the commands the
 * upgrade needs reach the backend; the client's bytes after the STARTTLS
 * line and before its first TLS byte are never relayed (counted in
 * res->discarded); nothing the backend sent before the upgrade is written
 * to the client after it.
 */
#ifndef TLSFILTER_STARTTLS_H
#define TLSFILTER_STARTTLS_H

#include <stdbool.h>
#include <stddef.h>

enum starttls_proto { STARTTLS_OFF, STARTTLS_SMTP, STARTTLS_IMAP, STARTTLS_POP3 };

/* Longest client command line before TLS, CRLF included (RFC 5321 4.5.3.1.4). */
#define STARTTLS_SMTP_LINE 512
/* IMAP: 8192, RFC 7162 3's advice to clients; POP3: 255 (RFC 2449 4). */
#define STARTTLS_IMAP_LINE 8192
#define STARTTLS_POP3_LINE 255
/* The client's buffer before TLS: the longest line of any protocol. */
#define STARTTLS_CLIENT_BUF STARTTLS_IMAP_LINE
/* Longest backend reply line we parse before TLS (RFC 5321 allows 512). */
#define STARTTLS_BACKEND_LINE 4096
/* Client commands before TLS, refused ones included. */
#define STARTTLS_MAX_COMMANDS 32
/* Bytes between the STARTTLS line and the first TLS byte before we give up. */
#define STARTTLS_MAX_DISCARD 16384

/* What the backend still owes a reply to, oldest first. */
enum starttls_reply {
    STARTTLS_R_GREETING,
    STARTTLS_R_EHLO,  /* rewritten: STARTTLS added (and AUTH hidden when required) */
    STARTTLS_R_OTHER, /* relayed as it is */
    STARTTLS_R_CAPA,  /* POP3 CAPA: STLS added (USER and SASL hidden when required) */
    STARTTLS_R_RESET  /* our own RSET after the upgrade: read, not relayed */
};

enum starttls_state {
    STARTTLS_S_PLAIN,    /* the plaintext conversation */
    STARTTLS_S_UPGRADE,  /* STARTTLS answered: waiting for the first TLS byte */
    STARTTLS_S_QUIT,     /* required mode, QUIT relayed: its reply, then the end */
    STARTTLS_S_HANDOVER, /* opportunistic: the rest is relayed as bytes, in clear */
    STARTTLS_S_FAILED    /* the session ends: status and reason say why */
};

#define STARTTLS_MAX_PENDING 32

struct starttls {
    enum starttls_proto proto;
    bool required;
    enum starttls_state state;
    unsigned commands; /* client lines read */
    enum starttls_reply pending[STARTTLS_MAX_PENDING];
    unsigned n_pending;
    bool reply_first; /* the oldest pending reply's next line is its first */
    bool reply_ok;    /* ... and that first line said 250 (EHLO) */
    int status;       /* STARTTLS_S_FAILED: the exit status (<sysexits.h>) */
    char reason[150]; /* why it failed, or the last refusal, for the log */
    char verb[16];    /* the refused command's verb, for the log (never its arguments) */
    size_t skip;      /* IMAP: literal bytes of a refused command still to come */
    bool cont;        /* IMAP: ... and the rest of its line after them */
};

/* What to do with a line. */
enum starttls_verdict {
    STARTTLS_RELAY,   /* send the line to the backend (client) or out to the client (backend) */
    STARTTLS_ANSWER,  /* send out to the client, nothing to the backend: a refusal (log it) */
    STARTTLS_UPGRADE, /* send out to the client; then the upgrade (starttls_reset()) */
    STARTTLS_HANDOVER, /* relay the line; from then on relay bytes, without TLS */
    STARTTLS_WAIT,     /* the backend owes replies: offer this line again after them */
    STARTTLS_SKIP,     /* part of a refused command (IMAP): nothing to do */
    STARTTLS_FAIL      /* send out to the client, then end with status (s->reason) */
};

/* A fresh conversation: the backend's greeting comes first. */
void starttls_init(struct starttls *s, enum starttls_proto proto, bool required);

/* Its name, for the log ("smtp"); options_parse_starttls() reads it. */
const char *starttls_proto_name(enum starttls_proto proto);

/*
 * One complete client line (len bytes, ending in LF). Text for the client,
 * if any, goes to out (at most outlen, *outn bytes). RELAY and HANDOVER
 * mean: send the line itself to the backend.
 */
enum starttls_verdict starttls_client_line(struct starttls *s, const char *line, size_t len,
                                           char *out, size_t outlen, size_t *outn);

/*
 * One complete backend line. What to send to the client (possibly nothing,
 * possibly two lines) goes to out. RELAY: send out; FAIL: send out, then
 * end with s->status.
 */
enum starttls_verdict starttls_backend_line(struct starttls *s, const char *line, size_t len,
                                            char *out, size_t outlen, size_t *outn);

/*
 * After UPGRADE: the command that makes the backend forget the plaintext
 * phase (SMTP: RSET), written to out, its reply expected and swallowed.
 * Returns its length, 0 when the protocol needs none.
 */
size_t starttls_reset(struct starttls *s, char *out, size_t outlen);

/* The protocol's answer when the backend cannot be reached (421, * BYE, -ERR). */
const char *starttls_unavailable(enum starttls_proto proto);

/* The longest client line before TLS, its end included. */
size_t starttls_line_max(enum starttls_proto proto);
/* The protocol's answers to an over-long line and to the phase's timeout. */
const char *starttls_too_long(enum starttls_proto proto);
const char *starttls_timeout(enum starttls_proto proto);

/* --- the I/O loop ---------------------------------------------------------- */

enum starttls_outcome {
    STARTTLS_GO_TLS,   /* run the handshake: res->pre holds its first bytes */
    STARTTLS_GO_PLAIN, /* opportunistic, no upgrade: relay in clear, leftovers in res */
    STARTTLS_ENDED,    /* the conversation ended before TLS (QUIT, the client left) */
    STARTTLS_FAILED    /* res->status and res->reason say why */
};

struct starttls_result {
    unsigned char pre[STARTTLS_CLIENT_BUF]; /* the first TLS bytes (GO_TLS), or the client's
                                             * leftover plaintext for the backend (GO_PLAIN) */
    size_t n_pre;
    unsigned char back[STARTTLS_BACKEND_LINE]; /* GO_PLAIN: backend bytes not yet relayed */
    size_t n_back;
    unsigned long long discarded;  /* client bytes after STARTTLS, before TLS */
    unsigned long long to_backend; /* plaintext bytes written to the backend */
    unsigned long long to_client;  /* plaintext bytes written to the client */
    unsigned refusals;             /* commands refused before TLS */
    unsigned long long skipped;    /* IMAP: literal bytes of refused commands, dropped */
    const char *client_how;        /* ENDED: eof, or quit */
    const char *backend_how;       /* ENDED: eof, or open */
    int status;                    /* FAILED: the exit status */
    char reason[150];              /* FAILED: why, for the log; ENDED: a note or "" */
};

/*
 * The plaintext phase between the client (fd 0 in, fd 1 out, non-blocking)
 * and the backend (bfd), within timeout_sec seconds, starting with the len
 * bytes at pre that were already read from the client. Each refused
 * command is logged (event=refused, with peer). On STARTTLS_FAILED the
 * protocol's error answer, where one exists, has been sent to the client.
 */
enum starttls_outcome starttls_run(struct starttls *s, int bfd, const void *pre, size_t len,
                                   unsigned timeout_sec, const char *peer,
                                   struct starttls_result *res);

#endif
