"""Regression guards (no timings) for the storage SCP's per-object work (issue 13).

* The C-STORE-RSP of a plain outcome is encoded from its fields (``storage_receive.
  _store_rsp_fields`` through ``commandset.encode_fields``, whose plain values take one
  ``struct`` pack): it equals, byte for byte, what the generic DIMSE encoder gives, and a
  server answering stores builds no ``CStoreRSPMessage`` for them (a refusal with an Error
  Comment still does). The answers are checked by DCMTK's ``storescu`` as the peer.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from dicomdesk.net import dimsemessages
from dicomdesk.net.applicationentity import AE
from dicomdesk.net.sopclass import storage_scp
from dicomdesk.net.commandset import _encode_elements, encode_plain, command_vr, encode_fields
from dicomdesk.net.sopclass.storage_receive import _store_rsp_fields
from dicomdesk.net.statuses import SUCCESS, Status

CT = "1.2.840.10008.5.1.4.1.1.2"


def _generic(class_uid: str, message_id: int, status: int, instance_uid: str) -> bytes:
    rsp = dimsemessages.CStoreRSPMessage()
    rsp.message_id_being_responded_to = message_id
    rsp.affected_sop_class_uid = class_uid
    rsp.affected_sop_instance_uid = instance_uid
    rsp.status = status
    return rsp.set_length()


@pytest.mark.parametrize("class_uid", [CT, "1.2.840.10008.5.1.4.1.1.4", "1.2.3"])
@pytest.mark.parametrize("instance_uid", ["1.2.3.4", "1.2.3.45", "2.25." + "9" * 59])
@pytest.mark.parametrize("message_id, status", [(1, 0x0000), (65535, 0xB000), (7, 0xA700), (0, 0xC000)])
def test_store_response_fields_encode_as_the_generic_encoding(class_uid, instance_uid, message_id, status):
    fields = _store_rsp_fields(class_uid, message_id, status, instance_uid)
    plain = encode_plain(fields)
    assert plain is not None, "a plain response takes the one-pack path"
    assert plain == encode_fields(fields) == _generic(class_uid, message_id, status, instance_uid)
    assert plain == _encode_elements((e, command_vr(e), fields[e]) for e in sorted(fields))


def test_values_that_are_not_plain_take_the_generic_path():
    assert _store_rsp_fields("1.2.3", None, 0, "1.2.3") is None  # type: ignore[arg-type]
    assert _store_rsp_fields("", 1, 0, "1.2.3") is None
    assert _store_rsp_fields("1.2.3", 70000, 0, "1.2.3") is None
    non_ascii = _store_rsp_fields("1.2.3", 1, 0, "1.2.\u00e9")
    assert encode_plain(non_ascii) is None  # the generic encoder writes it (latin-1)
    assert encode_fields(non_ascii) == _generic("1.2.3", 1, 0, "1.2.\u00e9")


def _write_ct(path: Path, instance_uid: str) -> Path:
    ds = Dataset()
    ds.SOPClassUID = CT
    ds.SOPInstanceUID = instance_uid
    ds.StudyInstanceUID = ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = "Guard^Rsp"
    ds.PatientID = "G2"
    ds.Modality = "CT"
    ds.PixelData = bytes(2048)
    ds.Rows, ds.Columns, ds.BitsAllocated = 32, 32, 16
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CT
    ds.file_meta.MediaStorageSOPInstanceUID = instance_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    return path


class _Server(AE):
    """Stores nothing: SUCCESS, or a refusal with an Error Comment for ``refused`` UIDs."""

    refused: set

    def on_receive_store(self, context, fp):
        fp.seek(0)
        refuse = any(uid.encode() in fp.read() for uid in self.refused)
        fp.close()
        if refuse:
            status = Status(0xA700, "C-STORE")
            status.error_comment = "refused for the test"
            return status
        return SUCCESS


def test_a_server_answers_plain_stores_without_building_response_messages(tmp_path, monkeypatch):
    built = []
    original = dimsemessages.CStoreRSPMessage.set_length
    monkeypatch.setattr(dimsemessages.CStoreRSPMessage, "set_length",
                        lambda self: built.append(self) or original(self))
    folder = tmp_path / "in"
    folder.mkdir()
    refused_uid = generate_uid()
    for i in range(4):
        _write_ct(folder / f"ct{i}.dcm", generate_uid())
    _write_ct(folder / "refused.dcm", refused_uid)
    server = _Server("RSPGUARD", 0)
    server.refused = {refused_uid}
    server.add_scp(storage_scp, [CT])
    with server:
        done = subprocess.run(["storescu", "-v", "-nh", "-aec", "RSPGUARD", "+sd", "127.0.0.1", str(server.port),
                               str(folder)], capture_output=True, text=True, timeout=60)
    log = done.stdout + done.stderr
    assert log.count("Received Store Response (Success)") == 4, log
    assert log.count("Received Store Response (Refused: OutOfResources)") == 1, log
    assert len(built) == 1  # only the refusal (its Error Comment) went through the generic encoder
