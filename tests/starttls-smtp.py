#!/usr/bin/env python3
"""starttls-smtp.py: a scripted SMTP client for tests/starttls-smtp.test.

  starttls-smtp.py PORT CAFILE inject-one    EHLO, then "STARTTLS\\r\\nRSET\\r\\n
                                              MAIL FROM:<x>\\r\\n" in one segment,
                                              TLS, EHLO, MAIL FROM:<after@tls>, QUIT
  starttls-smtp.py PORT CAFILE inject-two    the same, the injected commands in a
                                              second segment after the 220, before
                                              the ClientHello
  starttls-smtp.py PORT CAFILE raw BYTES [hold]
                                              send BYTES (Python escapes), half-close
                                              unless "hold", print all received

Prints the transcript ("S: line" / "C: line"); exits 0 when the scripted
session ran to its end, 1 otherwise (the transcript says where it stopped).
"""
import socket
import ssl
import sys
import time


def reply(f, out):
    """Read one SMTP reply (its lines); returns the last line."""
    while True:
        line = f.readline()
        if not line:
            out.append("S: <eof>")
            return ""
        line = line.decode("latin-1").rstrip("\r\n")
        out.append("S: " + line)
        if len(line) < 4 or line[3] != "-":
            return line


def session(port, cafile, two):
    out = []
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    f = s.makefile("rb")
    try:
        reply(f, out)
        s.sendall(b"EHLO inject.test\r\n")
        out.append("C: EHLO inject.test")
        reply(f, out)
        if two:
            s.sendall(b"STARTTLS\r\n")
            out.append("C: STARTTLS")
            reply(f, out)
            time.sleep(0.2)
            s.sendall(b"RSET\r\nMAIL FROM:<x>\r\n")
            out.append("C: RSET / MAIL FROM:<x> (second segment, before TLS)")
            time.sleep(0.2)
        else:
            s.sendall(b"STARTTLS\r\nRSET\r\nMAIL FROM:<x>\r\n")
            out.append("C: STARTTLS / RSET / MAIL FROM:<x> (one segment)")
            reply(f, out)
        ctx = ssl.create_default_context(cafile=cafile)
        t = ctx.wrap_socket(s, server_hostname="localhost")
        out.append("-- TLS " + t.version())
        g = t.makefile("rb")
        for cmd in (b"EHLO inject.test", b"MAIL FROM:<after@tls>", b"QUIT"):
            t.sendall(cmd + b"\r\n")
            out.append("C: " + cmd.decode())
            last = reply(g, out)
        print("\n".join(out))
        return 0 if last.startswith("221") else 1
    except (OSError, ssl.SSLError) as e:
        out.append("error: %s" % e)
        print("\n".join(out))
        return 1


def raw(port, data, hold):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(data)
    if not hold:
        s.shutdown(socket.SHUT_WR)
    got = b""
    try:
        while True:
            d = s.recv(4096)
            if not d:
                break
            got += d
    except OSError:
        pass
    sys.stdout.write(got.decode("latin-1"))
    return 0


def main():
    port, cafile, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    if mode == "raw":
        data = sys.argv[4].encode("latin-1").decode("unicode_escape").encode("latin-1")
        return raw(port, data, len(sys.argv) > 5 and sys.argv[5] == "hold")
    return session(port, cafile, mode == "inject-two")


if __name__ == "__main__":
    sys.exit(main())
