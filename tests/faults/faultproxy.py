#!/usr/bin/env python3
"""A TCP proxy for the fault tests: forwards 127.0.0.1:LISTEN to 127.0.0.1:TARGET.

Faults, from the test (by signal, so that a frozen proxy needs no cooperation of its own):
  SIGSTOP / SIGCONT  freeze / thaw: nothing is forwarded and every socket stays open (no FIN,
                     no RST); the kernel still accepts connections and ACKs data until its
                     buffers fill, like a path whose packets stop coming back, or a paused server
  SIGUSR1            cut: every open connection is reset (RST, both sides); new ones still work
  SIGTERM            exit

Prints "listening PORT" once ready. One thread, non-blocking sockets.
"""
import errno
import selectors
import signal
import socket
import struct
import sys

listen_port, target_port = int(sys.argv[1]), int(sys.argv[2])
sel = selectors.DefaultSelector()
peer = {}  # socket -> the other side
pending = {}  # socket -> bytes not yet written to it
cut_requested = False


def on_usr1(signum, frame):
    global cut_requested
    cut_requested = True


def close_pair(s, reset=False):
    for x in (s, peer.get(s)):
        if x is None or x not in peer:
            continue
        if reset:
            x.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        try:
            sel.unregister(x)
        except (KeyError, ValueError):
            pass
        x.close()
        peer.pop(x, None)
        pending.pop(x, None)


def interest(s):
    ev = selectors.EVENT_READ
    if pending.get(s):
        ev |= selectors.EVENT_WRITE
    # Back-pressure: stop reading a side while the other side has a backlog.
    other = peer.get(s)
    if other is not None and len(pending.get(other, b"")) > 1 << 20:
        ev &= ~selectors.EVENT_READ
    return ev


def refresh(s):
    if s in peer:
        ev = interest(s)
        if ev:
            sel.modify(s, ev, "conn")
        else:
            sel.modify(s, selectors.EVENT_WRITE, "conn")  # never empty; write is harmless


signal.signal(signal.SIGUSR1, on_usr1)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", listen_port))
ls.listen(128)
ls.setblocking(False)
sel.register(ls, selectors.EVENT_READ, "listen")
print("listening", listen_port, flush=True)

while True:
    if cut_requested:
        cut_requested = False
        for s in list(peer):
            close_pair(s, reset=True)
    try:
        events = sel.select(0.2)
    except InterruptedError:
        continue
    for key, mask in events:
        s = key.fileobj
        if key.data == "listen":
            try:
                c, _ = ls.accept()
            except OSError:
                continue
            u = socket.socket()
            try:
                u.connect(("127.0.0.1", target_port))
            except OSError:
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                c.close()
                u.close()
                continue
            for x in (c, u):
                x.setblocking(False)
                x.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            peer[c], peer[u] = u, c
            sel.register(c, selectors.EVENT_READ, "conn")
            sel.register(u, selectors.EVENT_READ, "conn")
            continue
        if s not in peer:
            continue
        other = peer[s]
        if mask & selectors.EVENT_READ:
            try:
                data = s.recv(65536)
            except BlockingIOError:
                data = None
            except OSError:
                close_pair(s, reset=True)
                continue
            if data == b"":
                # Hand on what the other side still has to get (an error message before a
                # close), then close both.
                rest = pending.get(other, b"")
                if rest:
                    try:
                        other.setblocking(True)
                        other.settimeout(2)
                        other.sendall(rest)
                    except OSError:
                        pass
                close_pair(s)
                continue
            if data:
                rest = pending.get(other, b"") + data
                if len(rest) == len(data):
                    try:
                        n = other.send(rest)
                        rest = rest[n:]
                    except BlockingIOError:
                        pass
                    except OSError:
                        close_pair(s, reset=True)
                        continue
                pending[other] = rest
                refresh(other)
                refresh(s)
        if s in peer and mask & selectors.EVENT_WRITE and pending.get(s):
            try:
                n = s.send(pending[s])
                pending[s] = pending[s][n:]
            except BlockingIOError:
                pass
            except OSError as e:
                close_pair(s, reset=e.errno != errno.EPIPE)
                continue
            refresh(s)
            if other in peer:
                refresh(other)
