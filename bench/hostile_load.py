"""Hostile load against ``dicomdesk serve``: connection floods, slowloris, and the memory cases.

Prints the server's threads and RSS (from /proc/<pid>/status) before, at the peak and after,
how the 200 connections were answered (A-ASSOCIATE-AC / -RJ local limit exceeded / closed), how
long the slowloris peers were tolerated, and whether an echo works afterwards. Then the memory
cases of issue 11, each printing the server's peak RSS during it (VmHWM, reset before the case
through /proc/<pid>/clear_refs) and whether a legitimate C-ECHO from another peer got through
while it ran:

- ``bomb``: a C-STORE of a 1 GiB-of-zeros deflate bomb (about 1 MB on the wire);
- ``commitment``: a storage-commitment N-ACTION with 400,000 references (~35 MB);
- ``unfinished``: 32 associations each sending a 20 MiB C-FIND identifier that never ends,
  then aborted, for 8 rounds (RSS after each round, and after ``--settle`` s idle);
- ``idle``: 64 TCP connections that never send an A-ASSOCIATE-RQ.

    .venv/bin/python bench/hostile_load.py [--connections 200] [--slow 20] [--idle 2]
        [--cases burst,slowloris,bomb,commitment,unfinished,idle] [--settle 10]
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "security"))

from hostile_payloads import (associate_rq as rq_with_syntaxes, commitment_flood,  # noqa: E402
                              deflate_bomb, send_data_set)
from dicomdesk.net import pdu  # noqa: E402
from serving import (EXPLICIT_LE, RawAssociation, ServeProcess, associate_rq, command_bytes,  # noqa: E402
                     echo_ok, p_data, read_pdu)

MiB = 1 << 20


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


# ------------------------------------------------------------------------- memory cases
def reset_peak(server: ServeProcess) -> None:
    """Reset VmHWM to the current RSS (Linux: "5" to /proc/<pid>/clear_refs)."""
    try:
        Path(f"/proc/{server.pid}/clear_refs").write_text("5")
    except OSError as exc:
        print(f"  (cannot reset the peak: {exc}; peak is since start)")


def peak(server: ServeProcess) -> str:
    return f"peak RSS {server.status_field('VmHWM') / 1024:.0f} MiB"


def legit_echo(port: int, timeout: float = 10.0) -> str:
    """One C-ECHO from a well-behaved peer: 'ok in N s' or why not."""
    from dicomdesk.operations import Peer, echo

    started = time.monotonic()
    result = echo(Peer("127.0.0.1", port, "DICOMDESK", timeout=timeout))
    took = time.monotonic() - started
    return f"ok in {took:.2f} s" if result.ok else f"FAILED after {took:.1f} s ({result.error})"


def during(server: ServeProcess, name: str, load, *, echo_after: float = 0.3) -> None:
    """Run ``load(started: threading.Event)`` in a thread; once it signals, echo; report."""
    reset_peak(server)
    before = server.status_field("VmRSS") / 1024
    started = threading.Event()
    outcome: list[str] = []

    def run() -> None:
        try:
            outcome.append(load(started))
        except Exception as exc:  # report, never crash the bench
            outcome.append(f"load failed: {exc!r}")
        finally:
            started.set()

    worker = threading.Thread(target=run, daemon=True)
    t0 = time.monotonic()
    worker.start()
    started.wait(300)
    time.sleep(echo_after)
    echo = legit_echo(server.port)
    worker.join(600)
    print(f"{name}: {outcome[0] if outcome else 'still running'} in {time.monotonic() - t0:.1f} s; "
          f"RSS before {before:.0f} MiB, {peak(server)}, after "
          f"{server.status_field('VmRSS') / 1024:.0f} MiB; echo during it: {echo}")


def _store_file(port: int, path: Path, started: threading.Event) -> str:
    from dicomdesk.operations import Peer, send

    started.set()  # the sender streams ~1 MB; the server's work follows it
    outcome = send(Peer("127.0.0.1", port, "DICOMDESK", timeout=120), [path]).outcomes[0]
    status = outcome.status
    comment = getattr(status, "error_comment", None) if status is not None else None
    return f"status {int(status):#06x} ({comment})" if status is not None else outcome.message


def _n_action(port: int, data: bytes, started: threading.Event) -> str:
    from dicomdesk.net.dimsemessages import NActionRQMessage
    from dicomdesk.net import uids

    msg = NActionRQMessage()
    msg.message_id = 1
    msg.requested_sop_class_uid = uids.STORAGE_COMMITMENT_PUSH_MODEL_SOP_CLASS
    msg.requested_sop_instance_uid = uids.STORAGE_COMMITMENT_PUSH_MODEL_SOP_INSTANCE
    msg.action_type_id = 1
    msg.data_set = b"present"
    sock = socket.create_connection(("127.0.0.1", port), timeout=300)
    try:
        sock.sendall(rq_with_syntaxes([(1, uids.STORAGE_COMMITMENT_PUSH_MODEL_SOP_CLASS, EXPLICIT_LE)]))
        if read_pdu(sock)[:1] != b"\x02":
            return "association refused"
        sock.sendall(p_data(1, command_bytes(msg), command=True, last=True))
        started.set()  # the echo goes while the 35 MB arrive and are judged
        send_data_set(sock, 1, data)
        rsp = RawAssociation.receive_message(SimpleNamespace(sock=sock))
        return f"N-ACTION status {int(rsp.Status):#06x} ({rsp.get('ErrorComment', '')})"
    finally:
        sock.close()


def bomb_case(server: ServeProcess, tmp: Path) -> None:
    bomb = deflate_bomb(tmp / "bomb.dcm", 1 << 30, "1.2.826.0.1.3680043.9.7777.1")
    print(f"deflate bomb: {bomb.stat().st_size / MiB:.2f} MB on disk, 1024 MiB inflated")
    during(server, "bomb", lambda started: _store_file(server.port, bomb, started))


def commitment_case(server: ServeProcess) -> None:
    data = commitment_flood(400_000)
    print(f"commitment flood: 400,000 references, {len(data) / MiB:.1f} MiB")
    during(server, "commitment", lambda started: _n_action(server.port, data, started))


def unfinished_case(server: ServeProcess, associations: int = 32, rounds: int = 8,
                    size: int = 20 * MiB, settle: float = 10.0) -> None:
    """Item 5 of issue 11 (DUL/FSM reference cycles): measured here, fixed in the net core."""
    from dicomdesk.net import uids
    from dicomdesk.net.dimsemessages import CFindRQMessage

    msg = CFindRQMessage()
    msg.message_id = 1
    msg.affected_sop_class_uid = uids.STUDY_ROOT_FIND_SOP_CLASS
    msg.priority = 0
    msg.data_set = b"present"
    command = command_bytes(msg)
    identifier = bytes(size)  # shared by every association: the bench holds it once
    abort = pdu.AAbortPDU(0, 0).encode()

    def one_association(outcomes: list[str], all_sent: threading.Barrier) -> None:
        outcome = "refused"
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
                sock.sendall(rq_with_syntaxes([(1, uids.STUDY_ROOT_FIND_SOP_CLASS, EXPLICIT_LE)]))
                if read_pdu(sock)[:1] == b"\x02":
                    sock.sendall(p_data(1, command, command=True, last=True))
                    send_data_set(sock, 1, identifier, last=False)  # never the last fragment
                    outcome = "held"
                    all_sent.wait(120)  # every association holds its identifier at once
                    sock.sendall(abort)
        except (OSError, threading.BrokenBarrierError) as exc:
            outcome = f"cut ({type(exc).__name__})"
        outcomes.append(outcome)

    def one_round() -> str:
        outcomes: list[str] = []
        all_sent = threading.Barrier(associations, timeout=120)
        threads = [threading.Thread(target=one_association, args=(outcomes, all_sent))
                   for _ in range(associations)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        held = outcomes.count("held")
        return f"{held}" if held == len(outcomes) else f"{held}/{len(outcomes)}"


    def load(started: threading.Event) -> str:
        lines = []
        for number in range(rounds):
            accepted = one_round()
            if number == 0:
                started.set()
            time.sleep(0.5)
            lines.append(f"{accepted}:{server.status_field('VmRSS') / 1024:.0f}")
        return "rounds (associations held:RSS MiB after it) " + " ".join(lines)

    during(server, f"unfinished ({associations} x {size // MiB} MiB x {rounds})", load, echo_after=1.0)
    time.sleep(settle)
    print(f"  after {settle:.0f} s idle: RSS {server.status_field('VmRSS') / 1024:.0f} MiB")


def idle_case(server: ServeProcess, count: int = 64, hold: float = 5.0) -> None:
    """Item 6 of issue 11 (slots counted before an A-ASSOCIATE-RQ): measured here."""
    socks: list[socket.socket] = []

    def load(started: threading.Event) -> str:
        for _ in range(count):
            socks.append(socket.create_connection(("127.0.0.1", server.port), timeout=30))
        started.set()
        time.sleep(hold)
        return f"{count} idle connections held {hold:.0f} s"

    try:
        during(server, "idle sockets", load, echo_after=1.0)
    finally:
        for sock in socks:
            sock.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--slow", type=int, default=20)
    parser.add_argument("--idle", type=float, default=2.0, help="server --network-timeout")
    parser.add_argument("--cases", default="burst,slowloris,bomb,commitment,unfinished,idle")
    parser.add_argument("--settle", type=float, default=10.0,
                        help="idle seconds after the unfinished-identifier rounds")
    args = parser.parse_args()
    cases = set(args.cases.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        if cases & {"burst", "slowloris"}:
            connection_cases(Path(tmp), cases, args)
        if cases & {"bomb", "commitment", "unfinished", "idle"}:
            memory_cases(Path(tmp), cases, args)
    return 0


def connection_cases(tmp: Path, cases: set[str], args: argparse.Namespace) -> None:
    with ServeProcess(tmp / "storage", "--network-timeout", str(args.idle)) as server:
        echo_ok(server.port)
        baseline = server.wait_threads(3)
        print(f"before: {figures(server)}")
        if "burst" in cases:
            burst(server, args.connections)
            server.wait_threads(baseline, timeout=30)
            print(f"after the burst: {figures(server)}")
        if "slowloris" in cases:
            slowloris(server, args.slow)
            server.wait_threads(baseline, timeout=30)
            print(f"after: {figures(server)}")
        echo_ok(server.port)
        print(f"echo after the load: ok; {figures(server)}")


def memory_cases(tmp: Path, cases: set[str], args: argparse.Namespace) -> None:
    """A server with the defaults of ``dicomdesk serve`` (as the issue's probe had)."""
    with ServeProcess(tmp / "storage-memory") as server:
        echo_ok(server.port)
        baseline = server.wait_threads(3)
        print(f"memory cases, default server: {figures(server)}")
        if "bomb" in cases:
            bomb_case(server, tmp)
        if "commitment" in cases:
            commitment_case(server)
        if "unfinished" in cases:
            unfinished_case(server, settle=args.settle)
        if "idle" in cases:
            idle_case(server)
        server.wait_threads(baseline, timeout=60)
        echo_ok(server.port)
        print(f"echo after the memory cases: ok; {figures(server)}")


if __name__ == "__main__":
    raise SystemExit(main())
