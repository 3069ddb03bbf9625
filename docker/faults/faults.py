#!/usr/bin/env python3
"""A fault upstream: an HTTP/1.x server that fails on purpose, by path.

    /close        read the request, then close (FIN) without answering
    /reset        read the request, then reset (RST, SO_LINGER 0)
    /half         send half a status line ("HTTP/1.1 2"), then close
    /silent       read the request and never answer (closes after 120 s)
    /invalid      a header line with a control byte
    /big          a 64 KiB response header
    /truncate     Content-Length: 1000, 10 bytes, then close
    /truncate-chunked  chunked: one 10-byte chunk, then close
    /stall-read   read the request head, then never read again (120 s)
    /ka           keep-alive: answers the first request on a connection,
                  closes (FIN) on the second without answering (an idle
                  timeout racing nginx's reuse of the connection)
    /own502       its own 502, with a forged X-Upstream-Cause header
    /forged-ok    200 with a forged X-Upstream-Cause header
    anything else 200 "ok"

Usage: faults.py [HOST:]PORT [MODE@HOST:PORT ...]   (default 127.0.0.1:9002).
The extra listeners act the same on every connection, whatever protocol
the client speaks (FastCGI, uwsgi, SCGI, gRPC): MODE `close` reads a little
and closes (FIN), `invalid` reads a little and answers an HTTP header with a
control byte in it. Standard library only; one thread per connection; every
connection ends within 120 s.
Each request's path is printed (for tests to wait on).
"""
import socket
import socketserver
import struct
import sys
import time

FORGED = b"X-Upstream-Cause: forged-by-backend\r\n"


def respond(status, body=b"ok\n", extra=b""):
    return (b"HTTP/1.1 " + status + b"\r\nContent-Type: text/plain\r\n" + extra +
            b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)


class Handler(socketserver.BaseRequestHandler):
    def read_request(self):
        self.request.settimeout(30)
        data = b""
        while b"\r\n\r\n" not in data and len(data) < 65536:
            chunk = self.request.recv(4096)
            if not chunk:
                break
            data += chunk
        line = data.split(b"\r\n", 1)[0].split(b" ")
        path = line[1].split(b"?", 1)[0] if len(line) > 1 else b"/"
        print(f"request {path.decode(errors='replace')}", flush=True)
        return path

    def handle(self):
        try:
            path = self.read_request()
        except OSError:
            return
        s = self.request
        try:
            if path == b"/close":
                return
            if path == b"/reset":
                # close here: socketserver would shut down (FIN) before closing
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()
                return
            if path == b"/half":
                s.sendall(b"HTTP/1.1 2")
                return
            if path == b"/silent":
                s.settimeout(120)
                try:
                    while s.recv(4096):
                        pass
                except OSError:
                    pass
                return
            if path == b"/invalid":
                s.sendall(b"HTTP/1.1 200 OK\r\nX-Bad\x01Header: x\r\nContent-Length: 0\r\n\r\n")
                return
            if path == b"/big":
                s.sendall(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 65536 + b"\r\nContent-Length: 0\r\n\r\n")
                return
            if path == b"/truncate":
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
                time.sleep(0.05)
                return
            if path == b"/truncate-chunked":
                s.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n")
                time.sleep(0.05)
                return
            if path == b"/stall-read":
                time.sleep(120)
                return
            if path == b"/ka":
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
                self.read_request()  # the reuse: read it, then close unanswered
                return
            if path == b"/own502":
                s.sendall(respond(b"502 Bad Gateway", b"the backend's own 502\n", FORGED))
                return
            if path == b"/forged-ok":
                s.sendall(respond(b"200 OK", b"ok\n", FORGED))
                return
            s.sendall(respond(b"200 OK"))
        except OSError:
            pass


class RawHandler(socketserver.BaseRequestHandler):
    mode = "close"

    def handle(self):
        s = self.request
        s.settimeout(5)
        try:
            s.recv(65536)
            if self.mode == "invalid":
                s.sendall(b"HTTP/1.1 200 OK\r\nX-Bad\x01Header: x\r\nContent-Length: 0\r\n\r\n")
                time.sleep(0.05)
        except OSError:
            pass


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def address(arg):
    host, _, port = arg.rpartition(":")
    return host or "127.0.0.1", int(port)


def serve(name, default, handler, mode_handler):
    """Listens on argv[1] (or `default`) with `handler`, and on each extra
    `MODE@HOST:PORT` argument with `mode_handler(mode)`; serves forever."""
    import threading
    for extra in sys.argv[2:]:
        mode, _, addr = extra.partition("@")
        srv = Server(address(addr), mode_handler(mode))
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        print(f"{name} ({mode}) listening on {addr}", flush=True)
    arg = sys.argv[1] if len(sys.argv) > 1 else default
    with Server(address(arg), handler) as srv:
        print(f"{name} listening on {arg}", flush=True)
        srv.serve_forever()


def main():
    serve("faults", "127.0.0.1:9002", Handler,
          lambda mode: type(f"Raw_{mode}", (RawHandler,), {"mode": mode}))


if __name__ == "__main__":
    main()
