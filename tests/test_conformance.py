"""docs/conformance.md says exactly what the code declares (SOP classes, roles, syntaxes)."""

from __future__ import annotations

from pathlib import Path

from dicomdesk import conformance
from dicomdesk.net import sopclass, uids

DOC = Path(__file__).resolve().parents[1] / "docs" / "conformance.md"


def test_conformance_statement_matches_the_code():
    assert DOC.read_text(encoding="utf-8") == conformance.render(), (
        "regenerate it: python -m dicomdesk.conformance > docs/conformance.md")


def test_every_service_the_package_exports_is_in_the_statement():
    text = DOC.read_text(encoding="utf-8")
    for service in (sopclass.verification_scp, sopclass.qr_find_scp, sopclass.qr_get_scp,
                    sopclass.qr_move_scp, sopclass.modality_work_list_scp, sopclass.StorageCommitment,
                    sopclass.storage_scp):
        for uid in service.sop_classes:
            assert f"`{uid}`" in text


def test_storage_section_lists_every_storage_class():
    text = DOC.read_text(encoding="utf-8")
    missing = [uid for uid in uids.STORAGE_SOP_CLASSES if f"`{uid}`" not in text]
    assert missing == []
