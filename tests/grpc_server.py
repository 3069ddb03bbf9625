#!/usr/bin/env python3
"""A tiny real gRPC server (Debian's python3-grpcio), for the tests of a gRPC
upstream that goes away in the middle of a call. No .proto: a generic
handler with identity (de)serializers, so messages are raw bytes.

    /test.Echo/Ok      answers the request message back
    /test.Echo/Sleep   prints `call /test.Echo/Sleep`, then sleeps (up to
                       60 s, less if the server stops) and answers `slept`

SIGTERM stops the server from inside: `server.stop(0)`, which cancels the
calls in flight, then the process exits. (SIGKILL is the other way a test
stops it.) The process ends by itself after 300 s whatever happens.

Usage: grpc_server.py PORT   (listens on 127.0.0.1:PORT)
"""
import signal
import sys
import threading
from concurrent import futures

import grpc

LIFETIME = 300.0
SLEEP = 60.0

stopping = threading.Event()


def ok(request, context):
    print("call /test.Echo/Ok", flush=True)
    return request


def sleep(request, context):
    print("call /test.Echo/Sleep", flush=True)
    stopping.wait(SLEEP)
    return b"slept"


def main():
    port = int(sys.argv[1])
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Echo", {
        "Ok": grpc.unary_unary_rpc_method_handler(ok),
        "Sleep": grpc.unary_unary_rpc_method_handler(sleep),
    }),))
    if server.add_insecure_port(f"127.0.0.1:{port}") != port:
        sys.exit(f"cannot listen on 127.0.0.1:{port}")

    def on_term(signum, frame):
        print("stopping: server.stop(0)", flush=True)
        server.stop(0)

    signal.signal(signal.SIGTERM, on_term)
    server.start()
    print(f"grpc server listening on 127.0.0.1:{port}", flush=True)
    timed_out = server.wait_for_termination(LIFETIME)
    stopping.set()
    if timed_out:
        server.stop(0)
    print("stopped", flush=True)


if __name__ == "__main__":
    main()
