#!/usr/bin/env python3
"""Plaintext backends and a TLS test client for tlsfilter's shell tests.

tests/lib.sh drives this file; nothing here knows about tlsfilter itself.

  helper.py serve MODE --listen SPEC --ready FILE --log FILE [options]
      A plaintext service (the backend behind tlsfilter). SPEC is PORT,
      HOST:PORT, [V6]:PORT or /path/to/unix.sock. Every connection is logged
      to FILE as one or more "EVENT key=value ..." lines, always starting with
      "accept peer=ADDR:PORT". Modes:
        echo    echoes; on EOF half-closes and logs "echo n=N"
        hash    reads to EOF, logs "hash n= sha256=", replies "N SHA\\n"
        late    reads to EOF, logs "eof n= sha256=", waits --delay s, sends
                "LATE N SHA\\n", logs "late-sent", closes
        bulk    sends --send-file while reading --expect bytes (or to EOF),
                logs "bulk recv=N sha256= sent=N", then closes
        banner  sends --send-file, half-closes (SHUT_WR), logs "banner-sent
                n=N", reads to EOF, logs "recv n= sha256="
        source  sends --send-file (repeatedly, up to --limit bytes) and
                reads; logs "source-end sent=N recv=N why=..."
        pop3, imap, smtp   minimal responders for curl; log "cmd LINE"
                (smtp: --send-file replaces the greeting; a PROXY v1
                line is logged as "proxy LINE" and not answered)
        smtpext smtp whose EHLO offers PIPELINING, AUTH and STARTTLS
        closer  closes each connection at once (logs "closing")
        noread  never reads; holds the connection --delay s ("holding")
        slow    reads --chunk bytes every --interval s to EOF, logs "hash"
        proxyecho  reads a PROXY protocol v1 or v2 header (parsed here from
                the specification, TLVs and PP2_TYPE_SSL sub-TLVs included),
                logs "proxy {JSON}" (one line, flat keys: see parse_proxy),
                sends "PROXYINFO {JSON}\n" to the client, then echoes what
                follows the header; on EOF logs "echo n=N sha256=" of the
                bytes after the header. A bad header: "proxy-error why=...",
                then close.
  helper.py client --connect SPEC [options]
      TLS client built on ssl.MemoryBIO, so that the test controls every
      step: close_notify without TCP FIN, TCP FIN without close_notify, RST,
      reading after its own close_notify, writing after the peer's. Prints a
      JSON status on stdout. --bind ADDR: the local address to connect
      from; --wait-recv N: end (close_notify, FIN, ...) only once N bytes
      came back, or the peer closed; --cert FILE [--key FILE]: a client
      certificate to present; --alpn P1,P2: protocols to offer (the one
      agreed on is "alpn" in the status). --send-size N: N pattern bytes;
      --write-size N: N bytes per TLS record; --trickle S (--plain): one
      byte every S s; --end garbage --garbage FILE: raw bytes on the socket
      after the TLS data; --drain S: afterwards, wait up to S s for the
      TCP EOF. Times (epoch seconds): at_close_notify, at_eof (FIN or RST).
  helper.py ppclient --proxy-file FILE [client options]
      The TLS client above, which first sends the raw bytes of FILE (a PROXY
      header) on the connection: by default in the same send() as the
      ClientHello; --proxy-separate: alone, 0.2 s before it;
      --proxy-trickle S: one byte every S s; --plain: no TLS after it.
  helper.py pphdr v1 FAMILY SRC DST SPORT DPORT OUT
  helper.py pphdr v2 [--cmd local|proxy] [--fam inet|inet6|unspec|unix]
              [--src A --dst A --sport N --dport N] [--tlv TYPE:HEX]...
              [--version N] [--length N] OUT
      Writes a PROXY header (v2: --version/--length override the fields,
      for malformed ones).
  helper.py tlsbad --listen PORT --cert F --key F --ready FILE --log FILE
              --garbage FILE
      A TLS server (for tlsfilter -c) that breaks the protocol: for each
      connection, after the handshake, it sends "hello\n", then the raw
      bytes of FILE on the socket, then reads: logs "accept", then "alert
      NAME" (the alert the client sent, as OpenSSL names it), "eof",
      "close_notify" or "reset", and "recv n=N" (application bytes).
  helper.py craft sslv2|sslv3 OUT   an SSLv2-format / SSLv3-only ClientHello
  helper.py gen SIZE SEED OUT     deterministic pseudo-random file
  helper.py records FILE [--only TYPE]...
      exit 0 when FILE is nothing but whole TLS records (of those types)
"""

import argparse
import hashlib
import json
import os
import random
import re
import select
import socket
import ssl
import struct
import sys
import threading
import time

_log_lock = threading.Lock()


def log_event(path, msg):
    with _log_lock:
        with open(path, "a") as f:
            f.write(msg + "\n")
            f.flush()


def parse_spec(spec):
    """Return (family, address) for PORT, HOST:PORT, [V6]:PORT or /path."""
    if spec.startswith("/"):
        return socket.AF_UNIX, spec
    if spec.isdigit():
        return socket.AF_INET, ("127.0.0.1", int(spec))
    if spec.startswith("["):
        host, _, port = spec[1:].partition("]:")
        return socket.AF_INET6, (host, int(port))
    host, _, port = spec.rpartition(":")
    if ":" in host:
        return socket.AF_INET6, (host, int(port))
    return socket.AF_INET, (host, int(port))


def fmt_peer(peer):
    if isinstance(peer, tuple):
        if ":" in peer[0]:
            return "[%s]:%d" % (peer[0], peer[1])
        return "%s:%d" % (peer[0], peer[1])
    return "unix"


# ---------------------------------------------------------------- backends

def recv_all(conn, limit=None):
    """Read until EOF (or limit bytes); return (n, sha256 hex)."""
    h = hashlib.sha256()
    n = 0
    while limit is None or n < limit:
        want = 65536 if limit is None else min(65536, limit - n)
        try:
            d = conn.recv(want)
        except ConnectionError:
            break
        if not d:
            break
        h.update(d)
        n += len(d)
    return n, h.hexdigest()


def h_echo(conn, a, log):
    n = 0
    while True:
        try:
            d = conn.recv(65536)
        except ConnectionError:
            break
        if not d:
            break
        conn.sendall(d)
        n += len(d)
    log("echo n=%d" % n)
    try:
        conn.shutdown(socket.SHUT_WR)
        # wait for the other side to finish before closing (no RST)
        conn.settimeout(10)
        while conn.recv(65536):
            pass
    except OSError:
        pass


def h_hash(conn, a, log):
    n, sha = recv_all(conn)
    log("hash n=%d sha256=%s" % (n, sha))
    try:
        conn.sendall(("%d %s\n" % (n, sha)).encode())
    except OSError as e:
        log("hash-reply-failed error=%s" % type(e).__name__)


def h_late(conn, a, log):
    n, sha = recv_all(conn)
    log("eof n=%d sha256=%s" % (n, sha))
    time.sleep(a.delay)
    try:
        conn.sendall(("LATE %d %s\n" % (n, sha)).encode())
        log("late-sent")
    except OSError as e:
        log("late-failed error=%s" % type(e).__name__)


def read_file(path):
    if not path:
        return b""
    with open(path, "rb") as f:
        return f.read()


def h_bulk(conn, a, log):
    data = read_file(a.send_file)
    res = {}

    def sender():
        try:
            view = memoryview(data)
            sent = 0
            while sent < len(data):
                sent += conn.send(view[sent:sent + 262144])
            res["sent"] = sent
        except OSError as e:
            res["sent_err"] = type(e).__name__
            res["sent"] = -1

    t = threading.Thread(target=sender)
    t.start()
    n, sha = recv_all(conn, a.expect)
    t.join()
    log("bulk recv=%d sha256=%s sent=%s" % (n, sha, res.get("sent")))


def h_banner(conn, a, log):
    data = read_file(a.send_file)
    conn.sendall(data)
    conn.shutdown(socket.SHUT_WR)
    log("banner-sent n=%d" % len(data))
    n, sha = recv_all(conn)
    log("recv n=%d sha256=%s" % (n, sha))


def h_source(conn, a, log):
    data = read_file(a.send_file) or b"x" * 65536
    sent = 0
    recv = 0
    why = "limit"
    conn.setblocking(False)
    view = memoryview(data)
    pos = 0
    deadline = time.time() + 30
    while sent < a.limit and time.time() < deadline:
        r, w, _ = select.select([conn], [conn], [], 1)
        try:
            if r:
                d = conn.recv(65536)
                if not d:
                    why = "eof"
                    break
                recv += len(d)
            if w:
                k = conn.send(view[pos:pos + 65536])
                sent += k
                pos = (pos + k) % len(data)
        except BlockingIOError:
            continue
        except OSError as e:
            why = type(e).__name__
            break
    log("source-end sent=%d recv=%d why=%s" % (sent, recv, why))


class Lines:
    def __init__(self, conn):
        self.conn = conn
        self.buf = b""

    def readline(self):
        while b"\n" not in self.buf:
            d = self.conn.recv(4096)
            if not d:
                return None
            self.buf += d
        line, _, self.buf = self.buf.partition(b"\n")
        return line.rstrip(b"\r").decode("latin-1")


def h_pop3(conn, a, log, capa=b"+OK\r\nUSER\r\nUIDL\r\n.\r\n",
           msg=b"Subject: test\r\n\r\nhello from pop3 backend\r\n"):
    conn.sendall(b"+OK tlsfilter-test POP3 ready\r\n")
    rd = Lines(conn)
    while True:
        line = rd.readline()
        if line is None:
            break
        log("cmd " + line)
        cmd = line.split(" ")[0].upper()
        if cmd == "CAPA":
            conn.sendall(capa)
        elif cmd in ("USER", "PASS", "NOOP", "DELE", "RSET"):
            conn.sendall(b"+OK\r\n")
        elif cmd == "STAT":
            conn.sendall(b"+OK 1 %d\r\n" % len(msg))
        elif cmd == "LIST":
            conn.sendall(b"+OK 1 messages\r\n1 %d\r\n.\r\n" % len(msg))
        elif cmd == "RETR":
            conn.sendall(b"+OK %d octets\r\n" % len(msg) + msg + b".\r\n")
        elif cmd == "QUIT":
            conn.sendall(b"+OK bye\r\n")
            break
        else:
            conn.sendall(b"-ERR unknown\r\n")


def h_pop3ext(conn, a, log):
    """h_pop3 offering STLS in CAPA itself (what tlsfilter must hide after TLS);
    its message has lines "STLS" and "..STLS" (dot-stuffed)."""
    h_pop3(conn, a, log, b"+OK\r\nUSER\r\nSTLS\r\nUIDL\r\n.\r\n",
           b"Subject: test\r\n\r\nhello from pop3 backend\r\nSTLS\r\n..STLS\r\n")


def h_imap(conn, a, log, caps=b"IMAP4rev1"):
    """A small IMAP server; --send-file replaces its greeting (PREAUTH, BYE)."""
    conn.sendall(read_file(a.send_file) if a.send_file else
                 b"* OK [CAPABILITY " + caps + b"] tlsfilter-test IMAP ready\r\n")
    rd = Lines(conn)
    while True:
        line = rd.readline()
        if line is None:
            break
        log("cmd " + line)
        parts = line.split(" ")
        tag = parts[0].encode()
        cmd = parts[1].upper() if len(parts) > 1 else ""
        if cmd == "CAPABILITY":
            conn.sendall(b"* CAPABILITY " + caps + b"\r\n" + tag + b" OK done\r\n")
        elif cmd == "LOGIN":
            conn.sendall(tag + b" OK [CAPABILITY " + caps + b"] LOGIN completed\r\n")
        elif cmd == "LIST":
            conn.sendall(b'* LIST (\\HasNoChildren) "/" INBOX\r\n'
                         b'* LIST (\\HasNoChildren) "/" tlsfilter-test-box\r\n'
                         + tag + b" OK LIST completed\r\n")
        elif cmd == "LOGOUT":
            conn.sendall(b"* BYE logging out\r\n" + tag + b" OK LOGOUT\r\n")
            break
        else:
            conn.sendall(tag + b" OK done\r\n")


def h_imapext(conn, a, log):
    """h_imap announcing STARTTLS and LOGINDISABLED itself (greeting, CAPABILITY,
    LOGIN's [CAPABILITY] code): what tlsfilter must hide after TLS."""
    h_imap(conn, a, log, b"IMAP4rev1 STARTTLS LOGINDISABLED AUTH=PLAIN")


def h_smtp(conn, a, log, ehlo=b"250-localhost\r\n250 8BITMIME\r\n"):
    conn.sendall(read_file(a.send_file) if a.send_file else
                 b"220 localhost tlsfilter-test ESMTP\r\n")
    rd = Lines(conn)
    while True:
        line = rd.readline()
        if line is None:
            break
        cmd = line.split(" ")[0].upper()
        if cmd == "PROXY":  # a PROXY v1 header (tlsfilter --proxy-protocol v1)
            log("proxy " + line)
            continue
        log("cmd " + line)
        if cmd in ("EHLO", "HELO"):
            conn.sendall(ehlo)
        elif cmd in ("MAIL", "RCPT", "RSET", "NOOP"):
            conn.sendall(b"250 OK\r\n")
        elif cmd == "DATA":
            conn.sendall(b"354 go ahead\r\n")
            while True:
                dl = rd.readline()
                if dl is None or dl == ".":
                    break
                log("data " + dl)
            conn.sendall(b"250 OK queued\r\n")
        elif cmd == "QUIT":
            conn.sendall(b"221 bye\r\n")
            break
        else:
            conn.sendall(b"502 unknown\r\n")


def h_smtpext(conn, a, log):
    """h_smtp offering AUTH and STARTTLS itself (what tlsfilter --starttls
    must hide and replace); --send-file replaces the greeting."""
    h_smtp(conn, a, log, b"250-localhost\r\n250-PIPELINING\r\n"
           b"250-AUTH PLAIN LOGIN\r\n250-STARTTLS\r\n250 8BITMIME\r\n")


def h_closer(conn, a, log):
    """Accept, then close at once without reading or writing."""
    log("closing")


def h_noread(conn, a, log):
    """Accept and never read (until --delay seconds pass)."""
    log("holding")
    time.sleep(a.delay)


def h_slow(conn, a, log):
    """Read --chunk bytes every --interval seconds to EOF; log as hash."""
    h = hashlib.sha256()
    n = 0
    while True:
        try:
            d = conn.recv(a.chunk)
        except ConnectionError:
            break
        if not d:
            break
        h.update(d)
        n += len(d)
        time.sleep(a.interval)
    log("hash n=%d sha256=%s" % (n, h.hexdigest()))


# ------------------------------------------------------ PROXY protocol
#
# From HAProxy's doc/proxy-protocol.txt (the specification), written here
# independently of tlsfilter's parser.

PP2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"
PP2_TYPES = {0x01: "alpn", 0x02: "authority", 0x03: "crc32c", 0x04: "noop",
             0x05: "unique_id", 0x20: "ssl", 0x30: "netns"}
PP2_SSL_SUBTYPES = {0x21: "ssl_version", 0x22: "ssl_cn", 0x23: "ssl_cipher",
                    0x24: "ssl_sig_alg", 0x25: "ssl_key_alg"}


class ProxyError(Exception):
    pass


def _recv_exact(conn, buf, n):
    """Return buf grown to at least n bytes (or raise at EOF)."""
    while len(buf) < n:
        d = conn.recv(n - len(buf))
        if not d:
            raise ProxyError("eof after %d bytes" % len(buf))
        buf += d
    return buf


def _text(b):
    return b.decode("latin-1")


def parse_proxy(conn):
    """Read one PROXY header from conn, never a byte beyond it.

    Returns a flat dict: version (1|2), command (PROXY|LOCAL), family
    (v1: TCP4|TCP6|UNKNOWN; v2: AF_INET|AF_INET6|AF_UNIX|AF_UNSPEC),
    transport (v2: STREAM|DGRAM|UNSPEC), src, dst, sport, dport, length
    (the header's size in bytes), v1: line; v2: tlv_types ("1,2,32"), one
    key per TLV (alpn, authority, ... as text; unknown ones as tlv_0xNN
    in hex) and for PP2_TYPE_SSL: ssl_client (the byte), ssl_client_ssl,
    ssl_cert_conn, ssl_cert_sess (booleans), ssl_verify (uint32),
    ssl_sub_types, and ssl_version, ssl_cn, ssl_cipher, ssl_sig_alg,
    ssl_key_alg."""
    buf = _recv_exact(conn, b"", 6)
    if buf == b"PROXY ":
        # v1: one line, at most 107 bytes with the CRLF; byte by byte so
        # that nothing after it is consumed
        while not buf.endswith(b"\r\n"):
            if len(buf) >= 107:
                raise ProxyError("v1: no CRLF within 107 bytes")
            buf = _recv_exact(conn, buf, len(buf) + 1)
        line = _text(buf[:-2])
        parts = line.split(" ")
        info = {"version": 1, "command": "PROXY", "line": line,
                "length": len(buf)}
        if len(parts) >= 2 and parts[1] == "UNKNOWN":
            info["family"] = "UNKNOWN"
            return info
        if len(parts) != 6 or parts[1] not in ("TCP4", "TCP6"):
            raise ProxyError("v1: bad line %r" % line)
        fam = socket.AF_INET if parts[1] == "TCP4" else socket.AF_INET6
        for a in parts[2:4]:
            try:
                socket.inet_pton(fam, a)
            except OSError:
                raise ProxyError("v1: bad %s address %r" % (parts[1], a))
        for p in parts[4:6]:
            if not p.isdigit() or (p != "0" and p.startswith("0")) or \
                    int(p) > 65535:
                raise ProxyError("v1: bad port %r" % p)
        info.update(family=parts[1], src=parts[2], dst=parts[3],
                    sport=int(parts[4]), dport=int(parts[5]))
        return info
    buf = _recv_exact(conn, buf, 16)
    if buf[:12] != PP2_SIG:
        raise ProxyError("no PROXY signature: %r" % buf[:16])
    ver, cmd = buf[12] >> 4, buf[12] & 0x0F
    if ver != 2:
        raise ProxyError("v2: version %d" % ver)
    if cmd not in (0, 1):
        raise ProxyError("v2: command %d" % cmd)
    fam, proto = buf[13] >> 4, buf[13] & 0x0F
    n = struct.unpack(">H", buf[14:16])[0]
    buf = _recv_exact(conn, buf, 16 + n)
    body = buf[16:16 + n]
    info = {"version": 2, "command": "LOCAL" if cmd == 0 else "PROXY",
            "family": {0: "AF_UNSPEC", 1: "AF_INET", 2: "AF_INET6",
                       3: "AF_UNIX"}.get(fam, "0x%x" % fam),
            "transport": {0: "UNSPEC", 1: "STREAM", 2: "DGRAM"}.get(
                proto, "0x%x" % proto),
            "length": 16 + n}
    if fam == 1:
        alen = 12
        if n < alen:
            raise ProxyError("v2: AF_INET block of %d bytes" % n)
        info.update(src=socket.inet_ntop(socket.AF_INET, body[0:4]),
                    dst=socket.inet_ntop(socket.AF_INET, body[4:8]),
                    sport=struct.unpack(">H", body[8:10])[0],
                    dport=struct.unpack(">H", body[10:12])[0])
    elif fam == 2:
        alen = 36
        if n < alen:
            raise ProxyError("v2: AF_INET6 block of %d bytes" % n)
        info.update(src=socket.inet_ntop(socket.AF_INET6, body[0:16]),
                    dst=socket.inet_ntop(socket.AF_INET6, body[16:32]),
                    sport=struct.unpack(">H", body[32:34])[0],
                    dport=struct.unpack(">H", body[34:36])[0])
    elif fam == 3:
        alen = 216
        if n < alen:
            raise ProxyError("v2: AF_UNIX block of %d bytes" % n)
        info.update(src=_text(body[0:108].split(b"\0")[0]),
                    dst=_text(body[108:216].split(b"\0")[0]))
    elif fam == 0:
        alen = 0
    else:
        raise ProxyError("v2: family %d" % fam)
    tlvs = body[alen:]
    types = []
    pos = 0
    while pos < len(tlvs):
        if pos + 3 > len(tlvs):
            raise ProxyError("v2: TLV header cut at %d" % pos)
        t = tlvs[pos]
        ln = struct.unpack(">H", tlvs[pos + 1:pos + 3])[0]
        v = tlvs[pos + 3:pos + 3 + ln]
        if len(v) != ln:
            raise ProxyError("v2: TLV 0x%02x of %d bytes, %d left" %
                             (t, ln, len(v)))
        pos += 3 + ln
        types.append(t)
        name = PP2_TYPES.get(t)
        if t == 0x20:
            parse_pp2_ssl(v, info)
        elif name in ("alpn", "authority", "unique_id", "netns"):
            info[name] = _text(v)
        elif name:
            info[name] = v.hex()
        else:
            info["tlv_0x%02x" % t] = v.hex()
    info["tlv_types"] = ",".join(str(t) for t in types)
    return info


def parse_pp2_ssl(v, info):
    """PP2_TYPE_SSL: uint8 client, uint32 verify, then sub-TLVs."""
    if len(v) < 5:
        raise ProxyError("v2: PP2_TYPE_SSL of %d bytes" % len(v))
    client = v[0]
    info.update(ssl_client=client, ssl_client_ssl=bool(client & 0x01),
                ssl_cert_conn=bool(client & 0x02),
                ssl_cert_sess=bool(client & 0x04),
                ssl_verify=struct.unpack(">I", v[1:5])[0])
    sub = v[5:]
    pos = 0
    types = []
    while pos < len(sub):
        if pos + 3 > len(sub):
            raise ProxyError("v2: SSL sub-TLV header cut")
        t = sub[pos]
        ln = struct.unpack(">H", sub[pos + 1:pos + 3])[0]
        val = sub[pos + 3:pos + 3 + ln]
        if len(val) != ln:
            raise ProxyError("v2: SSL sub-TLV 0x%02x cut" % t)
        pos += 3 + ln
        types.append(t)
        info[PP2_SSL_SUBTYPES.get(t, "ssl_0x%02x" % t)] = _text(val)
    info["ssl_sub_types"] = ",".join(str(t) for t in types)


def h_proxyecho(conn, a, log):
    """PROXY header, reported as JSON to the log and the client; echo."""
    try:
        info = parse_proxy(conn)
    except ProxyError as e:
        log("proxy-error why=%s" % json.dumps(str(e)))
        return
    j = json.dumps(info, sort_keys=True, separators=(",", ":"))
    log("proxy " + j)
    conn.sendall(b"PROXYINFO " + j.encode() + b"\n")
    h = hashlib.sha256()
    n = 0
    while True:
        try:
            d = conn.recv(65536)
        except ConnectionError:
            break
        if not d:
            break
        h.update(d)
        conn.sendall(d)
        n += len(d)
    log("echo n=%d sha256=%s" % (n, h.hexdigest()))
    try:
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(10)
        while conn.recv(65536):
            pass
    except OSError:
        pass


def pphdr(a):
    """Write a PROXY header (v1 text, or v2 binary) to a.out."""
    out_path = a.args[-1]
    if a.kind == "v1":
        fam, src, dst, sport, dport = a.args[:-1]
        out = ("PROXY %s %s %s %s %s\r\n" % (fam, src, dst, sport, dport)).encode()
    else:
        famcode = {"unspec": 0, "inet": 1, "inet6": 2, "unix": 3}[a.fam]
        cmd = {"local": 0, "proxy": 1}[a.ppcmd]
        if famcode == 1:
            addr = socket.inet_pton(socket.AF_INET, a.src) + \
                socket.inet_pton(socket.AF_INET, a.dst) + \
                struct.pack(">HH", a.sport, a.dport)
        elif famcode == 2:
            addr = socket.inet_pton(socket.AF_INET6, a.src) + \
                socket.inet_pton(socket.AF_INET6, a.dst) + \
                struct.pack(">HH", a.sport, a.dport)
        elif famcode == 3:
            addr = a.src.encode().ljust(108, b"\0") + \
                a.dst.encode().ljust(108, b"\0")
        else:
            addr = b""
        tlvs = b""
        for t in a.tlv:
            typ, _, hexval = t.partition(":")
            v = bytes.fromhex(hexval)
            tlvs += struct.pack(">BH", int(typ, 0), len(v)) + v
        body = addr + tlvs
        n = len(body) if a.length is None else a.length
        out = PP2_SIG + bytes([(a.version << 4) | cmd,
                               (famcode << 4) | (1 if famcode else 0)]) + \
            struct.pack(">H", n) + body
    with open(out_path, "wb") as f:
        f.write(out)


HANDLERS = {"closer": h_closer, "noread": h_noread, "slow": h_slow,
            "echo": h_echo, "hash": h_hash, "late": h_late, "bulk": h_bulk,
            "banner": h_banner, "source": h_source, "pop3": h_pop3,
            "imap": h_imap, "imapext": h_imapext, "pop3ext": h_pop3ext,
            "smtp": h_smtp, "smtpext": h_smtpext, "proxyecho": h_proxyecho}


def serve(a):
    fam, addr = parse_spec(a.listen)
    s = socket.socket(fam, socket.SOCK_STREAM)
    if fam != socket.AF_UNIX:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if fam == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind(addr)
    s.listen(64)
    tmp = a.ready + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % os.getpid())
    os.rename(tmp, a.ready)
    handler = HANDLERS[a.mode]

    def run(conn, peer):
        def log(msg):
            log_event(a.log, msg)
        log("accept peer=%s" % fmt_peer(peer))
        try:
            handler(conn, a, log)
        except Exception as e:  # keep serving; the test reads the log
            log("error %s %s" % (type(e).__name__, e))
        finally:
            conn.close()
            log("closed")

    while True:
        conn, peer = s.accept()
        threading.Thread(target=run, args=(conn, peer), daemon=True).start()


# ---------------------------------------------------------------- client

class Client:
    def __init__(self, a):
        self.a = a
        self.status = {"handshake": False, "sent": 0, "received": 0,
                       "close_notify": False, "eof": False, "error": None,
                       "raw_received": 0}
        self.raw = open(a.raw_out, "wb") if a.raw_out else None
        self.out = open(a.out, "wb") if a.out else None
        self.recv_hash = hashlib.sha256()

    def connect(self):
        fam, addr = parse_spec(self.a.connect)
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.settimeout(self.a.timeout)
        if self.a.bind:
            s.bind((self.a.bind, 0))
        s.connect(addr)
        if fam != socket.AF_UNIX:
            self.status["local_ip"] = s.getsockname()[0]
            self.status["local_port"] = s.getsockname()[1]
        self.sock = s

    def rst(self):
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                             struct.pack("ii", 1, 0))
        self.sock.close()
        self.status["reset_sent"] = True

    def got_raw(self, d):
        if self.raw:
            self.raw.write(d)
        self.status["raw_received"] += len(d)
        if "first_byte" not in self.status and d:
            self.status["first_byte"] = d[0]

    def got_app(self, d):
        if self.out:
            self.out.write(d)
        self.recv_hash.update(d)
        self.status["received"] += len(d)

    def handshake(self):
        a = self.a
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if a.cafile:
            ctx.load_verify_locations(a.cafile)
        else:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if a.tls_max:
            ctx.maximum_version = getattr(ssl.TLSVersion, a.tls_max)
        if a.tls_min:
            ctx.minimum_version = getattr(ssl.TLSVersion, a.tls_min)
        if a.ciphers:
            ctx.set_ciphers(a.ciphers)
        if a.cert:
            ctx.load_cert_chain(a.cert, a.key)
        if a.alpn:
            ctx.set_alpn_protocols(a.alpn.split(","))
        self.inc = ssl.MemoryBIO()
        self.outg = ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.outg,
                                server_hostname=a.servername)
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                d = self.outg.read()
                if d:
                    self.sock.sendall(d)
                d = self.sock.recv(65536)
                self.got_raw(d)
                if not d:
                    self.inc.write_eof()
                else:
                    self.inc.write(d)
        d = self.outg.read()
        if d:
            self.sock.sendall(d)
        self.status["handshake"] = True
        self.status["version"] = self.obj.version()
        self.status["cipher"] = self.obj.cipher()[0]
        self.status["alpn"] = self.obj.selected_alpn_protocol()

    def run(self):
        a = self.a
        data = read_file(a.send)
        if a.send_str is not None:
            data += a.send_str.encode()
        if a.send_size:
            pat = bytes(range(251)) * (65536 // 251 + 1)
            big = pat * (a.send_size // len(pat) + 1)
            # a view, not a copy: --send-size may be hundreds of MiB
            data = memoryview(big)[:a.send_size] if not data else \
                data + big[:a.send_size]
        try:
            self.connect()
        except OSError as e:
            self.status["error"] = "connect: %s" % e
            return
        try:
            if a.plain:
                self.obj = None
            else:
                self.handshake()
            self.loop(data)
            if a.drain:
                self.drain(a.drain)
        except (OSError, ssl.SSLError) as e:
            self.status["error"] = "%s: %s" % (type(e).__name__, e)
        finally:
            self.status["recv_sha256"] = self.recv_hash.hexdigest()
            try:
                self.sock.close()
            except OSError:
                pass

    def drain(self, secs):
        """After the session: read raw bytes until the TCP EOF (at_eof)."""
        if "at_eof" in self.status:
            return
        self.sock.setblocking(True)
        self.sock.settimeout(secs)
        try:
            while True:
                d = self.sock.recv(65536)
                self.got_raw(d)
                if not d:
                    self.status["at_eof"] = time.time()
                    return
        except ConnectionResetError:
            self.status["reset_received"] = True
            self.status["at_eof"] = time.time()
        except OSError:
            pass

    def read_app(self):
        """Decrypt what the memory BIO holds; set close_notify/eof."""
        while True:
            try:
                d = self.obj.read(65536)
            except ssl.SSLWantReadError:
                return False
            except ssl.SSLZeroReturnError:
                self.status["close_notify"] = True
                self.status.setdefault("at_close_notify", time.time())
                return True
            except ssl.SSLEOFError:
                self.status["eof"] = True
                return True
            except ssl.SSLError as e:
                # A fatal alert from the server: its name as OpenSSL
                # gives it (SSLV3_ALERT_BAD_RECORD_MAC -> bad_record_mac).
                self.status["alert"] = re.sub(r"^(SSLV3|TLSV1)_ALERT_", "",
                                              e.reason or str(e)).lower()
                self.status.setdefault("at_alert", time.time())
                raise
            if not d:
                self.status["close_notify"] = True
                self.status.setdefault("at_close_notify", time.time())
                return True
            self.got_app(d)

    def loop(self, data):
        a = self.a
        sock = self.sock
        sock.setblocking(False)
        outbuf = bytearray()
        pos = 0
        ended = False          # end action done (close_notify queued etc)
        shut_pending = False   # SHUT_WR once outbuf is flushed
        read_done = False
        raw_eof = False
        deadline = time.time() + a.timeout
        may_send = not a.wait_close_first
        next_trickle = 0.0
        while True:
            if time.time() > deadline:
                self.status["error"] = "timeout"
                return
            # queue application data
            if a.trickle and may_send and pos < len(data) and not outbuf:
                now = time.time()
                if now >= next_trickle:
                    outbuf += data[pos:pos + 1]
                    pos += 1
                    self.status["sent"] = pos
                    next_trickle = now + a.trickle
            while not a.trickle and may_send and pos < len(data) and \
                    len(outbuf) < 262144:
                chunk = data[pos:pos + (a.write_size or 16384)]
                if self.obj:
                    k = self.obj.write(chunk)
                    outbuf += self.outg.read()
                    if a.write_size:
                        self.status["records"] = \
                            self.status.get("records", 0) + 1
                else:
                    k = len(chunk)
                    outbuf += chunk
                pos += k
                self.status["sent"] = pos
                if not a.write_size:
                    break
            if a.rst_after_send is not None and pos >= a.rst_after_send \
                    and not outbuf:
                self.rst()
                return
            if may_send and pos >= len(data) and not ended and \
                    (read_done or self.status["received"] >= a.wait_recv):
                ended = True
                if a.end == "notify" and self.obj:
                    try:
                        self.obj.unwrap()
                    except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                        pass
                    except ssl.SSLError as e:
                        self.status["unwrap_error"] = str(e)
                    outbuf += self.outg.read()
                    shut_pending = True
                    self.status["sent_close_notify"] = True
                elif a.end == "fin":
                    shut_pending = True
                elif a.end == "garbage":
                    outbuf += read_file(a.garbage)
                    self.status["garbage_sent"] = True
                elif a.end == "rst":
                    self.rst()
                    return
            if shut_pending and not outbuf:
                sock.shutdown(socket.SHUT_WR)
                shut_pending = False
                self.status["shut_wr"] = True
            if read_done and ended and not outbuf and not shut_pending:
                return
            if read_done and a.trickle:
                return  # the peer closed: no point trickling on
            if read_done and not may_send and a.wait_close_first:
                may_send = True
                continue
            rl = [] if read_done else [sock]
            wl = [sock] if outbuf else []
            if not rl and not wl:
                if pos >= len(data) and ended:
                    return
                continue
            r, w, _ = select.select(rl, wl, [], 0.1 if a.trickle else 0.5)
            if r:
                try:
                    d = sock.recv(65536)
                except BlockingIOError:
                    d = None
                except ConnectionResetError:
                    self.status["reset_received"] = True
                    self.status.setdefault("at_eof", time.time())
                    read_done = True
                    d = None
                if d is not None:
                    self.got_raw(d)
                    if not d:
                        raw_eof = True
                        self.status.setdefault("at_eof", time.time())
                        if self.obj:
                            self.inc.write_eof()
                        else:
                            self.status["eof"] = True
                            read_done = True
                    elif self.obj:
                        self.inc.write(d)
                    else:
                        self.got_app(d)
                    if self.obj and not read_done:
                        read_done = self.read_app()
                        more = self.outg.read()
                        if more:
                            outbuf += more
                        if raw_eof and not read_done:
                            self.status["eof"] = True
                            read_done = True
                    if a.rst_after_recv is not None and \
                            self.status["received"] >= a.rst_after_recv:
                        self.rst()
                        return
            if w and outbuf:
                try:
                    k = sock.send(outbuf)
                    del outbuf[:k]
                except BlockingIOError:
                    pass
                except (BrokenPipeError, ConnectionResetError) as e:
                    self.status["send_error"] = type(e).__name__
                    outbuf.clear()
                    shut_pending = False
                    pos = len(data)
                    ended = True


def client(a):
    c = Client(a)
    c.run()
    if c.raw:
        c.raw.close()
    if c.out:
        c.out.close()
    json.dump(c.status, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")


class _PendingSock:
    """A socket whose first send carries some bytes queued before it."""

    def __init__(self, sock, pending):
        self._s = sock
        self._pending = pending

    def __getattr__(self, name):
        return getattr(self._s, name)

    def sendall(self, d):
        if self._pending:
            d, self._pending = self._pending + bytes(d), b""
        return self._s.sendall(d)

    def send(self, d):
        if self._pending:
            self._s.sendall(self._pending)
            self._pending = b""
        return self._s.send(d)


class PPClient(Client):
    """Client that sends a PROXY header first (see ppclient above)."""

    def connect(self):
        super().connect()
        hdr = read_file(self.a.proxy_file)
        if self.a.proxy_trickle:
            for i in range(len(hdr)):
                self.sock.sendall(hdr[i:i + 1])
                time.sleep(self.a.proxy_trickle)
            self.status["proxy_sent"] = len(hdr)
        elif self.a.proxy_separate or self.a.plain:
            self.sock.sendall(hdr)
            self.status["proxy_sent"] = len(hdr)
            if not self.a.plain:
                time.sleep(0.2)
        else:
            self.sock = _PendingSock(self.sock, hdr)
            self.status["proxy_sent"] = len(hdr)
            self.status["proxy_with_hello"] = True


def ppclient(a):
    c = PPClient(a)
    c.run()
    if c.raw:
        c.raw.close()
    if c.out:
        c.out.close()
    json.dump(c.status, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")


def tlsbad(a):
    """A TLS server that sends garbage after the handshake (see above)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(a.cert, a.key)
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", int(a.listen)))
    lsock.listen(8)
    with open(a.ready, "w") as f:
        f.write("ready\n")
    with open(a.garbage, "rb") as f:
        garbage = f.read()
    while True:
        sock, peer = lsock.accept()
        log = open(a.log, "a", buffering=1)
        log.write("accept peer=%s:%d\n" % peer)
        n = 0
        try:
            conn = ctx.wrap_socket(sock, server_side=True)
            conn.settimeout(10)
            conn.sendall(b"hello\n")
            os.write(conn.fileno(), garbage)
            while True:
                d = conn.recv(65536)
                if not d:
                    log.write("close_notify\n")
                    break
                n += len(d)
        except ssl.SSLEOFError:
            log.write("eof\n")
        except ssl.SSLError as e:
            log.write("alert %s\n" % re.sub(r"^(SSLV3|TLSV1)_ALERT_", "",
                                            e.reason or str(e)).lower())
        except ConnectionResetError:
            log.write("reset\n")
        except OSError as e:
            log.write("error %s\n" % e)
        log.write("recv n=%d\n" % n)
        log.close()
        sock.close()


def gen(a):
    r = random.Random(a.seed)
    left = a.size
    with open(a.out, "wb") as f:
        while left > 0:
            k = min(left, 1 << 20)
            f.write(r.randbytes(k))
            left -= k


def craft(a):
    """Hand-made hellos of protocols a TLS server must refuse."""
    rnd = random.Random(a.kind).randbytes
    if a.kind == "sslv2":
        # SSLv2 CLIENT-HELLO: 2-byte header with the high bit set, version 2
        specs = bytes.fromhex("0700c0050080030080010080060040040080020080")
        body = bytes([1, 0, 2]) + struct.pack(">HHH", len(specs), 0, 16) + \
            specs + rnd(16)
        out = struct.pack(">H", 0x8000 | len(body)) + body
    elif a.kind == "sslv3":
        # ClientHello, version 3.0 in the record and the hello, SSLv3 suites
        suites = bytes.fromhex("002f0035000a00050004")
        hello = b"\x03\x00" + rnd(32) + b"\x00" + \
            struct.pack(">H", len(suites)) + suites + b"\x01\x00"
        hs = b"\x01" + struct.pack(">I", len(hello))[1:] + hello
        out = b"\x16\x03\x00" + struct.pack(">H", len(hs)) + hs
    else:
        raise SystemExit("unknown kind")
    with open(a.out, "wb") as f:
        f.write(out)


def records(a):
    """Check that FILE is nothing but whole TLS records (of types --only)."""
    with open(a.file, "rb") as f:
        data = f.read()
    allowed = set(a.only) if a.only else {20, 21, 22, 23}
    pos = 0
    n = 0
    while pos < len(data):
        head = data[pos:pos + 5]
        if len(head) < 5:
            print("offset %d: %d stray bytes: %r" % (pos, len(head), head))
            return 1
        typ, major, minor, length = head[0], head[1], head[2], \
            (head[3] << 8) | head[4]
        if typ not in allowed or major != 3 or minor > 4 or \
                length > 16384 + 2048:
            print("offset %d: not a TLS record (of types %s): %r" %
                  (pos, sorted(allowed), data[pos:pos + 40]))
            return 1
        if pos + 5 + length > len(data):
            print("offset %d: record truncated" % pos)
            return 1
        pos += 5 + length
        n += 1
    print("%d TLS records, %d bytes" % (n, len(data)))
    return 0


def client_args(c):
    """The options of client and ppclient."""
    c.add_argument("--connect", required=True)
    c.add_argument("--cafile")
    c.add_argument("--servername", default="localhost")
    c.add_argument("--send")
    c.add_argument("--send-str")
    c.add_argument("--out")
    c.add_argument("--raw-out")
    c.add_argument("--end", choices=["notify", "fin", "rst", "none", "garbage"],
                   default="notify")
    c.add_argument("--wait-close-first", action="store_true")
    c.add_argument("--wait-recv", type=int, default=0)
    c.add_argument("--bind")
    c.add_argument("--rst-after-recv", type=int)
    c.add_argument("--rst-after-send", type=int)
    c.add_argument("--plain", action="store_true")
    c.add_argument("--tls-max")
    c.add_argument("--tls-min")
    c.add_argument("--ciphers")
    c.add_argument("--cert")
    c.add_argument("--key")
    c.add_argument("--alpn")
    c.add_argument("--timeout", type=float, default=20)
    c.add_argument("--drain", type=float,
                   help="after the session, read up to DRAIN s for the "
                   "TCP EOF")
    c.add_argument("--send-size", type=int,
                   help="send N bytes of a counting pattern (after --send)")
    c.add_argument("--write-size", type=int,
                   help="application bytes per TLS write (one record each)")
    c.add_argument("--trickle", type=float,
                   help="--plain: send one byte every TRICKLE seconds")
    c.add_argument("--garbage",
                   help="--end garbage: raw bytes written on the socket "
                   "after the application data")


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("mode", choices=sorted(HANDLERS))
    s.add_argument("--listen", required=True)
    s.add_argument("--ready", required=True)
    s.add_argument("--log", required=True)
    s.add_argument("--delay", type=float, default=1.0)
    s.add_argument("--send-file")
    s.add_argument("--expect", type=int)
    s.add_argument("--limit", type=int, default=256 << 20)
    s.add_argument("--chunk", type=int, default=4096)
    s.add_argument("--interval", type=float, default=0.01)
    c = sub.add_parser("client")
    pc = sub.add_parser("ppclient")
    pc.add_argument("--proxy-file", required=True)
    pc.add_argument("--proxy-separate", action="store_true")
    pc.add_argument("--proxy-trickle", type=float)
    client_args(c)
    client_args(pc)
    r = sub.add_parser("records")
    r.add_argument("file")
    r.add_argument("--only", type=int, action="append")
    h = sub.add_parser("pphdr")
    h.add_argument("kind", choices=["v1", "v2"])
    h.add_argument("args", nargs="+",
                   help="v1: FAMILY SRC DST SPORT DPORT OUT; v2: OUT")
    h.add_argument("--cmd", dest="ppcmd", choices=["local", "proxy"],
                   default="proxy")
    h.add_argument("--fam", choices=["unspec", "inet", "inet6", "unix"],
                   default="inet")
    h.add_argument("--src", default="192.0.2.1")
    h.add_argument("--dst", default="127.0.0.1")
    h.add_argument("--sport", type=int, default=40000)
    h.add_argument("--dport", type=int, default=993)
    h.add_argument("--tlv", action="append", default=[])
    h.add_argument("--version", type=int, default=2)
    h.add_argument("--length", type=int)
    t = sub.add_parser("tlsbad")
    for opt in ("--listen", "--cert", "--key", "--ready", "--log", "--garbage"):
        t.add_argument(opt, required=True)
    k = sub.add_parser("craft")
    k.add_argument("kind", choices=["sslv2", "sslv3"])
    k.add_argument("out")
    g = sub.add_parser("gen")
    g.add_argument("size", type=int)
    g.add_argument("seed")
    g.add_argument("out")
    a = p.parse_args()
    sys.exit({"serve": serve, "client": client, "gen": gen,
              "records": records, "craft": craft, "ppclient": ppclient,
              "pphdr": pphdr, "tlsbad": tlsbad}[a.cmd](a))


if __name__ == "__main__":
    main()
