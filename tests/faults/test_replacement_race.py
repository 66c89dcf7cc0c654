"""An object re-sent to the path a replaced copy is being removed from stays on disk.

When a SOP Instance moves to another study or series, its copy at the old path is removed
once the new row is written (index thread). If the same instance comes back to that old path
meanwhile, that new copy must not be taken for the stale one: six senders each bounce one
instance between two studies, and after every acknowledgement its file is in place.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "security"))

from serving import (  # noqa: E402
    CT_IMAGE_STORAGE,
    RawAssociation,
    ServeProcess,
    encode_dataset,
    make_dataset,
    store_rq,
    wait_until,
)

from dicomdesk.net import uids  # noqa: E402

pytestmark = pytest.mark.interop

ROUNDS = 300


def test_an_instance_bouncing_between_two_studies_is_on_disk_after_every_acknowledgement(tmp_path):
    storage = tmp_path / "storage"
    lost: list[tuple[int, int]] = []
    errors: list[BaseException] = []

    def bounce(sender: int, port: int) -> None:
        uid = f"1.2.826.0.1.3680043.8.498.300.{sender}"
        try:
            raw = RawAssociation(port, ((1, uids.VERIFICATION_SOP_CLASS), (3, CT_IMAGE_STORAGE)))
            for n in range(ROUNDS):
                study = f"1.2.826.0.1.3680043.8.498.301.{n % 2}"
                data = encode_dataset(make_dataset(uid, study=study, series=f"{study}.1", pixels=2000))
                raw.send_command(3, store_rq(uid, message_id=n + 1))
                raw.send_data(3, data, last=True)
                if int(raw.receive_message().Status) != 0:
                    continue
                placed = storage / study / f"{study}.1" / f"{uid}.dcm"
                # a removal racing the acknowledgement may land just after it: look twice
                if not placed.exists() and not wait_until(placed.exists, timeout=0.5):
                    lost.append((sender, n))
            raw.release()
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    with ServeProcess(storage) as server:
        senders = [threading.Thread(target=bounce, args=(k, server.port)) for k in range(6)]
        for thread in senders:
            thread.start()
        for thread in senders:
            thread.join()
    assert not errors, errors
    assert not lost, f"{len(lost)} acknowledged copies were deleted (sender, round): {lost[:5]}"
