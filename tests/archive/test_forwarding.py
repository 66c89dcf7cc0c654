"""Forwarding rules, back-off and the durable forward queue (archive/forwarding.py).

Delivery to a real peer is in tests/integration/test_archive_faults.py; here the parts that
need no network: which rule sends what where, the retry schedule, and that the queue is kept
in the index across a restart.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from dicomdesk.archive import Archive
from dicomdesk.archive.forwarding import (ForwardEvent, Forwarder, destinations_for, retry_delay,
                                          rule_matches)
from dicomdesk.archive.scp import node_by_ae_title, remote_ae_of
from dicomdesk.config import ConfigError, ForwardRule, Node, ServerSettings

CT = ForwardRule(destinations=("pacs",), modalities=("CT",))
FROM_MODALITY = ForwardRule(destinations=("pacs", "backup"), calling_aets=("CT1",))
ALL = ForwardRule(destinations=("backup",))


@pytest.mark.parametrize(("rule", "calling", "modality", "expected"), [
    (CT, "ANY", "CT", True),
    (CT, "ANY", "ct", True),
    (CT, "ANY", "MR", False),
    (CT, "ANY", "", False),
    (FROM_MODALITY, "CT1", "MR", True),
    (FROM_MODALITY, "CT1 ", "MR", True),
    (FROM_MODALITY, "CT2", "MR", False),
    (ALL, "", "", True),
])
def test_rule_applies_only_when_each_given_filter_lists_the_value(rule, calling, modality, expected) -> None:
    assert rule_matches(rule, calling, modality) is expected


def test_destinations_of_all_matching_rules_are_each_listed_once() -> None:
    assert destinations_for([CT, FROM_MODALITY, ALL], "CT1", "CT") == ["pacs", "backup"]
    assert destinations_for([CT, FROM_MODALITY, ALL], "US1", "US") == ["backup"]
    assert destinations_for([CT], "US1", "US") == []


def test_retry_delay_doubles_up_to_the_maximum() -> None:
    assert [retry_delay(n, 5, 600) for n in range(1, 10)] == [5, 10, 20, 40, 80, 160, 320, 600, 600]


def test_forward_rule_settings_are_validated() -> None:
    settings = ServerSettings(forward_rules=[{"destinations": ["pacs"], "calling_aets": ["CT1"]}])
    assert settings.forward_rules == (ForwardRule(("pacs",), ("CT1",), ()),)
    with pytest.raises(ConfigError):
        ForwardRule(destinations=())
    with pytest.raises(ConfigError):
        ServerSettings(forward_rules=[{"destinations": ["pacs"], "colour": "red"}])
    with pytest.raises(ConfigError):
        ForwardRule(destinations="pacs")  # a string is not a list of nodes


def _never_called(node, paths):  # the thread is not started in these tests
    raise AssertionError("nothing is sent here")


def _stored(tmp_path: Path) -> tuple[Archive, str]:
    archive = Archive(tmp_path / "archive", durable=False)
    stored = archive.add_file(Path(get_testdata_file("CT_small.dcm")))
    return archive, stored.sop_instance_uid


def test_queued_forwards_survive_a_restart(tmp_path: Path) -> None:
    archive, uid = _stored(tmp_path)
    forwarder = Forwarder(archive, [], [CT, ALL], _never_called)
    assert forwarder.on_stored(uid, "ANY") == ["pacs", "backup"]  # modality read from the index
    archive.close()
    with Archive(tmp_path / "archive") as reopened:
        due = reopened.index.due_forwards(time.time())
        assert sorted((d.sop_instance_uid, d.destination, d.state) for d in due) == [
            (uid, "backup", "pending"), (uid, "pacs", "pending")]
        assert reopened.index.next_forward_at() is not None


def test_unknown_destination_fails_without_sending(tmp_path: Path) -> None:
    archive, uid = _stored(tmp_path)
    events: list[ForwardEvent] = []
    forwarder = Forwarder(archive, [Node(name="pacs", aet="PACS", host="127.0.0.1", port=104)],
                          [ALL], _never_called, on_forward=events.append)
    forwarder.on_stored(uid, "X")
    assert forwarder.run_once() is True
    assert [(e.state, e.destination) for e in events] == [("queued", "backup"), ("failed", "backup")]
    assert "address book" in events[-1].error
    assert [f.state for f in archive.index.forwards(uid)] == ["failed"]
    assert archive.index.next_forward_at() is None
    assert forwarder.run_once() is False
    archive.close()


def test_forwarder_thread_stops_at_once_when_idle(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "archive", durable=False)
    forwarder = Forwarder(archive, [], [ALL], _never_called).start()
    started = time.monotonic()
    forwarder.stop()
    # An idle thread waits for a wake-up with no timeout: a stop that did not wake it would
    # take stop()'s whole 30 s join; 10 s leaves a loaded machine room to schedule the thread.
    assert time.monotonic() - started < 10
    archive.close()


def test_address_book_lookup_by_ae_title_then_name() -> None:
    nodes = [Node(name="main", aet="PACS", host="10.0.0.1", port=104, username="u", password="p"),
             Node(name="dest", aet="STORESCP", host="10.0.0.2", port=11112)]
    assert node_by_ae_title(nodes, "PACS ").name == "main"
    assert node_by_ae_title(nodes, "pacs").name == "main"
    assert node_by_ae_title(nodes, "dest").aet == "STORESCP"
    assert node_by_ae_title(nodes, "NOBODY") is None
    assert node_by_ae_title(nodes, "") is None
    assert remote_ae_of(nodes[0], 30) == {"aet": "PACS", "address": "10.0.0.1", "port": 104, "timeout": 30,
                                          "username": "u", "password": "p"}
