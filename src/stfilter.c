/*
 * stfilter.c: a --starttls session after the upgrade. The relay (relay.c)
 * hands each direction's new bytes here before it writes them; this file
 * says how many may go, and edits the few lines that must change.
 *
 * Both directions are scanned once, line to line with memchr(). Each side
 * is in one of four modes: LINE (a command or reply line, held until its
 * end so that it can be read whole and edited), LONG (a line over
 * STFILTER_LINE, passed on as it comes; its first and last bytes are kept
 * to read the verb and a literal's size), SKIP (a known number of bytes
 * not to look into: an IMAP literal, a BDAT chunk), BODY (dot-terminated
 * data, passed on as it comes, watched only for the lone dot: SMTP DATA,
 * POP3 multi-line responses).
 *
 * What the client sends next can depend on the backend's reply: after SMTP
 * DATA (354 or an error), AUTH and each SASL response (334 or the end), an
 * IMAP synchronizing literal ("+" or a tagged refusal). The client's bytes
 * after such a command are held until that reply has been read here.
 *
 * SMTP and POP3 replies are matched to commands by order (the queue), so
 * our answer to a second STARTTLS waits until the backend has answered
 * every command before it (RFC 2920 puts STARTTLS last in a group anyway);
 * IMAP's answer is tagged and goes out at the next line boundary.
 *
 * BDAT: its chunk size is parsed and the chunk skipped (CHUNKING stays
 * offered): a backend that refuses a BDAT still reads its chunk (RFC 3030
 * 2), so the next command starts where this file expects it.
 */
#include "config.h"

#include "stfilter.h"

#include <string.h>
#include <strings.h>

enum { STF_LINE, STF_LONG, STF_SKIP, STF_BODY };

/* What an owed reply answers. */
enum { Q_OTHER, Q_EHLO, Q_DATA, Q_AUTH, Q_MULTI, Q_CAPA };

/* What to do with a line. */
enum {
    A_RELEASE,   /* it goes out, with what was held before it */
    A_HOLD,      /* what was held before goes out; this line stays held */
    A_DROP,      /* it is removed; what was held stays held */
    A_DROP_LAST, /* it is removed; the held line before it becomes the reply's last */
    A_WAIT       /* not now: hold it, read nothing after it */
};

void stfilter_init(struct stfilter *f, enum starttls_proto proto)
{
    memset(f, 0, sizeof *f);
    f->proto = proto;
    f->first = true;
}

/* --- small helpers ---------------------------------------------------------- */

static bool push(struct stfilter *f, unsigned char kind)
{
    if (f->qn == STFILTER_QUEUE)
        return false;
    f->queue[(f->qhead + f->qn) % STFILTER_QUEUE] = kind;
    f->qn++;
    return true;
}

static int owed(const struct stfilter *f)
{
    return f->qn > 0 ? f->queue[f->qhead] : -1;
}

static void pop(struct stfilter *f)
{
    if (f->qn > 0) {
        f->qhead = (f->qhead + 1) % STFILTER_QUEUE;
        f->qn--;
    }
}

/* The line without its CRLF (or LF). */
static size_t content(const unsigned char *l, size_t n)
{
    if (n > 0 && l[n - 1] == '\n')
        n--;
    if (n > 0 && l[n - 1] == '\r')
        n--;
    return n;
}

/* The first word's length (up to a blank). */
static size_t word(const unsigned char *l, size_t n)
{
    size_t i = 0;

    while (i < n && l[i] != ' ' && l[i] != '\t')
        i++;
    return i;
}

static bool is(const unsigned char *w, size_t n, const char *s)
{
    return n == strlen(s) && strncasecmp((const char *)w, s, n) == 0;
}

/* Something but blanks after the first word. */
static bool has_arg(const unsigned char *l, size_t vn, size_t n)
{
    for (size_t i = vn; i < n; i++)
        if (l[i] != ' ' && l[i] != '\t')
            return true;
    return false;
}

static void cut(unsigned char *p, size_t *len, size_t at, size_t n)
{
    memmove(p + at, p + at + n, *len - at - n);
    *len -= n;
}

static void answer(struct stfilter *f, const unsigned char *tag, size_t tn, const char *text)
{
    size_t n = strlen(text), sep = tn > 0 ? 1 : 0;

    if (tn + sep + n > sizeof f->answer)
        return;
    if (tn > 0)
        memcpy(f->answer, tag, tn);
    memcpy(f->answer + tn, " ", sep);
    memcpy(f->answer + tn + sep, text, n);
    f->n_answer = tn + sep + n;
    f->answered++;
}

/* An IMAP literal at the end of a line, "{N}" or "{N+}" (or "~{N}"): N, or -1. */
static long long literal(const unsigned char *l, size_t n, bool *sync)
{
    size_t i;
    long long v = 0;

    if (n < 3 || l[n - 1] != '}')
        return -1;
    i = n - 2;
    *sync = l[i] != '+';
    if (!*sync)
        i--;
    if (l[i] < '0' || l[i] > '9')
        return -1;
    while (i > 0 && l[i] >= '0' && l[i] <= '9')
        i--;
    if (l[i] != '{')
        return -1;
    for (i++; l[i] >= '0' && l[i] <= '9'; i++)
        v = v > 100000000000000LL ? v : v * 10 + (l[i] - '0');
    return v;
}

/* BDAT's chunk size (RFC 3030: "BDAT" SP size [SP "LAST"]): false if none. */
static bool bdat_size(const unsigned char *l, size_t n, unsigned long long *size)
{
    size_t i = 0;

    while (i < n && l[i] == ' ')
        i++;
    if (i == n || l[i] < '0' || l[i] > '9')
        return false;
    for (*size = 0; i < n && l[i] >= '0' && l[i] <= '9'; i++)
        *size = *size > 100000000000000ULL ? *size : *size * 10 + (l[i] - '0');
    return i == n || l[i] == ' ';
}

/* --- SMTP ---------------------------------------------------------------------- */

static int smtp_client(struct stfilter *f, struct stfilter_side *s, unsigned char *l, size_t *n,
                       bool whole)
{
    size_t cn = content(l, *n), vn = word(l, cn);
    unsigned long long size;

    if (f->sasl) {
        /* A response to the backend's 334, not a command. */
        f->sasl = false;
        f->wait = true;
        push(f, Q_AUTH);
        return A_RELEASE;
    }
    if (whole && is(l, vn, "STARTTLS")) {
        if (f->qn > 0)
            return A_WAIT;
        answer(f, NULL, 0, "503 5.5.1 TLS already active\r\n");
        return A_DROP;
    }
    if (is(l, vn, "DATA") || is(l, vn, "AUTH")) {
        /* DATA: the body only after 354; AUTH: a response only after 334. */
        f->wait = true;
        push(f, is(l, vn, "DATA") ? Q_DATA : Q_AUTH);
        return A_RELEASE;
    }
    if (is(l, vn, "BDAT") && bdat_size(l + vn, cn - vn, &size) && size > 0) {
        s->mode = STF_SKIP;
        s->skip = size;
    }
    push(f, is(l, vn, "EHLO") ? Q_EHLO : Q_OTHER);
    return A_RELEASE;
}

static int smtp_backend(struct stfilter *f, unsigned char *l, size_t *n, bool whole, bool held)
{
    size_t cn = content(l, *n);
    bool valid = cn >= 3 && l[0] >= '1' && l[0] <= '5' && l[1] >= '0' && l[1] <= '9' &&
                 l[2] >= '0' && l[2] <= '9' && (cn == 3 || l[3] == ' ' || l[3] == '-');
    bool final = !valid || cn == 3 || l[3] != '-', first = f->first;
    int kind = owed(f);

    if (kind < 0)
        return A_RELEASE; /* unasked (a 421 before the backend closes) */
    f->first = final;
    if (first)
        f->reply_ok = valid && l[0] == '2' && l[1] == '5' && l[2] == '0';
    if (final) {
        pop(f);
        if (kind == Q_DATA) {
            f->wait = false;
            if (valid && l[0] == '3' && l[1] == '5' && l[2] == '4') {
                f->c.mode = STF_BODY;
                f->c.dot = 1;
            }
        } else if (kind == Q_AUTH) {
            f->wait = false;
            f->sasl = valid && l[0] == '3' && l[1] == '3' && l[2] == '4';
        }
    }
    if (kind != Q_EHLO || !f->reply_ok)
        return A_RELEASE;
    /* The EHLO reply: its STARTTLS line goes. Each kept line waits for the
     * next, so that it can become the last if the last was STARTTLS. */
    if (!first && whole && cn > 4 && is(l + 4, word(l + 4, cn - 4), "STARTTLS") &&
        (!final || held))
        return final ? A_DROP_LAST : A_DROP;
    return final ? A_RELEASE : A_HOLD;
}

/* --- POP3 ------------------------------------------------------------------------ */

static int pop3_client(struct stfilter *f, unsigned char *l, size_t *n, bool whole)
{
    size_t cn = content(l, *n), vn = word(l, cn);
    bool arg = has_arg(l, vn, cn);

    if (f->sasl) {
        f->sasl = false;
        f->wait = true;
        push(f, Q_AUTH);
        return A_RELEASE;
    }
    if (whole && is(l, vn, "STLS")) {
        if (f->qn > 0)
            return A_WAIT;
        answer(f, NULL, 0, "-ERR TLS already active\r\n");
        return A_DROP;
    }
    if (is(l, vn, "AUTH") && arg) {
        f->wait = true;
        push(f, Q_AUTH);
    } else if (is(l, vn, "CAPA")) {
        push(f, Q_CAPA);
    } else if (is(l, vn, "RETR") || is(l, vn, "TOP") ||
               (!arg && (is(l, vn, "LIST") || is(l, vn, "UIDL") || is(l, vn, "AUTH")))) {
        push(f, Q_MULTI);
    } else {
        push(f, Q_OTHER);
    }
    return A_RELEASE;
}

static int pop3_backend(struct stfilter *f, unsigned char *l, size_t *n, bool whole)
{
    size_t cn = content(l, *n);
    bool ok = cn >= 3 && strncmp((const char *)l, "+OK", 3) == 0;
    int kind = owed(f);

    if (kind < 0)
        return A_RELEASE;
    if (f->first) {
        if (kind == Q_AUTH) {
            /* "+ challenge": the client's next line is its response. */
            f->wait = false;
            f->sasl = cn >= 1 && l[0] == '+' && !ok;
        } else if (ok && kind == Q_MULTI) {
            f->b.mode = STF_BODY; /* ends at the lone dot: body_end() */
            f->b.dot = 1;
            f->first = false;
            return A_RELEASE;
        } else if (ok && kind == Q_CAPA) {
            f->first = false;
            return A_RELEASE;
        }
        pop(f);
        return A_RELEASE;
    }
    /* CAPA's list, line by line. */
    if (cn == 1 && l[0] == '.') {
        pop(f);
        f->first = true;
        return A_RELEASE;
    }
    if (whole && is(l, word(l, cn), "STLS"))
        return A_DROP;
    return A_RELEASE;
}

/* --- IMAP ------------------------------------------------------------------------ */

static int imap_client(struct stfilter *f, struct stfilter_side *s, unsigned char *l, size_t *n,
                       bool whole)
{
    size_t cn = content(l, *n);
    bool sync = true;
    long long lit = literal(l, cn, &sync);

    if (!s->cont) {
        size_t tn = word(l, cn), cs = tn < cn ? tn + 1 : cn, vn = word(l + cs, cn - cs);

        if (whole && tn > 0 && is(l + cs, vn, "STARTTLS")) {
            answer(f, l, tn, "BAD TLS already active\r\n");
            if (f->n_answer > 0)
                return A_DROP;
        }
        f->tagn = tn < sizeof f->tag ? tn : 0;
        memcpy(f->tag, l, f->tagn);
    }
    s->cont = lit >= 0;
    if (lit >= 0 && sync) {
        /* The literal comes after the backend's "+", or not at all. */
        f->wait = true;
        f->lit = (unsigned long long)lit;
    } else if (lit > 0) {
        s->mode = STF_SKIP;
        s->skip = (unsigned long long)lit;
    }
    return A_RELEASE;
}

/* Take STARTTLS and LOGINDISABLED out of the capability list l[a..e), in
 * place: the list's new end. */
static size_t caps_cut(unsigned char *l, size_t a, size_t e)
{
    size_t r = a, w = a;

    while (r < e) {
        size_t j = r, tn;

        while (j < e && l[j] != ' ')
            j++;
        tn = j - r;
        if (!(tn == 8 && strncasecmp((const char *)l + r, "STARTTLS", 8) == 0) &&
            !(tn == 13 && strncasecmp((const char *)l + r, "LOGINDISABLED", 13) == 0)) {
            memmove(l + w, l + r, tn);
            w += tn;
            if (j < e)
                l[w++] = ' ';
        }
        r = j < e ? j + 1 : j;
    }
    if (w < e && w > a && l[w - 1] == ' ' && l[e - 1] != ' ')
        w--;
    return w;
}

/* The n bytes at p, case-insensitively, in l[0..len): its offset, or len. */
static size_t find(const unsigned char *l, size_t len, const char *p)
{
    size_t n = strlen(p);

    for (size_t i = 0; i + n <= len; i++)
        if ((l[i] == p[0] || l[i] == (p[0] | 0x20)) &&
            strncasecmp((const char *)l + i, p, n) == 0)
            return i;
    return len;
}

/* CAPABILITY, untagged or as a response code: its list cut; *n shrinks. */
static void imap_caps(unsigned char *l, size_t *n)
{
    size_t cn = content(l, *n), a, e, w;

    if (cn >= 13 && strncasecmp((const char *)l, "* CAPABILITY ", 13) == 0) {
        a = 13;
        e = cn;
    } else {
        a = find(l, cn, "[CAPABILITY ");
        if (a == cn)
            return;
        a += 12;
        for (e = a; e < cn && l[e] != ']'; e++)
            ;
        if (e == cn)
            return;
    }
    w = caps_cut(l, a, e);
    memmove(l + w, l + e, *n - e);
    *n -= e - w;
}

static int imap_backend(struct stfilter *f, struct stfilter_side *s, unsigned char *l,
                        size_t *n, bool whole)
{
    size_t cn = content(l, *n);
    bool sync;
    long long lit;

    if (!s->cont && cn > 0) {
        if (l[0] == '+' && f->wait) {
            /* Go ahead: the client's literal follows, then the rest of its line. */
            f->wait = false;
            if (f->lit > 0) {
                f->c.mode = STF_SKIP;
                f->c.skip = f->lit;
            }
        } else if (l[0] != '*' && l[0] != '+' && f->wait && f->tagn > 0 && cn > f->tagn &&
                   l[f->tagn] == ' ' && memcmp(l, f->tag, f->tagn) == 0) {
            /* Refused before its literal: the client sends a new command. */
            f->wait = false;
            f->c.cont = false;
        }
        if (whole)
            imap_caps(l, n);
        cn = content(l, *n);
    }
    lit = literal(l, cn, &sync);
    s->cont = lit >= 0;
    if (lit > 0) {
        s->mode = STF_SKIP;
        s->skip = (unsigned long long)lit;
    }
    return A_RELEASE;
}

/* --- the scanner ------------------------------------------------------------------- */

static int line(struct stfilter *f, bool client, unsigned char *l, size_t *n, bool whole,
                bool held)
{
    struct stfilter_side *s = client ? &f->c : &f->b;

    if (f->proto == STARTTLS_IMAP)
        return client ? imap_client(f, s, l, n, whole) : imap_backend(f, s, l, n, whole);
    if (f->proto == STARTTLS_POP3)
        return client ? pop3_client(f, l, n, whole) : pop3_backend(f, l, n, whole);
    return client ? smtp_client(f, s, l, n, whole) : smtp_backend(f, l, n, whole, held);
}

/* A dot-terminated body's end: the reply it completes is owed, or given. */
static void body_end(struct stfilter *f, bool client)
{
    if (client) {
        push(f, Q_OTHER); /* DATA's second reply */
    } else {
        pop(f);
        f->first = true;
    }
}

/* Keep the last bytes of a long line (n bytes at p are its latest). */
static void keep_tail(struct stfilter_side *s, const unsigned char *p, size_t n)
{
    size_t k = sizeof s->tail;

    if (n >= k) {
        memcpy(s->tail, p + n - k, k);
        s->tn = (unsigned char)k;
        return;
    }
    if (s->tn + n > k) {
        memmove(s->tail, s->tail + (s->tn + n - k), k - n);
        s->tn = (unsigned char)(k - n);
    }
    memcpy(s->tail + s->tn, p, n);
    s->tn = (unsigned char)(s->tn + n);
}

/*
 * Scan p[0..*len) on from s->pos; bytes p[0..rel) are released. Returns
 * the new rel; s's offsets are made relative to it.
 */
static size_t scan(struct stfilter *f, bool client, unsigned char *p, size_t *len, size_t rel)
{
    struct stfilter_side *s = client ? &f->c : &f->b;
    unsigned char *nl;

    for (;;) {
        /* The client waits for a reply, or for our answer to go out. */
        if (client && (f->wait || f->n_answer > 0))
            break;
        if (client && s->mode == STF_LINE && f->proto != STARTTLS_IMAP &&
            f->qn == STFILTER_QUEUE)
            break;
        if (s->pos >= *len)
            break;
        if (s->mode == STF_SKIP) {
            size_t k = *len - s->pos;

            if (k > s->skip)
                k = (size_t)s->skip;
            s->pos += k;
            s->skip -= k;
            rel = s->pos;
            if (s->skip == 0) {
                s->mode = STF_LINE;
                s->ls = s->pos;
            }
        } else if (s->mode == STF_BODY) {
            bool end = false;

            while (s->pos < *len) {
                unsigned char ch = p[s->pos];

                if (s->dot == 1 && ch == '.') {
                    s->dot = 2;
                    s->pos++;
                    continue;
                }
                if ((s->dot == 2 || s->dot == 3) && ch == '\n') {
                    s->pos++;
                    end = true;
                    break;
                }
                if (s->dot == 2 && ch == '\r') {
                    s->dot = 3;
                    s->pos++;
                    continue;
                }
                s->dot = 0;
                nl = memchr(p + s->pos, '\n', *len - s->pos);
                if (nl == NULL) {
                    s->pos = *len;
                    break;
                }
                s->pos = (size_t)(nl - p) + 1;
                s->dot = 1;
            }
            rel = s->pos;
            if (end) {
                s->mode = STF_LINE;
                s->ls = s->pos;
                s->dot = 0;
                body_end(f, client);
            }
        } else if (s->mode == STF_LONG) {
            size_t e;
            unsigned char syn[sizeof s->head + sizeof s->tail];
            size_t n;

            nl = memchr(p + s->pos, '\n', *len - s->pos);
            e = nl != NULL ? (size_t)(nl - p) + 1 : *len;
            keep_tail(s, p + s->pos, e - s->pos);
            s->pos = rel = e;
            if (nl == NULL)
                continue;
            /* Its end: read it from its first and last bytes, as it went. */
            memcpy(syn, s->head, s->hn);
            memcpy(syn + s->hn, s->tail, s->tn);
            n = (size_t)s->hn + s->tn;
            s->mode = STF_LINE;
            s->ls = s->pos;
            (void)line(f, client, syn, &n, false, false);
        } else {
            size_t le, n, n0;
            int a;

            nl = memchr(p + s->pos, '\n', *len - s->pos);
            if (nl == NULL) {
                if (*len - s->ls > STFILTER_LINE) {
                    /* Too long to hold: it goes on as it comes. */
                    s->hn = (unsigned char)sizeof s->head;
                    memcpy(s->head, p + s->ls, sizeof s->head);
                    s->tn = 0;
                    keep_tail(s, p + s->ls, *len - s->ls);
                    s->mode = STF_LONG;
                    rel = *len;
                }
                s->pos = *len;
                continue;
            }
            le = (size_t)(nl - p) + 1;
            n = n0 = le - s->ls;
            a = line(f, client, p + s->ls, &n, true, rel < s->ls);
            if (a == A_WAIT) {
                s->pos = s->ls;
                break;
            }
            if (n < n0) {
                cut(p, len, s->ls + n, n0 - n);
                le -= n0 - n;
            }
            if (a == A_DROP || a == A_DROP_LAST) {
                cut(p, len, s->ls, n);
                le = s->ls;
                if (a == A_DROP_LAST && s->ls - rel >= 4)
                    p[rel + 3] = ' ';
                if (a == A_DROP_LAST)
                    rel = le;
            } else if (a == A_HOLD) {
                rel = s->ls;
            } else {
                rel = le;
            }
            s->pos = le;
            if (s->mode == STF_LINE)
                s->ls = le;
        }
    }
    s->pos -= rel;
    s->ls = s->mode == STF_LINE ? s->ls - rel : s->pos;
    return rel;
}

size_t stfilter_client(struct stfilter *f, unsigned char *p, size_t *len)
{
    return scan(f, true, p, len, 0);
}

size_t stfilter_backend(struct stfilter *f, unsigned char *p, size_t *len, size_t room)
{
    struct stfilter_side *s = &f->b;
    size_t rel = 0;

    /* Our answer, at a line boundary, after the replies owed before it. */
    if (f->n_answer > 0 && s->mode == STF_LINE && !s->cont && s->ls == 0 &&
        (f->proto == STARTTLS_IMAP || f->qn == 0) && *len + f->n_answer <= room) {
        memmove(p + f->n_answer, p, *len);
        memcpy(p, f->answer, f->n_answer);
        *len += f->n_answer;
        s->pos += f->n_answer;
        s->ls += f->n_answer;
        rel = f->n_answer;
        f->n_answer = 0;
    }
    return scan(f, false, p, len, rel);
}
