"""Capture the DCMTK PDUs of this folder (see README.md).

Run: .venv/bin/python tests/data/pdus/capture_dcmtk.py   (needs DCMTK's echoscu and storescp)

1. dcmtk_echoscu_associate_rq.bin: listen on 127.0.0.1 (port chosen by the OS), run
   ``echoscu -aet ECHOSCU -aec ANY-SCP 127.0.0.1 PORT``, read one whole PDU, close.
2. dcmtk_storescp_associate_ac.bin: start ``storescp -aet STORESCP PORT`` on a free port, send it
   the pynetdicom A-ASSOCIATE-RQ of this folder, read its answer (one whole PDU), send an A-ABORT.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import time
from pathlib import Path

HERE = Path(__file__).parent


def read_pdu(conn: socket.socket) -> bytes:
    data = b""
    while len(data) < 6 or len(data) < 6 + struct.unpack(">I", data[2:6])[0]:
        chunk = conn.recv(65536)
        if not chunk:
            raise RuntimeError("peer closed early")
        data += chunk
    return data[: 6 + struct.unpack(">I", data[2:6])[0]]


def capture_echoscu_rq() -> bytes:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        proc = subprocess.Popen(["echoscu", "-aet", "ECHOSCU", "-aec", "ANY-SCP", "127.0.0.1", str(port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            server.settimeout(10)
            conn, _ = server.accept()
            with conn:
                conn.settimeout(10)
                return read_pdu(conn)
        finally:
            proc.wait(timeout=10)


def capture_storescp_ac() -> bytes:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(["storescp", "-aet", "STORESCP", "--output-directory", "/tmp", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=10)
                break
            except ConnectionRefusedError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        with conn:
            conn.sendall((HERE / "pynetdicom_associate_rq.bin").read_bytes())
            answer = read_pdu(conn)
            conn.sendall(bytes.fromhex("07000000000400000000"))
        return answer
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    for name, capture in [("dcmtk_echoscu_associate_rq", capture_echoscu_rq),
                          ("dcmtk_storescp_associate_ac", capture_storescp_ac)]:
        data = capture()
        (HERE / f"{name}.bin").write_bytes(data)
        print(name, len(data))
