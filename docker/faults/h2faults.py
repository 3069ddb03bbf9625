#!/usr/bin/env python3
"""An HTTP/2 fault upstream: a cleartext (prior knowledge) HTTP/2 server, as
nginx's grpc_pass and `proxy_http_version 2` speak to it, that fails on
purpose. The request path's first segment picks the mode (`/refused` and
`/refused/anything` alike):

    /refused      RST_STREAM REFUSED_STREAM (7) on the request's stream,
                  before any HEADERS
    /internal     RST_STREAM INTERNAL_ERROR (2), before any HEADERS
    /goaway       GOAWAY, last stream id 0 (below ours), NO_ERROR (0), close
    /goaway-error GOAWAY, last stream id 0, INTERNAL_ERROR (2), close
    /close        close the connection (FIN) before any response header
    /early-end    HEADERS `:status 103` with END_STREAM: the stream ends
                  with only an interim header
    anything else `ok`: 200 with a small body; for a gRPC request
                  (content-type application/grpc) `content-type:
                  application/grpc`, one message and the trailer
                  `grpc-status: 0`

Usage: h2faults.py [HOST:]PORT [MODE@HOST:PORT ...]   (default 127.0.0.1:9003).
gRPC paths look like /pkg.Service/Method, so an extra listener MODE@HOST:PORT
acts as MODE on every request, whatever the path.

On each connection: the client preface, our (empty) SETTINGS, an ACK to each
of the client's SETTINGS and PINGs; a request is acted upon once it is
complete (END_STREAM on its HEADERS or last DATA). Closing (`close`, the
GOAWAYs) is a FIN after the client's bytes were read, then a drain until the
client closes too, so the kernel never turns it into an RST. Response headers
are HPACK static-table indexed fields or literals without indexing (no
Huffman); python3-hpack (Debian: `apt-get install python3-hpack`) decodes the
request headers. One thread per connection; every connection ends within
60 s. Each request is printed as `request <path> stream <id>` (for tests to
wait on).
"""
import socket
import socketserver
import struct
import sys
import threading
import time

from faults import serve  # the listeners, as the HTTP/1 fault upstream has them

try:
    from hpack import Decoder
except ImportError:  # pragma: no cover - said once, at start
    Decoder = None

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
CONNECTION_LIFETIME = 60.0

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
NO_ERROR, INTERNAL_ERROR, REFUSED_STREAM = 0, 2, 7

MODES = ("refused", "internal", "goaway", "goaway-error", "close", "early-end", "ok")


def frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes((ftype, flags)) + struct.pack(">I", stream) + payload


def hpack_int(value, prefix_bits, pattern=0):
    """RFC 7541 5.1: an integer with an N-bit prefix, `pattern` in the high bits."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((pattern | value,))
    out = bytearray((pattern | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_string(s):
    s = s.encode() if isinstance(s, str) else s
    return hpack_int(len(s), 7) + s  # H bit 0: no Huffman


def indexed(index):
    """An indexed field (static table), e.g. 8 = `:status 200`."""
    return hpack_int(index, 7, 0x80)


def literal(name_or_index, value):
    """A literal field without indexing: by static-table name index, or a new name."""
    if isinstance(name_or_index, int):
        return hpack_int(name_or_index, 4) + hpack_string(value)
    return b"\x00" + hpack_string(name_or_index) + hpack_string(value)


# static table indices (RFC 7541 appendix A)
STATUS_200, STATUS = 8, 8
CONTENT_LENGTH, CONTENT_TYPE = 28, 31


class Conn:
    """One HTTP/2 connection: reads frames with a deadline."""

    def __init__(self, sock, forced_mode):
        self.sock = sock
        self.forced_mode = forced_mode
        self.deadline = time.monotonic() + CONNECTION_LIFETIME
        self.buf = b""
        self.decoder = Decoder()
        self.streams = {}  # id -> {"block": bytes, "headers": list|None, "ended": bool}
        self.lock = threading.Lock()

    def recv_exact(self, n):
        while len(self.buf) < n:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("connection lifetime over")
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_frame(self):
        head = self.recv_exact(9)
        length = int.from_bytes(head[:3], "big")
        ftype, flags = head[3], head[4]
        stream = struct.unpack(">I", head[5:9])[0] & 0x7FFFFFFF
        return ftype, flags, stream, self.recv_exact(length)

    def send(self, data):
        self.sock.sendall(data)

    def finish(self):
        """FIN, then read until the client closes (bounded by the deadline):
        no unread byte is left for the kernel to answer with an RST."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
            while True:
                left = self.deadline - time.monotonic()
                if left <= 0:
                    return
                self.sock.settimeout(left)
                if not self.sock.recv(65536):
                    return
        except OSError:
            return

    # --- the protocol ---------------------------------------------------

    def run(self):
        if self.recv_exact(len(PREFACE)) != PREFACE:
            return
        self.send(frame(SETTINGS, 0, 0))
        while True:
            ftype, flags, stream, payload = self.read_frame()
            if ftype == SETTINGS:
                if not flags & ACK:
                    self.send(frame(SETTINGS, ACK, 0))
            elif ftype == PING:
                if not flags & ACK:
                    self.send(frame(PING, ACK, 0, payload))
            elif ftype == GOAWAY:
                self.finish()
                return
            elif ftype in (HEADERS, CONTINUATION):
                if ftype == HEADERS:
                    payload = self.strip_headers_payload(flags, payload)
                    st = self.streams.setdefault(stream, {"block": b"", "headers": None, "ended": False})
                    st["ended"] = bool(flags & END_STREAM) or st["ended"]
                else:
                    st = self.streams.get(stream)
                    if st is None:
                        return
                st["block"] += payload
                if flags & END_HEADERS:
                    headers = self.decoder.decode(st["block"])
                    st["block"] = b""
                    if st["headers"] is None:
                        st["headers"] = headers
                    # a later block is the request's trailers: nothing to keep
            elif ftype == DATA:
                if PADDED & flags and payload:
                    payload = payload[1:len(payload) - payload[0]]
                if payload:
                    increment = struct.pack(">I", len(payload))
                    self.send(frame(WINDOW_UPDATE, 0, 0, increment) + frame(WINDOW_UPDATE, 0, stream, increment))
                st = self.streams.get(stream)
                if st is not None and flags & END_STREAM:
                    st["ended"] = True
            elif ftype == RST_STREAM:
                self.streams.pop(stream, None)
            # PRIORITY, WINDOW_UPDATE, unknown types: nothing to do

            st = self.streams.get(stream)
            if st is not None and st["headers"] is not None and st["ended"]:
                del self.streams[stream]
                if not self.act(stream, dict(st["headers"])):
                    return

    @staticmethod
    def strip_headers_payload(flags, payload):
        pad = 0
        if flags & PADDED:
            pad, payload = payload[0], payload[1:]
        if flags & PRIORITY_FLAG:
            payload = payload[5:]
        return payload[:len(payload) - pad] if pad else payload

    def act(self, stream, headers):
        """Answer one complete request; False when the connection is over."""
        path = headers.get(":path", "/")
        print(f"request {path} stream {stream}", flush=True)
        mode = self.forced_mode or path.split("?", 1)[0].lstrip("/").split("/", 1)[0]
        if mode == "refused":
            self.send(frame(RST_STREAM, 0, stream, struct.pack(">I", REFUSED_STREAM)))
        elif mode == "internal":
            self.send(frame(RST_STREAM, 0, stream, struct.pack(">I", INTERNAL_ERROR)))
        elif mode in ("goaway", "goaway-error"):
            error = NO_ERROR if mode == "goaway" else INTERNAL_ERROR
            self.send(frame(GOAWAY, 0, 0, struct.pack(">II", 0, error)))
            self.finish()
            return False
        elif mode == "close":
            self.finish()
            return False
        elif mode == "early-end":
            block = literal(STATUS, "103")
            self.send(frame(HEADERS, END_HEADERS | END_STREAM, stream, block))
        elif headers.get("content-type", "").startswith("application/grpc"):
            message = b"ok"
            block = indexed(STATUS_200) + literal(CONTENT_TYPE, "application/grpc")
            self.send(frame(HEADERS, END_HEADERS, stream, block)
                      + frame(DATA, 0, stream, b"\x00" + struct.pack(">I", len(message)) + message)
                      + frame(HEADERS, END_HEADERS | END_STREAM, stream, literal("grpc-status", "0")))
        else:
            body = b"ok\n"
            block = (indexed(STATUS_200) + literal(CONTENT_TYPE, "text/plain")
                     + literal(CONTENT_LENGTH, str(len(body))))
            self.send(frame(HEADERS, END_HEADERS, stream, block) + frame(DATA, END_STREAM, stream, body))
        return True


class Handler(socketserver.BaseRequestHandler):
    mode = None  # forced by an extra listener

    def handle(self):
        conn = Conn(self.request, self.mode)
        try:
            conn.run()
        except (OSError, EOFError, TimeoutError):
            pass
        except Exception as exc:  # a decoding error: say it, drop the connection
            print(f"error {type(exc).__name__}: {exc}", flush=True)


def handler_for(mode):
    if mode not in MODES:
        sys.exit(f"unknown mode {mode!r}: one of {', '.join(MODES)}")
    return type(f"Handler_{mode}", (Handler,), {"mode": mode})


def main():
    if Decoder is None:
        sys.exit("h2faults.py needs the hpack package (Debian: apt-get install python3-hpack)")
    serve("h2faults", "127.0.0.1:9003", Handler, handler_for)


if __name__ == "__main__":
    main()
