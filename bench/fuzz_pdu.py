"""Coverage-guided fuzzing of the PDU path (PS3.8 9.3): framer → decode_pdu → every item and
user-information sub-item → the DIMSE decoder for P-DATA-TF.

Any input must decode or raise PDUProcessingError / DIMSEProcessingError; anything else is a
crash. Uses atheris (libFuzzer) when installed — ``pip install atheris`` — with the corpus seeded
from the real captures in tests/data/pdus/; otherwise (``--hypothesis`` or no atheris) a
Hypothesis run mutating the same seeds. Prints cases tried, crashes and peak RSS.

    .venv/bin/python bench/fuzz_pdu.py --runs 200000          # atheris
    .venv/bin/python bench/fuzz_pdu.py --hypothesis --runs 20000
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
import traceback
from collections import namedtuple
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dicomdesk.net import uids  # noqa: E402
from dicomdesk.net.dimsedecoder import DIMSEDecoder  # noqa: E402
from dicomdesk.net.exceptions import DIMSEProcessingError, PDUProcessingError  # noqa: E402
from dicomdesk.net.pdu import PDataTfPDU, PDUFramer, decode_pdu  # noqa: E402

SEEDS = REPO / "tests" / "data" / "pdus"
MAX_PDU = 16384
Ctx = namedtuple("Ctx", "id sop_class supported_ts")
CONTEXTS = {1: Ctx(1, uids.VERIFICATION_SOP_CLASS, uids.IMPLICIT_VR_LITTLE_ENDIAN),
            3: Ctx(3, "1.2.840.10008.5.1.4.1.1.2", uids.EXPLICIT_VR_LITTLE_ENDIAN),
            5: Ctx(5, uids.STUDY_ROOT_FIND_SOP_CLASS, uids.IMPLICIT_VR_LITTLE_ENDIAN)}

stats = {"cases": 0, "crashes": 0}


def one_input(data: bytes) -> None:
    """The target: feed ``data`` as a byte stream, decode every whole PDU, reassemble DIMSE."""
    stats["cases"] += 1
    framer = PDUFramer(MAX_PDU)
    decoder = DIMSEDecoder(CONTEXTS, set(), None)
    try:
        framer.feed(data)
        while (raw := framer.next_pdu()) is not None:
            item = decode_pdu(raw)
            if isinstance(item, PDataTfPDU):
                decoder.process(item)
    except (PDUProcessingError, DIMSEProcessingError):
        pass


def _checked(data: bytes) -> None:
    if stats["cases"] and stats["cases"] % 10_000 == 0:  # libFuzzer exits without Python's atexit
        print(f"cases tried: {stats['cases']}; crashes: {stats['crashes']}; "
              f"peak RSS: {peak_rss_mib():.1f} MiB", flush=True)
    try:
        one_input(data)
    except Exception:
        stats["crashes"] += 1
        crash = Path(tempfile.gettempdir()) / f"dicomdesk-pdu-crash-{stats['crashes']}.bin"
        crash.write_bytes(data)
        print(f"CRASH saved to {crash}:\n{traceback.format_exc()}", file=sys.stderr)
        raise


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_atheris(runs: int) -> None:
    import atheris

    corpus = Path(tempfile.mkdtemp(prefix="dicomdesk-pdu-corpus-"))
    for seed in SEEDS.glob("*.bin"):
        shutil.copy(seed, corpus / seed.name)
    args = [sys.argv[0], str(corpus), f"-runs={runs}", f"-max_len={MAX_PDU * 2}", "-rss_limit_mb=1024"]
    atheris.instrument_all()
    atheris.Setup(args, _checked)
    try:
        atheris.Fuzz()
    except SystemExit:
        pass


def run_hypothesis(runs: int) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    seeds = [p.read_bytes() for p in sorted(SEEDS.glob("*.bin"))]

    @settings(max_examples=runs, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(seeds), st.lists(st.tuples(st.integers(0), st.integers(0, 255)), max_size=8),
           st.integers(0), st.binary(max_size=64), st.binary(max_size=512))
    def fuzz(seed, flips, cut, tail, noise):
        data = bytearray(seed)
        for position, value in flips:
            data[position % len(data)] = value
        _checked(bytes(data[:cut % (len(data) + 1)]) + tail)
        _checked(noise)

    fuzz()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--hypothesis", action="store_true", help="use the Hypothesis fallback")
    args = parser.parse_args()
    started = time.monotonic()
    engine = "hypothesis"

    def report() -> None:
        print(f"engine: {engine}; cases tried: {stats['cases']}; crashes: {stats['crashes']}; "
              f"peak RSS: {peak_rss_mib():.1f} MiB; {time.monotonic() - started:.1f} s", flush=True)

    if not args.hypothesis:
        try:
            import atheris  # noqa: F401
            engine = "atheris"
        except ImportError:
            print("atheris is not installed: using the Hypothesis fallback", file=sys.stderr)
    import atexit

    atexit.register(report)  # libFuzzer ends the process with exit(): report from atexit
    if engine == "atheris":
        run_atheris(args.runs)
    else:
        run_hypothesis(args.runs)
    return 1 if stats["crashes"] else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    raise SystemExit(main())
