"""Small, fast HTTP clients over plain sockets, to 127.0.0.1 only.

H1Conn speaks HTTP/1.0 and HTTP/1.1 (keep-alive: several requests on one
connection); H2Conn speaks HTTP/2 with prior knowledge (cleartext), with the
hpack package (Debian: python3-hpack) for the header blocks. Both can abort
on purpose: mid-request (half the body, then close), mid-response (part of
the body, then close) and before the response (the client leaves while the
upstream is silent: nginx's 499).

A request's outcome is a Result. `lost` means the server closed the
connection (or refused the HTTP/2 stream with a GOAWAY below it) before a
single byte of the response: the request was never processed (an idle
keep-alive connection closed by a worker that shuts down at a reload or an
upgrade) and nginx did not log it; the driver retries such a request under a
new request id, as HTTP clients do.
"""
import socket
import struct
import time

from hpack import Decoder, Encoder

HOST = "127.0.0.1"
TIMEOUT = 20.0
KEEP_BODY = 4096  # bodies up to this size are kept (to compare them)


class Result:
    __slots__ = ("status", "cause_hdr", "body", "body_len", "truncated", "lost", "error", "aborted", "proto")

    def __init__(self):
        self.status = None      # int, or None when no response was seen
        self.cause_hdr = []     # every value of the cause header
        self.body = b""         # the body when at most KEEP_BODY bytes
        self.body_len = 0
        self.truncated = False  # the response began but ended early
        self.lost = False       # not a byte of the response: never processed
        self.error = None       # a client-side error that is not one of the above
        self.aborted = False    # we closed on purpose
        self.proto = None


class ConnectionLost(Exception):
    pass


def connect(port, timeout=TIMEOUT):
    s = socket.create_connection((HOST, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def hard_close(sock):
    """Close with an RST (SO_LINGER 0): what a client killed mid-way does."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class Conn:
    """A client connection: `sock`, and whether another request may go on it."""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
        self.reusable = False


# --- HTTP/1.x ------------------------------------------------------------

class H1Conn(Conn):
    """One HTTP/1.x connection. version "1.0": one request, then the server
    closes; "1.1": keep-alive until either side says close."""

    def __init__(self, port, version="1.1", cause_header=b"x-upstream-cause"):
        self.port = port
        self.version = version
        self.sock = connect(port)
        self.buf = b""
        self.reusable = True
        self.requests = 0
        self.hname = cause_header

    def _recv(self):
        data = self.sock.recv(262144)
        if not data:
            raise ConnectionLost("eof")
        self.buf += data

    def request(self, method, uri, body=None, abort=None, abort_arg=0):
        """abort: None; "mid-request" (send half the body, close);
        "before-response" (send, wait abort_arg s, close); "mid-response"
        (read the header and abort_arg body bytes, close)."""
        res = self.send(method, uri, body, abort, abort_arg)
        if res.aborted or res.lost or res.error:
            return res
        return self.receive(res, method, abort, abort_arg)

    def send(self, method, uri, body=None, abort=None, abort_arg=0):
        res = Result()
        res.proto = "HTTP/" + self.version
        self.requests += 1
        head = f"{method} {uri} HTTP/{self.version}\r\nHost: storm\r\n"
        if body is not None:
            head += f"Content-Length: {len(body)}\r\n"
        head = head.encode() + b"\r\n"
        try:
            self.sock.sendall(head)
            if abort == "mid-request":
                self.sock.sendall(body[:len(body) // 2])
                time.sleep(0.01)
                res.aborted = True
                hard_close(self.sock)
                self.reusable = False
                return res
            if body:
                self.sock.sendall(body)
            if abort == "before-response":
                time.sleep(abort_arg)
                res.aborted = True
                self.sock.close()
                self.reusable = False
        except (ConnectionResetError, BrokenPipeError):
            # the server had closed the connection: nothing was processed
            # (the response to an earlier request cannot be pending here)
            res.lost = True
            self.close()
        except OSError as exc:
            res.error = f"sending: {type(exc).__name__}: {exc}"
            self.close()
        return res

    def receive(self, res, method="GET", abort=None, abort_arg=0):
        try:
            # the header
            while True:
                end = self.buf.find(b"\r\n\r\n")
                if end >= 0:
                    break
                self._recv()
            lines = self.buf[:end].split(b"\r\n")
            self.buf = self.buf[end + 4:]
            status_line = lines[0].split(b" ", 2)
            res.status = int(status_line[1])
            length = None
            chunked = False
            close = self.version == "1.0"
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                value = value.strip()
                if name == self.hname:
                    res.cause_hdr.append(value.decode("latin-1"))
                elif name == b"content-length":
                    length = int(value)
                elif name == b"transfer-encoding":
                    chunked = b"chunked" in value.lower()
                elif name == b"connection":
                    v = value.lower()
                    if b"close" in v:
                        close = True
                    elif b"keep-alive" in v:
                        close = False
            if method == "HEAD" or res.status in (204, 304) or 100 <= res.status < 200:
                length, chunked = 0, False
            if abort == "mid-response":
                while len(self.buf) < abort_arg:
                    self._recv()
                res.aborted = True
                res.body_len = len(self.buf)
                hard_close(self.sock)
                self.reusable = False
                return res
            self._read_body(res, length, chunked)
            if close or (length is None and not chunked):
                self.close()
        except (ConnectionLost, ConnectionResetError, BrokenPipeError) as exc:
            if res.status is None and not self.buf:
                # not a byte of the response: a worker that shuts down
                # closes the idle connections (and the connections it
                # accepted but had not read from yet) without reading them
                res.lost = True
            elif res.status is not None:
                res.truncated = True
            else:
                res.error = f"{type(exc).__name__} inside the response header: {self.buf[:200]!r}"
            self.close()
        except socket.timeout:
            res.error = f"client timeout after {TIMEOUT}s (status {res.status})"
            self.close()
        except (OSError, ValueError, IndexError) as exc:
            res.error = f"{type(exc).__name__}: {exc}"
            self.close()
        return res

    def _read_body(self, res, length, chunked):
        if chunked:
            parts = []
            total = 0
            while True:
                while True:
                    nl = self.buf.find(b"\r\n")
                    if nl >= 0:
                        break
                    self._recv()
                size = int(self.buf[:nl].split(b";")[0], 16)
                self.buf = self.buf[nl + 2:]
                if size == 0:
                    while len(self.buf) < 2:
                        self._recv()
                    self.buf = self.buf[2:]  # no trailers from nginx
                    break
                while len(self.buf) < size + 2:
                    self._recv()
                if total + size <= KEEP_BODY:
                    parts.append(self.buf[:size])
                total += size
                self.buf = self.buf[size + 2:]
            res.body_len = total
            if total <= KEEP_BODY:
                res.body = b"".join(parts)
            return
        if length is not None:
            try:
                while len(self.buf) < length:
                    self._recv()
            except ConnectionLost:
                res.body_len = len(self.buf)
                raise
            body, self.buf = self.buf[:length], self.buf[length:]
            res.body_len = length
            if length <= KEEP_BODY:
                res.body = body
            return
        # close-delimited
        try:
            while True:
                self._recv()
        except ConnectionLost:
            pass
        res.body_len = len(self.buf)
        if res.body_len <= KEEP_BODY:
            res.body = self.buf
        self.buf = b""


# --- HTTP/2 --------------------------------------------------------------

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
CANCEL = 8
MAX_WINDOW = 2 ** 31 - 1
H2_MAX_BODY = 32768  # under nginx's initial stream window (64k): no send-side flow control needed


def frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes((ftype, flags)) + struct.pack(">I", stream) + payload


class H2Conn(Conn):
    """HTTP/2 with prior knowledge; one stream at a time. Our receive
    windows are opened to the maximum at once, so nothing needs a
    WINDOW_UPDATE from us."""

    def __init__(self, port, cause_header="x-upstream-cause"):
        self.port = port
        self.sock = connect(port)
        self.buf = b""
        self.enc = Encoder()
        self.dec = Decoder()
        self.dec.max_allowed_table_size = 65536
        self.next_id = 1
        self.reusable = True
        self.requests = 0
        self.goaway_last = None
        self.hname = cause_header
        # SETTINGS: INITIAL_WINDOW_SIZE (4) = max; then the connection window
        self.sock.sendall(PREFACE + frame(SETTINGS, 0, 0, struct.pack(">HI", 4, MAX_WINDOW))
                          + frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", MAX_WINDOW - 65535)))
        self.pending_block = {}


    def _need(self, n):
        while len(self.buf) < n:
            data = self.sock.recv(262144)
            if not data:
                raise ConnectionLost("eof")
            self.buf += data

    def _frame(self):
        self._need(9)
        length = int.from_bytes(self.buf[:3], "big")
        ftype, flags = self.buf[3], self.buf[4]
        stream = struct.unpack(">I", self.buf[5:9])[0] & 0x7FFFFFFF
        self._need(9 + length)
        payload = self.buf[9:9 + length]
        self.buf = self.buf[9 + length:]
        return ftype, flags, stream, payload

    def _decode_block(self, stream, flags, payload, ftype):
        """Every header block is decoded (the HPACK table is the
        connection's), ours or not. Returns the headers once complete."""
        if ftype == HEADERS:
            if flags & PADDED:
                pad, payload = payload[0], payload[1:]
                payload = payload[:len(payload) - pad]
            if flags & PRIORITY_FLAG:
                payload = payload[5:]
            block = payload
        else:
            block = self.pending_block.pop(stream, b"") + payload
        if not flags & END_HEADERS:
            self.pending_block[stream] = block
            return None
        return self.dec.decode(block)

    def cancel(self, stream):
        self.sock.sendall(frame(RST_STREAM, 0, stream, struct.pack(">I", CANCEL)))

    def _refused_before(self, stream):
        """After a cancel, whether nginx had refused the stream unprocessed
        (a GOAWAY whose last stream id is below it: a worker shutting down
        after a reload): a PING goes after our frames, and what comes
        before its ACK tells. The connection stays usable otherwise."""
        try:
            self.sock.sendall(frame(PING, 0, 0, b"cancelck"))
            while True:
                ftype, flags, sid, payload = self._frame()
                if ftype == PING and flags & ACK and payload == b"cancelck":
                    return False
                if ftype == GOAWAY:
                    self.goaway_last = struct.unpack(">I", payload[:4])[0] & 0x7FFFFFFF
                    self.reusable = False
                    return stream > self.goaway_last
                if ftype == SETTINGS and not flags & ACK:
                    self.sock.sendall(frame(SETTINGS, ACK, 0))
                elif ftype in (HEADERS, CONTINUATION):
                    self._decode_block(sid, flags, payload, ftype)  # keep the HPACK table in step
        except (ConnectionLost, OSError):
            self.reusable = False
            return False

    def request(self, method, uri, body=None, abort=None, abort_arg=0):
        """abort: None, or "before-response" (RST_STREAM CANCEL after
        abort_arg s; the connection goes on)."""
        res = Result()
        res.proto = "HTTP/2.0"
        stream = self.next_id
        self.next_id += 2
        self.requests += 1
        hdrs = [(":method", method), (":scheme", "http"), (":authority", "storm"), (":path", uri)]
        if body is not None:
            hdrs.append(("content-length", str(len(body))))
        block = self.enc.encode(hdrs)
        try:
            out = frame(HEADERS, END_HEADERS | (0 if body else END_STREAM), stream, block)
            if body:
                for i in range(0, len(body), 16384):
                    last = i + 16384 >= len(body)
                    out += frame(DATA, END_STREAM if last else 0, stream, body[i:i + 16384])
            self.sock.sendall(out)
            if abort == "before-response":
                time.sleep(abort_arg)
                self.cancel(stream)
                res.aborted = True
                res.lost = self._refused_before(stream)
                return res
            parts = []
            while True:
                ftype, flags, sid, payload = self._frame()
                if ftype in (HEADERS, CONTINUATION):
                    headers = self._decode_block(sid, flags, payload, ftype)
                    if sid == stream and headers is not None:
                        for name, value in headers:
                            name = name if isinstance(name, str) else name.decode()
                            value = value if isinstance(value, str) else value.decode("latin-1")
                            if name == ":status":
                                st = int(value)
                                if st >= 200:
                                    res.status = st
                            elif name == self.hname and res.status is not None:
                                res.cause_hdr.append(value)
                    if sid == stream and flags & END_STREAM and res.status is not None:
                        break
                elif ftype == DATA:
                    if sid == stream:
                        res.body_len += len(payload)
                        if res.body_len <= KEEP_BODY:
                            parts.append(payload)
                        if flags & END_STREAM:
                            break
                elif ftype == RST_STREAM:
                    if sid == stream:
                        if res.status is None:
                            res.error = f"RST_STREAM {struct.unpack('>I', payload)[0]} before the response"
                        else:
                            res.truncated = True
                        break
                elif ftype == SETTINGS:
                    if not flags & ACK:
                        self.sock.sendall(frame(SETTINGS, ACK, 0))
                elif ftype == PING:
                    if not flags & ACK:
                        self.sock.sendall(frame(PING, ACK, 0, payload))
                elif ftype == GOAWAY:
                    last = struct.unpack(">I", payload[:4])[0] & 0x7FFFFFFF
                    self.goaway_last = last
                    self.reusable = False
                    if stream > last and res.status is None:
                        res.lost = True  # not processed: safe to retry
                        self.close()
                        return res
            if res.body_len <= KEEP_BODY:
                res.body = b"".join(parts)
        except ConnectionLost:
            if res.status is None:
                # closed before any byte of ours: never processed
                res.lost = True
            else:
                res.truncated = True
            self.close()
        except (ConnectionResetError, BrokenPipeError):
            if res.status is None:
                res.lost = True
            else:
                res.truncated = True
            self.close()
        except socket.timeout:
            res.error = f"client timeout after {TIMEOUT}s (status {res.status})"
            self.close()
        except Exception as exc:  # hpack errors, malformed frames
            res.error = f"{type(exc).__name__}: {exc}"
            self.close()
        return res
