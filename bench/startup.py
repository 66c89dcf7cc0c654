"""Bench (not a test): whole-process start-up of ``dicomdesk send|echo|find`` next to DCMTK.

Each command runs as a user runs it, the ``dicomdesk`` console script of this venv, exec to
exit, against one peer started once: ``storescp`` (TCP_NODELAY=1) for echo and send, a
``dicomdesk serve`` whose archive holds one study for find. Pairs alternate (A B A B ...),
``--runs`` times; medians of wall time and of CPU time (user + system, from ``wait4``).

    .venv/bin/python bench/startup.py [--runs 10]

Targets (issue 13): send of one file <= 80 ms, echo <= 60 ms, find of one match <= 100 ms.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (DICOMDESK, check_received, dd_serve, free_port, make_small,  # noqa: E402
                     median, run_client, storescp)

TARGETS_MS = {"send": 80, "echo": 60, "find": 100}


def measure(runs: int, tmp: Path) -> list[tuple[str, str, float, float, str]]:
    """Rows of (command, peer, median wall ms, median CPU ms, target note)."""
    one = make_small(tmp / "one", 1)
    rows = []
    # Peers are started once: what is timed is the client process alone.
    scp_port, serve_port = free_port(), free_port()
    with storescp(tmp / "scp-out", scp_port), dd_serve(tmp / "archive", serve_port, durable=False):
        # The archive holds one study, so the find below has exactly one match.
        run_client(DICOMDESK + ["send", "--aec", "ANY-SCP", "127.0.0.1", str(serve_port), str(one[0])])
        commands = {
            "send": (DICOMDESK + ["send", "--aec", "ANY-SCP", "127.0.0.1", str(scp_port), str(one[0])],
                     ["storescu", "-aec", "ANY-SCP", "127.0.0.1", str(scp_port), str(one[0])], "storescp"),
            "echo": (DICOMDESK + ["echo", "--aec", "ANY-SCP", "127.0.0.1", str(scp_port)],
                     ["echoscu", "-aec", "ANY-SCP", "127.0.0.1", str(scp_port)], "storescp"),
            "find": (DICOMDESK + ["find", "--aec", "ANY-SCP", "--level", "STUDY", "-k", "PatientName=*",
                                  "-k", "StudyInstanceUID", "127.0.0.1", str(serve_port)],
                     ["findscu", "-S", "-aec", "ANY-SCP", "-k", "QueryRetrieveLevel=STUDY",
                      "-k", "PatientName=*", "-k", "StudyInstanceUID", "127.0.0.1", str(serve_port)],
                     "dicomdesk serve (1 study)"),
        }
        for command, (ours, theirs, peer) in commands.items():
            walls: dict[str, list[float]] = {"dd": [], "dcmtk": []}
            cpus: dict[str, list[float]] = {"dd": [], "dcmtk": []}
            for _ in range(runs):
                for side, argv in (("dd", ours), ("dcmtk", theirs)):
                    wall, _, out, cpu = run_client(argv, with_cpu=True, startup_only=True)
                    if side == "dd" and command == "find" and out.count("Bench^Patient") != 1:
                        raise RuntimeError(f"dicomdesk find did not print one match: {out!r}")
                    walls[side].append(wall)
                    cpus[side].append(cpu)
            dd_wall, dc_wall = median(walls["dd"]) * 1000, median(walls["dcmtk"]) * 1000
            target = TARGETS_MS[command]
            rows.append((f"dicomdesk {command}", peer, dd_wall, median(cpus["dd"]) * 1000,
                         f"target <= {target} ms: {'met' if dd_wall <= target else 'NOT met'}"))
            rows.append((theirs[0], peer, dc_wall, median(cpus["dcmtk"]) * 1000, ""))
        check_received(tmp / "scp-out", one, copies=runs)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dicomdesk-startup-") as tmp:
        rows = measure(args.runs, Path(tmp))
    print(f"\nwhole-process start-up, median of {args.runs} alternating runs (wall / CPU user+sys):\n")
    print("| command | peer | wall | CPU | note |")
    print("|---|---|---|---|---|")
    for command, peer, wall, cpu, note in rows:
        print(f"| `{command}` | {peer} | {wall:.0f} ms | {cpu:.0f} ms | {note} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
