#!/usr/bin/python3
"""tornado_echo: the Tornado IOStream echo server that corio's stream API is modelled on.

    /usr/bin/python3 bench/peers/tornado_echo.py --port N [--mode raw|line]

raw: read_bytes(65536, partial=True), then write what arrived. line: read_until(b"\\r\\n"),
then write that line. As in corio's echo server the writes are not awaited: IOStream queues
them and reports failures through the returned future, which Tornado itself consumes.
One thread, one IOLoop (asyncio, so epoll). Prints "listening on 127.0.0.1:N" when ready;
SIGTERM ends it (default action), SIGINT too.
Run with Debian's /usr/bin/python3 (package python3-tornado).
"""
import argparse
import asyncio
import sys

from tornado.iostream import StreamClosedError
from tornado.netutil import bind_sockets
from tornado.tcpserver import TCPServer


class EchoServer(TCPServer):
    def __init__(self, line):
        super().__init__()
        self.line = line

    async def handle_stream(self, stream, address):
        stream.set_nodelay(True)  # as every other peer: replies leave at once
        try:
            if self.line:
                while True:
                    stream.write(await stream.read_until(b"\r\n"))
            else:
                while True:
                    stream.write(await stream.read_bytes(65536, partial=True))
        except StreamClosedError:
            pass


async def main():
    parser = argparse.ArgumentParser(description="Tornado echo server (bench peer)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--mode", choices=("raw", "line"), default="raw")
    args = parser.parse_args()
    sockets = bind_sockets(args.port, "127.0.0.1", backlog=4096)
    server = EchoServer(args.mode == "line")
    server.add_sockets(sockets)
    print(f"listening on 127.0.0.1:{sockets[0].getsockname()[1]}", flush=True)
    await asyncio.Event().wait()  # serve until a signal ends the process


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(130)
