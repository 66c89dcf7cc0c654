"""Hostile load against ``dicomdesk serve``: 200 connections at once, then slowloris peers.

Prints the server's threads and RSS (from /proc/<pid>/status) before, at the peak and after,
how the 200 connections were answered (A-ASSOCIATE-AC / -RJ local limit exceeded / closed), how
long the slowloris peers were tolerated, and whether an echo works afterwards.

    .venv/bin/python bench/hostile_load.py [--connections 200] [--slow 20] [--idle 2]
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "security"))

from serving import RawAssociation, ServeProcess, associate_rq, echo_ok, p_data, read_pdu  # noqa: E402


def figures(server: ServeProcess) -> str:
    return f"threads {server.threads()}, RSS {server.status_field('VmRSS') / 1024:.1f} MiB"


def burst(server: ServeProcess, count: int) -> None:
    rq = associate_rq()
    socks, outcome = [], {"accepted": 0, "rejected": 0, "closed": 0}
    started = time.monotonic()
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        try:
            sock.sendall(rq)
        except OSError:
            pass
        socks.append(sock)
    for sock in socks:
        answer = read_pdu(sock)
        outcome[{b"\x02": "accepted", b"\x03": "rejected"}.get(answer[:1], "closed")] += 1
    print(f"{count} connections at once: {outcome} in {time.monotonic() - started:.2f} s; peak {figures(server)}")
    for sock in socks:
        sock.close()


def slowloris(server: ServeProcess, count: int) -> None:
    lasted: list[float] = []

    def one() -> None:
        raw = RawAssociation(server.port)
        message = p_data(1, b"\x00" * 64, command=True, last=True)
        started = time.monotonic()
        try:
            for byte in message:
                raw.sock.sendall(bytes((byte,)))
                time.sleep(1.0)
        except OSError:
            pass
        lasted.append(time.monotonic() - started)
        raw.close()

    threads = [threading.Thread(target=one) for _ in range(count)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    print(f"{count} slowloris peers (1 byte/s): {figures(server)}")
    for t in threads:
        t.join()
    print(f"slowloris peers dropped after {min(lasted):.1f}-{max(lasted):.1f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--slow", type=int, default=20)
    parser.add_argument("--idle", type=float, default=2.0, help="server --network-timeout")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, \
            ServeProcess(Path(tmp) / "storage", "--network-timeout", str(args.idle)) as server:
        echo_ok(server.port)
        baseline = server.wait_threads(3)
        print(f"before: {figures(server)}")
        burst(server, args.connections)
        server.wait_threads(baseline, timeout=30)
        print(f"after the burst: {figures(server)}")
        slowloris(server, args.slow)
        server.wait_threads(baseline, timeout=30)
        print(f"after: {figures(server)}")
        echo_ok(server.port)
        print("echo after the load: ok")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
