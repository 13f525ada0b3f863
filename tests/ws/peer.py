"""WebSocket peers for the gateway's tests, with the `websockets` library.

`server PORT`: an echo server on 127.0.0.1:PORT; prints "ready".
`client URL [KEY]`: connects through the gateway (the key in X-API-Key),
then obeys lines on stdin: `send TEXT` (prints "echo TEXT" or "closed"),
`wait SECONDS` (prints "closed" as soon as the gateway closes the
connection, else "open" after SECONDS)."""
import asyncio
import sys

import websockets


async def serve(port):
    async def echo(ws):
        async for message in ws:
            await ws.send(message)

    async with websockets.serve(echo, "127.0.0.1", port):
        print("ready", flush=True)
        await asyncio.Future()


async def client(url, key):
    headers = {"X-API-Key": key} if key else {}
    try:
        ws = await websockets.connect(url, additional_headers=headers, open_timeout=5)
    except Exception as e:
        print("refused", getattr(getattr(e, "response", None), "status_code", e), flush=True)
        return
    print("open", flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        cmd, _, arg = line.strip().partition(" ")
        if cmd == "send":
            try:
                await ws.send(arg)
                reply = await asyncio.wait_for(ws.recv(), 5)
                print("echo", reply, flush=True)
            except Exception:
                print("closed", flush=True)
        elif cmd == "wait":
            try:
                await asyncio.wait_for(ws.wait_closed(), float(arg))
                print("closed", flush=True)
            except asyncio.TimeoutError:
                print("open", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        asyncio.run(serve(int(sys.argv[2])))
    else:
        asyncio.run(client(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None))
