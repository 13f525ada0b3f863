#!/usr/bin/env python3
"""A flood at a fixed rate in which every request carries a token of its own.

    flood.py HOST:PORT PATH TOKENS_FILE RATE SECONDS [CONNECTIONS]

Each line of TOKENS_FILE is one bearer token; the requests take them in
turn (from the start again when they run out). CONNECTIONS keep-alive
connections (8), a thread each, share RATE requests a second, each on its
own schedule: a request late on its schedule goes at once, and none is
skipped. oha's fixed-rate flood sends one header throughout, so it cannot
say what distinct tokens cost; this can. Prints one JSON line: requests
sent, answers by status, and the rate reached.
"""

import json
import socket
import sys
import threading
import time
from collections import Counter


def connection(address, requests, interval, start, until, statuses, sent, lock):
    sock = socket.create_connection(address, timeout=10)
    reader = sock.makefile("rb")
    n = 0
    try:
        while True:
            due = start + n * interval
            if due >= until:
                break
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sock.sendall(requests[n % len(requests)])
            n += 1
            status = reader.readline().split(b" ")[1].decode()
            length = 0
            while True:
                line = reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                reader.read(length)
            with lock:
                statuses[status] += 1
    finally:
        with lock:
            sent.append(n)
        sock.close()


def main():
    address, path, tokens_file, rate, seconds = sys.argv[1:6]
    connections = int(sys.argv[6]) if len(sys.argv) > 6 else 8
    host, port = address.rsplit(":", 1)
    rate, seconds = float(rate), float(seconds)
    with open(tokens_file) as f:
        tokens = [t.strip() for t in f if t.strip()]
    statuses, sent, lock = Counter(), [], threading.Lock()
    interval = connections / rate
    began = time.monotonic()
    until = began + seconds
    threads = []
    for i in range(connections):
        # connection i takes every CONNECTIONS-th token, from the i-th
        mine = [
            f"GET {path} HTTP/1.1\r\nHost: {address}\r\n"
            f"Authorization: Bearer {t}\r\n\r\n".encode()
            for t in tokens[i::connections]
        ]
        t = threading.Thread(
            target=connection,
            args=((host, int(port)), mine, interval, began + i / rate, until, statuses, sent, lock),
            daemon=True,
        )
        t.start()
        threads.append(t)
    for t in threads:
        t.join(seconds + 10)
    took = time.monotonic() - began
    print(json.dumps({"sent": sum(sent), "statuses": statuses, "rate": round(sum(sent) / took, 1)}))


if __name__ == "__main__":
    main()
