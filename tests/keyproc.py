#!/usr/bin/env python3
"""keyproc.py -- helpers for keyproc.test (the key process, issue 13).

  secrets KEYFILE...       one line per secret: FILE LABEL HEX (from
                           `openssl pkey -text`: EC and Ed25519 "priv",
                           RSA "prime1" and "prime2")
  scan PID KEYFILE...      search the memory of process PID (root: through
                           /proc/PID/maps and /proc/PID/mem) for each key's
                           secrets, big-endian (DER, raw seeds) and
                           little-endian (GMP/nettle limbs), and for the
                           base64 lines of its PEM block that carry them; prints
                           "found FILE LABEL FORM" or "clean FILE", and
                           "regions N bytes M" (what was read)
  client PORT DIR N [--resume] [--tls 1.2|1.3]
                           N connections, one after the other; for each i:
                           connect (TCP), touch DIR/connected.i, wait for
                           DIR/go.i, TLS handshake (no SNI, no certificate
                           check: the test is about the server's key),
                           send "ping i", read the echo, write
                           DIR/ready.i ("ok reused=yes|no" or "error ..."),
                           wait for DIR/release.i, close. --resume offers
                           the previous connection's session.
"""
import base64
import os
import re
import socket
import ssl
import subprocess
import sys
import time


def secrets(keyfile):
    out = subprocess.run(["openssl", "pkey", "-in", keyfile, "-text", "-noout"],
                         capture_output=True, text=True, check=True).stdout
    found = {}
    label = None
    for line in out.splitlines():
        m = re.match(r"^([A-Za-z0-9]+):\s*$", line)
        if m:
            label = m.group(1)
            found[label] = ""
            continue
        if label is not None and re.match(r"^\s+[0-9a-f:]+$", line):
            found[label] += line.strip().replace(":", "")
        else:
            label = None
    want = [k for k in ("priv", "prime1", "prime2") if k in found]
    res = []
    for k in want:
        b = bytes.fromhex(found[k]).lstrip(b"\0")
        res.append((k, b))
    return res


def pem_lines(keyfile):
    """The base64 lines of the private key block(s) in keyfile that carry
    the secrets: the others (RSA's modulus) are public, and may be found
    in the certificate's text."""
    text = open(keyfile).read()
    wanted = [b for _, b in secrets(keyfile)]
    lines = []
    for m in re.finditer(r"-----BEGIN [A-Z ]*PRIVATE KEY-----\n(.*?)-----END", text, re.S):
        body = [ln for ln in m.group(1).split("\n") if ln and ":" not in ln]
        der = base64.b64decode("".join(body))
        for b in wanted:
            pos = der.find(b)
            if pos < 0:
                continue
            for i, ln in enumerate(body):
                lo, hi = 48 * i, 48 * i + len(base64.b64decode(ln))
                if lo < pos + len(b) and pos < hi and len(ln) >= 40 and ln not in lines:
                    lines.append(ln)
    return lines


def read_memory(pid):
    chunks = []
    total = 0
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            parts = line.split()
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            name = parts[5] if len(parts) > 5 else ""
            if "r" not in parts[1] or name in ("[vvar]", "[vsyscall]"):
                continue
            try:
                mem.seek(lo)
                data = mem.read(hi - lo)
            except OSError:
                continue
            chunks.append(data)
            total += len(data)
    return chunks, total


def scan(pid, keyfiles):
    chunks, total = read_memory(pid)
    print(f"regions {len(chunks)} bytes {total}")
    for kf in keyfiles:
        hits = []
        for label, b in secrets(kf):
            forms = {"be": b, "le": b[::-1]}
            for form, pat in forms.items():
                if any(pat in c for c in chunks):
                    hits.append(f"{label} {form}")
        for i, ln in enumerate(pem_lines(kf)):
            if any(ln.encode() in c for c in chunks):
                hits.append(f"pem-line-{i} text")
                break
        for h in hits:
            print(f"found {kf} {h}")
        if not hits:
            print(f"clean {kf}")


def wait_file(path, secs=30):
    end = time.time() + secs
    while time.time() < end:
        if os.path.exists(path):
            return True
        time.sleep(0.02)
    return False


def client(port, d, n, resume, tls):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if tls == "1.2":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    elif tls == "1.3":
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    session = None
    for i in range(1, n + 1):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        open(f"{d}/connected.{i}", "w").close()
        wait_file(f"{d}/go.{i}")
        try:
            t = ctx.wrap_socket(s, session=session if resume else None)
            t.sendall(f"ping {i}\n".encode())
            got = b""
            while not got.endswith(b"\n"):
                r = t.recv(100)
                if not r:
                    break
                got += r
            if got != f"ping {i}\n".encode():
                raise RuntimeError(f"echo: {got!r}")
            # TLS 1.3 tickets come after the handshake: read them now.
            session = t.session
            res = f"ok reused={'yes' if t.session_reused else 'no'} {t.version()}"
        except (OSError, ssl.SSLError, RuntimeError) as e:
            res = f"error {e}"
            t = s
        with open(f"{d}/ready.{i}.tmp", "w") as f:
            f.write(res + "\n")
        os.rename(f"{d}/ready.{i}.tmp", f"{d}/ready.{i}")
        wait_file(f"{d}/release.{i}")
        t.close()


def main():
    cmd = sys.argv[1]
    if cmd == "secrets":
        for kf in sys.argv[2:]:
            for label, b in secrets(kf):
                print(kf, label, b.hex())
    elif cmd == "scan":
        scan(int(sys.argv[2]), sys.argv[3:])
    elif cmd == "client":
        args = sys.argv[2:]
        resume = "--resume" in args
        tls = None
        if "--tls" in args:
            tls = args[args.index("--tls") + 1]
        client(int(args[0]), args[1], int(args[2]), resume, tls)
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()
