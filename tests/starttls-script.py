#!/usr/bin/env python3
"""starttls-script.py: a scripted line client for the STARTTLS tests.

  starttls-script.py PORT CAFILE STEP...

Steps, run in order on one connection to 127.0.0.1:PORT:
  bind:ADDR     (first only) connect from ADDR, a local address such as 127.0.0.2
  send:TEXT     send TEXT (Python escapes: \\r\\n, \\x00), one segment
  read:REGEX    read lines until one matches REGEX (a regular expression)
  tls           the TLS handshake (server name localhost, CAFILE trusted)
  tls-cert:PEM  the same, presenting the client certificate and key in PEM
  sleep:SECS    wait
  eof           half-close, then read everything until the server closes

Prints the transcript ("S: line", "C: ..." and "-- tls TLSv1.3"); exits 0
when every step ran, 1 at the first that failed (the transcript says which).
"""
import re
import socket
import ssl
import sys
import time


def main():
    port, cafile, steps = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    out = []
    src = None
    if steps and steps[0].startswith("bind:"):
        src, steps = (steps[0][5:], 0), steps[1:]
    s = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=src)
    buf = b""
    rc = 0
    try:
        for step in steps:
            kind, _, arg = step.partition(":")
            if kind == "send":
                data = arg.encode("latin-1").decode("unicode_escape").encode("latin-1")
                s.sendall(data)
                out.append("C: " + repr(data)[2:-1])
            elif kind == "read":
                pat = re.compile(arg)
                while True:
                    while b"\n" not in buf:
                        d = s.recv(4096)
                        if not d:
                            raise EOFError("eof before a line matching " + arg)
                        buf += d
                    line, _, buf = buf.partition(b"\n")
                    text = line.decode("latin-1").rstrip("\r")
                    out.append("S: " + text)
                    if pat.search(text):
                        break
            elif kind in ("tls", "tls-cert"):
                ctx = ssl.create_default_context(cafile=cafile)
                if kind == "tls-cert":
                    ctx.load_cert_chain(arg)
                s = ctx.wrap_socket(s, server_hostname="localhost")
                s.do_handshake()
                out.append("-- tls " + s.version())
            elif kind == "sleep":
                time.sleep(float(arg))
            elif kind == "eof":
                if isinstance(s, ssl.SSLSocket):
                    s = s.unwrap()
                s.shutdown(socket.SHUT_WR)
                while True:
                    d = s.recv(4096)
                    if not d:
                        break
                    buf += d
                for line in buf.decode("latin-1").splitlines():
                    out.append("S: " + line)
                buf = b""
            else:
                raise ValueError("unknown step " + step)
    except (OSError, ssl.SSLError, EOFError, ValueError) as e:
        out.append("error: %s: %s" % (type(e).__name__, e))
        rc = 1
    print("\n".join(out))
    return rc


if __name__ == "__main__":
    sys.exit(main())
