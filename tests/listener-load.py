#!/usr/bin/env python3
"""listener-load.py: many TLS sessions at once, for tests/listener.test.

    listener-load.py --connect HOST:PORT --cafile CA [--sessions N]
        [--bytes B] [--hold S] [--ready FILE] [--bind ADDR] [--timeout T]

Opens N TLS sessions (threads), waits until all N have completed their
handshake (so that N sessions are open at the same time), writes FILE (if
given) with the count, waits S seconds (a test kills some of the sessions'
processes then), and then each session sends B random bytes to an echo
backend and reads them back. Prints one JSON line: "open" (sessions whose
handshake completed), "whole" (sessions whose bytes came back whole and in
order: the sha256 of what came back equals that of what was sent), "broken"
(sessions that failed after the handshake), "failed" (handshakes that
failed) and "certs" (the server certificates' SHA-256 fingerprints seen,
with their counts).
"""
import argparse
import hashlib
import json
import os
import socket
import ssl
import threading
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--connect", required=True)
    ap.add_argument("--cafile", required=True)
    ap.add_argument("--sessions", type=int, default=1)
    ap.add_argument("--bytes", type=int, default=16384)
    ap.add_argument("--hold", type=float, default=0)
    ap.add_argument("--ready")
    ap.add_argument("--bind", help="the local address to connect from")
    ap.add_argument("--timeout", type=float, default=60)
    a = ap.parse_args()
    host, port = a.connect.rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=a.cafile)
    ctx.check_hostname = False
    lock = threading.Lock()
    res = {"open": 0, "whole": 0, "broken": 0, "failed": 0, "certs": {}}
    opened = threading.Semaphore(0)
    go = threading.Event()

    def session():
        try:
            raw = socket.create_connection((host, int(port)), timeout=a.timeout,
                                           source_address=(a.bind, 0) if a.bind else None)
            s = ctx.wrap_socket(raw, server_hostname="localhost")
        except (OSError, ssl.SSLError):
            with lock:
                res["failed"] += 1
            opened.release()
            return
        fp = hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest()
        with lock:
            res["open"] += 1
            res["certs"][fp] = res["certs"].get(fp, 0) + 1
        opened.release()
        go.wait()
        data = os.urandom(a.bytes)
        back = hashlib.sha256()
        got = 0
        try:
            # All of it, then the echo: small enough (the default 16 KiB) for
            # the sockets' buffers, so no second thread shares the SSL object.
            s.sendall(data)
            while got < len(data):
                d = s.recv(65536)
                if not d:
                    break
                back.update(d)
                got += len(d)
            whole = got == len(data) and back.digest() == hashlib.sha256(data).digest()
            s.close()
        except (OSError, ssl.SSLError):
            whole = False
        with lock:
            res["whole" if whole else "broken"] += 1

    threads = [threading.Thread(target=session, daemon=True) for _ in range(a.sessions)]
    for t in threads:
        t.start()
    for _ in threads:
        opened.acquire()
    if a.ready:
        with open(a.ready + ".tmp", "w") as f:
            f.write("%d\n" % res["open"])
        os.rename(a.ready + ".tmp", a.ready)
    time.sleep(a.hold)
    go.set()
    for t in threads:
        t.join(a.timeout)
    print(json.dumps(res, sort_keys=True))


if __name__ == "__main__":
    main()
