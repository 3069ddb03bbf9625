#!/usr/bin/env python3
"""Fault backends for nginx's stream proxy (TCP and UDP): each listener acts
the same on every connection or datagram, whatever the client speaks.

    close@HOST:PORT     TCP: read the client's first bytes, close (FIN)
                        without sending one (a backend that crashed on the
                        request)
    reset@HOST:PORT     TCP: read the client's first bytes, reset (RST,
                        SO_LINGER 0)
    silent@HOST:PORT    TCP: read, then say nothing (closes after 120 s)
    echo@HOST:PORT      TCP: send back what it read, then close
    reset-on-signal@HOST:PORT  TCP: accept, read nothing, print "accepted";
                        on SIGUSR1 reset (RST) every connection it holds and
                        print "reset" once for each (a test decides when the
                        reset comes); later connections wait for the next
                        SIGUSR1
    udp-silent@HOST:PORT  UDP: read datagrams, never answer
    udp-echo@HOST:PORT    UDP: answer each datagram with itself

Usage: stream_faults.py MODE@HOST:PORT [...]. Standard library only; one
thread per connection; every connection ends within 120 s. Prints "ready"
once every listener is bound.
"""
import signal
import socket
import struct
import sys
import threading
import time

LIFETIME = 120.0
# reset-on-signal: each held connection's own event; SIGUSR1 sets those
# held now, so a later connection waits for the next signal
HELD = []
HELD_LOCK = threading.Lock()


def reset_held(*_):
    with HELD_LOCK:
        for event in HELD:
            event.set()
        HELD.clear()


def tcp_handler(mode, conn):
    conn.settimeout(LIFETIME)
    if mode == "reset-on-signal":
        event = threading.Event()
        with HELD_LOCK:
            HELD.append(event)
        print("accepted", flush=True)
        event.wait(LIFETIME)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
        print("reset", flush=True)
        return
    try:
        data = conn.recv(65536)
        if mode == "close":
            pass
        elif mode == "reset":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif mode == "silent":
            deadline = time.monotonic() + LIFETIME
            while time.monotonic() < deadline and conn.recv(65536):
                pass
        elif mode == "echo":
            conn.sendall(data)
    except OSError:
        pass
    finally:
        conn.close()


def tcp_listener(mode, sock):
    while True:
        conn, _ = sock.accept()
        threading.Thread(target=tcp_handler, args=(mode, conn), daemon=True).start()


def udp_listener(mode, sock):
    while True:
        data, peer = sock.recvfrom(65536)
        if mode == "udp-echo":
            sock.sendto(data, peer)


def main(specs):
    threads = []
    for spec in specs:
        mode, _, addr = spec.partition("@")
        host, _, port = addr.rpartition(":")
        if mode.startswith("udp-"):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((host, int(port)))
            threads.append(threading.Thread(target=udp_listener, args=(mode, sock), daemon=True))
        elif mode in ("close", "reset", "silent", "echo", "reset-on-signal"):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, int(port)))
            sock.listen(64)
            threads.append(threading.Thread(target=tcp_listener, args=(mode, sock), daemon=True))
        else:
            sys.exit(f"unknown mode {mode!r}")
    signal.signal(signal.SIGUSR1, reset_held)
    for t in threads:
        t.start()
    print("ready", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main(sys.argv[1:])
