#!/usr/bin/python3
"""Real Python peers against corio's HTTP code (issue 6), on both backends.

- Python's http.client against the corio hello server: keep-alive reuse, HEAD, POST, 404;
- pipelining: three requests in one send, three responses in order;
- a malformed request sent one byte at a time: 400 and the connection closed;
- the corio client (docs/examples/fetch.cpp) against Python's http.server: a file fetched
  byte for byte (HTTP/1.0 server, Content-Length body).

Usage: http_python_peers_test.py HELLO_BINARY FETCH_BINARY   (run by ctest, bounded)
"""
import http.client
import os
import re
import socket
import subprocess
import sys
import tempfile
import time


def start(argv, pattern, env=None):
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                            text=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        match = re.search(pattern, line or "")
        if match:
            return proc, int(match.group(1))
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError(f"{argv[0]} did not start")


def recv_until_closed_or(sock, predicate, limit=5.0):
    sock.settimeout(limit)
    data = b""
    while not predicate(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def check_server(hello, backend):
    proc, port = start([hello, "--backend", backend, "--port", "0"], r"listening on .*:(\d+)")
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        for _ in range(2):  # keep-alive: the same connection serves both
            conn.request("GET", "/")
            r = conn.getresponse()
            assert r.status == 200 and r.read() == b"Hello, World!", "GET /"
        first_sock = conn.sock
        conn.request("HEAD", "/")
        r = conn.getresponse()
        assert r.status == 200 and r.getheader("Content-Length") == "13" and r.read() == b""
        conn.request("POST", "/", body=b"x" * 1000, headers={"Content-Type": "text/plain"})
        r = conn.getresponse()
        assert r.status == 200 and r.read() == b"Hello, World!", "POST /"
        conn.request("GET", "/missing")
        r = conn.getresponse()
        assert r.status == 404, "404"
        r.read()
        assert conn.sock is first_sock, "http.client reconnected: keep-alive was not kept"
        conn.close()

        # Pipelining: three requests in one send; three responses, in order.
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
                      b"GET /missing HTTP/1.1\r\nHost: a\r\n\r\n"
                      b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            data = recv_until_closed_or(s, lambda d: False)
            statuses = re.findall(rb"HTTP/1.1 (\d{3})", data)
            assert statuses == [b"200", b"404", b"200"], f"pipelined statuses {statuses}"

        # A malformed request (no colon in a header line), one byte at a time.
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            for b in b"GET / HTTP/1.1\r\nHost a\r\n\r\n":
                s.send(bytes([b]))
                time.sleep(0.001)
            data = recv_until_closed_or(s, lambda d: False)
            assert data.startswith(b"HTTP/1.1 400 "), f"malformed: {data[:40]!r}"

        # SIGTERM stops it gracefully: exit status 0 (signal_set, not the default action).
        proc.terminate()
        assert proc.wait(timeout=10) == 0, f"exit status {proc.returncode} after SIGTERM"
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)


def check_client(fetch, backend):
    with tempfile.TemporaryDirectory() as root:
        payload = os.urandom(200_000)
        with open(os.path.join(root, "blob.bin"), "wb") as f:
            f.write(payload)
        server, port = start([sys.executable, "-u", "-m", "http.server", "--bind", "127.0.0.1",
                              "--directory", root, "0"], r"port (\d+)")
        try:
            env = dict(os.environ)
            if backend == "epoll":
                env["CORIO_DISABLE_IO_URING"] = "1"
            out = os.path.join(root, "fetched.bin")
            done = subprocess.run([fetch, f"http://127.0.0.1:{port}/blob.bin", out], env=env,
                                  capture_output=True, text=True, timeout=20)
            assert done.returncode == 0, f"fetch failed: {done.stdout} {done.stderr}"
            with open(out, "rb") as f:
                assert f.read() == payload, "fetched bytes differ"
        finally:
            server.terminate()
            server.wait(timeout=10)


def main():
    hello, fetch = sys.argv[1], sys.argv[2]
    for backend in ("io_uring", "epoll"):
        check_server(hello, backend)
        check_client(fetch, backend)
        print(f"{backend}: http.client, pipelining, byte-by-byte 400, fetch from http.server: ok")


if __name__ == "__main__":
    main()
