/*
 * stfilter.h: the filter of a --starttls session once TLS is on, between
 * the relay's buffers (relay.c) and the two ends.
 *
 * What it guarantees: a second STARTTLS (POP3 STLS) is answered here and
 * never reaches the backend; STARTTLS and LOGINDISABLED (POP3: STLS) are
 * taken out of what the backend offers (SMTP EHLO reply, IMAP CAPABILITY,
 * POP3 CAPA); message data is never looked into: SMTP DATA (after 354, up
 * to the lone dot) and BDAT chunks (by their size), IMAP literals both
 * ways, POP3 multi-line responses are passed as they are. Replies keep
 * their order: an SMTP or POP3 answer of ours goes out once the backend
 * has answered every command before it (an IMAP one, tagged, at the next
 * line boundary).
 *
 * It is pure: no I/O, no log, driven by a unit test (tests/unit-starttls.c).
 * Streaming: bytes are scanned once (memchr from line to line); only a
 * line still being read, or what follows a command whose reply decides
 * what the next bytes are (SMTP DATA and AUTH, IMAP synchronizing
 * literals, SASL), is held back. Implicit TLS has no filter at all.
 */
#ifndef TLSFILTER_STFILTER_H
#define TLSFILTER_STFILTER_H

#include <stdbool.h>
#include <stddef.h>

#include "starttls.h"

/* A line is held back until its end up to this length; longer ones are
 * passed on as they come (never edited: their head and tail are kept to
 * read the command and a literal's size). */
#define STFILTER_LINE 4096
/* Replies owed by the backend (SMTP, POP3): more commands wait. */
#define STFILTER_QUEUE 64

/* One direction's scanner. Offsets are into the bytes not yet released. */
struct stfilter_side {
    unsigned char mode;      /* STF_LINE, STF_LONG, STF_SKIP, STF_BODY */
    unsigned char dot;       /* STF_BODY: 1 at a line's start, 2 after ".", 3 after ".\r" */
    bool cont;               /* IMAP: this line goes on after a literal */
    size_t pos;              /* scanned so far */
    size_t ls;               /* STF_LINE: where the current line starts */
    unsigned long long skip; /* STF_SKIP: bytes left (literal, BDAT chunk) */
    unsigned char hn, tn;    /* STF_LONG: the line's first and last bytes */
    char head[24], tail[24];
};

struct stfilter {
    enum starttls_proto proto;
    struct stfilter_side c, b;           /* client -> backend, backend -> client */
    unsigned char queue[STFILTER_QUEUE]; /* SMTP, POP3: what each owed reply is */
    unsigned qhead, qn;
    bool first;             /* backend: the next line starts a reply */
    bool reply_ok;          /* ... and the current one's first line said 250 / +OK */
    bool wait;              /* client: hold the rest until the last command's reply */
    bool sasl;              /* client: the next line answers a SASL challenge */
    unsigned long long lit; /* IMAP: the synchronizing literal waiting for "+" */
    char tag[64];           /* IMAP: ... its command's tag */
    size_t tagn;
    char answer[128]; /* our reply to a second STARTTLS, not yet in the backend's stream */
    size_t n_answer;
    unsigned answered; /* second STARTTLS commands answered */
};

void stfilter_init(struct stfilter *f, enum starttls_proto proto);

/*
 * The client's bytes p[0..*len), those not yet released (held ones first,
 * then new ones). The filter may remove bytes (a STARTTLS line), changing
 * *len. Returns how many bytes at p may go to the backend now; the rest
 * stays held for the next call.
 */
size_t stfilter_client(struct stfilter *f, unsigned char *p, size_t *len);

/*
 * The backend's bytes, the same way; room bytes may be written at p (an
 * answer inserted, lines edited), so *len may grow up to room. Call it also
 * with *len == 0 while f->n_answer > 0: our answer goes in at a boundary.
 */
size_t stfilter_backend(struct stfilter *f, unsigned char *p, size_t *len, size_t room);

#endif
