"""How the gateway's answers carry X-Request-Id over HTTP/2 (prior
knowledge, plain socket): `request_ids.py HOST PORT PATH N` sends N requests
one after another on one connection and prints, as JSON, each answer's
status, its X-Request-Id and whether HPACK sent that field as a literal
never to be indexed."""
import json
import socket
import sys

import h2.config
import h2.connection
import h2.events
from hpack import NeverIndexedHeaderTuple


def main(host, port, path, n):
    sock = socket.create_connection((host, port), timeout=5)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    answers = []
    for i in range(n):
        stream = 1 + 2 * i
        conn.send_headers(
            stream,
            [(":method", "GET"), (":path", path), (":scheme", "http"), (":authority", "t")],
            end_stream=True,
        )
        sock.sendall(conn.data_to_send())
        done = False
        while not done:
            data = sock.recv(65536)
            if not data:
                raise SystemExit("connection closed")
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream:
                    fields = [h for h in event.headers if h[0] == b"x-request-id"]
                    answers.append({
                        "status": dict(event.headers)[b":status"].decode(),
                        "request_id": [v.decode() for _, v in fields],
                        "never_indexed": [isinstance(h, NeverIndexedHeaderTuple) for h in fields],
                    })
                if isinstance(event, h2.events.DataReceived):
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                if isinstance(event, h2.events.StreamEnded) and event.stream_id == stream:
                    done = True
            sock.sendall(conn.data_to_send())
    conn.close_connection()
    sock.sendall(conn.data_to_send())
    sock.close()
    print(json.dumps(answers))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
