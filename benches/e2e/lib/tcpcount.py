#!/usr/bin/env python3
"""A loopback TCP forwarder that counts the bytes going each way.

Usage: tcpcount.py TARGET_PORT PORT_FILE STATS_FILE

Listens on a free 127.0.0.1 port (written to PORT_FILE once listening) and
forwards every connection to 127.0.0.1:TARGET_PORT. STATS_FILE always holds
one line "UP DOWN ACTIVE": bytes sent by clients (pushes: blob uploads,
manifests), bytes sent back by the server (pulls), and connections still
open. It is rewritten atomically whenever a connection closes, so a reader
that waits for ACTIVE == 0 after a builder exits sees the final totals.

Why a forwarder: the registry's own logs give response sizes only, and its
storage deduplicates blobs, so neither says how many bytes a builder sent.
"""

import os
import socket
import sys
import threading

BUF = 1 << 20


class Counters:
    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()
        self.up = 0
        self.down = 0
        self.active = 0
        self.write()

    def add(self, up, down):
        with self.lock:
            self.up += up
            self.down += down

    def opened(self):
        with self.lock:
            self.active += 1
            self.write_locked()

    def closed(self):
        with self.lock:
            self.active -= 1
            self.write_locked()

    def write(self):
        with self.lock:
            self.write_locked()

    def write_locked(self):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{self.up} {self.down} {self.active}\n")
        os.rename(tmp, self.path)


def pump(src, dst, counters, upstream, done):
    buf = bytearray(BUF)
    view = memoryview(buf)
    try:
        while True:
            n = src.recv_into(buf)
            if n == 0:
                break
            dst.sendall(view[:n])
            if upstream:
                counters.add(n, 0)
            else:
                counters.add(0, n)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        done.release()


def serve(client, target_port, counters):
    counters.opened()
    try:
        server = socket.create_connection(("127.0.0.1", target_port))
    except OSError:
        client.close()
        counters.closed()
        return
    done = threading.Semaphore(0)
    for src, dst, up in ((client, server, True), (server, client, False)):
        threading.Thread(target=pump, args=(src, dst, counters, up, done), daemon=True).start()
    done.acquire()
    done.acquire()
    client.close()
    server.close()
    counters.closed()


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: tcpcount.py TARGET_PORT PORT_FILE STATS_FILE")
    target_port = int(sys.argv[1])
    counters = Counters(sys.argv[3])
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    tmp = sys.argv[2] + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{listener.getsockname()[1]}\n")
    os.rename(tmp, sys.argv[2])
    while True:
        client, _ = listener.accept()
        threading.Thread(target=serve, args=(client, target_port, counters), daemon=True).start()


if __name__ == "__main__":
    main()
