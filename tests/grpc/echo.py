"""A gRPC peer for the gateway's tests, with grpcio and a generic handler
(no protoc): `server PORT` echoes the request bytes of /demo.Echo/Say and
sends a trailer; `call TARGET [KEY]` makes that call through the gateway and
prints what came back as JSON."""
import json
import sys
import time
from concurrent import futures

import grpc


def serve(port):
    def say(request, context):
        context.set_trailing_metadata((("x-echo-trailer", "kept"),))
        return b"echo:" + request

    handler = grpc.method_handlers_generic_handler(
        "demo.Echo",
        {"Say": grpc.unary_unary_rpc_method_handler(say)},
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print("ready", flush=True)
    server.wait_for_termination()


def call(target, key=None):
    with grpc.insecure_channel(target) as channel:
        say = channel.unary_unary("/demo.Echo/Say")
        metadata = (("x-api-key", key),) if key else ()
        try:
            reply, c = say.with_call(b"hello", metadata=metadata, timeout=10)
            out = {
                "code": c.code().name,
                "reply": reply.decode(),
                "trailers": dict(c.trailing_metadata() or ()),
            }
        except grpc.RpcError as e:
            out = {"code": e.code().name, "message": e.details()}
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        serve(int(sys.argv[2]))
    else:
        call(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
