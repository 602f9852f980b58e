#!/usr/bin/env python3
"""Clients for bench/faults.sh that wrk cannot play.

  fault_clients.py balancer PORT ADMIN_PORT PID [CLIENTS]
      CLIENTS connections of a load balancer: requests on kept-alive
      connections; after an answer with `Connection: close` (or a refused
      connection) they ask /health/ready and stop using this replica once
      it is 503. After 1.5 s, SIGTERM to PID. Prints "ok=N lost=N refused=N":
      lost = sent on an open connection, then closed without an answer.

  fault_clients.py slow PORT [PATH]
      One request on a kept-alive connection, then the next request head one
      byte per second. Prints "held=SECONDS answer=FIRST_LINE" (held: until
      the gateway answered or closed; capped at 60 s).
"""
import socket
import subprocess
import sys
import threading
import time
import urllib.request


def read_response(sock):
    """One response (head + Content-Length body); its lower-cased head."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise OSError("closed before an answer")
        buf += data
    head, rest = buf.split(b"\r\n\r\n", 1)
    head = head.lower()
    length = 0
    for line in head.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    while len(rest) < length:
        data = sock.recv(65536)
        if not data:
            raise OSError("closed mid-body")
        rest += data
    return head


def balancer(port, admin, pid, clients=64):
    stats = {"ok": 0, "lost": 0, "refused": 0}
    lock = threading.Lock()
    request = b"GET /hello HTTP/1.1\r\nHost: bench\r\n\r\n"

    def ready():
        try:
            url = "http://127.0.0.1:%d/health/ready" % admin
            return urllib.request.urlopen(url, timeout=1).status == 200
        except Exception:
            return False

    def connection():
        sock = None
        while True:
            if sock is None:
                if not ready():
                    return
                try:
                    sock = socket.create_connection(("127.0.0.1", port))
                except OSError:
                    with lock:
                        stats["refused"] += 1
                    return
            try:
                sock.sendall(request)
            except OSError:
                sock.close()
                sock = None
                continue
            try:
                head = read_response(sock)
                with lock:
                    stats["ok"] += 1
                if b"connection: close" in head:
                    sock.close()
                    sock = None
            except OSError:
                with lock:
                    stats["lost"] += 1
                sock.close()
                sock = None

    threads = [threading.Thread(target=connection) for _ in range(clients)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    subprocess.run(["kill", "-TERM", str(pid)], check=False)
    for t in threads:
        t.join()
    print("ok=%d lost=%d refused=%d" % (stats["ok"], stats["lost"], stats["refused"]))


def slow(port, path="/hello"):
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"GET %s HTTP/1.1\r\nHost: bench\r\n\r\n" % path.encode())
    read_response(sock)
    sock.settimeout(1.0)
    started = time.time()
    head = b"GET %s HTTP/1.1\r\nHost: bench\r\nX-Slow: " % path.encode()
    answer = b""
    for byte in head + b"a" * 100:
        if time.time() - started > 60:
            break
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            break
        try:
            data = sock.recv(4096)
            answer = data or b"(closed)"
            break
        except socket.timeout:
            pass
    held = time.time() - started
    first = answer.split(b"\r\n")[0].decode(errors="replace") or "(none: still open)"
    print("held=%.1f answer=%s" % (held, first))


if __name__ == "__main__":
    if len(sys.argv) >= 5 and sys.argv[1] == "balancer":
        balancer(*(int(a) for a in sys.argv[2:6]))
    elif len(sys.argv) >= 3 and sys.argv[1] == "slow":
        slow(int(sys.argv[2]), *sys.argv[3:4])
    else:
        sys.exit(__doc__)
