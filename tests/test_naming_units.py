"""The one UID-to-name helper and the one size formatter (issue 16: one home for each idea)."""

from __future__ import annotations

from dicomdesk.naming import uid_name
from dicomdesk.units import human_size


def test_uid_name_names_known_uids_and_shows_unknown_ones_as_they_are():
    assert uid_name("1.2.840.10008.5.1.4.1.1.2") == "CT Image Storage"
    assert uid_name("1.2.840.10008.5.1.4.1.1.2", short=True) == "CT Image"
    assert uid_name("1.2.840.10008.1.2.1") == "Explicit VR Little Endian"
    assert uid_name("1.2.3.4.5") == "1.2.3.4.5"
    assert uid_name("1.2.3.4.5", short=True) == "1.2.3.4.5"
    assert uid_name("") == ""


def test_human_size_uses_base_1024_with_iec_names():
    assert human_size(0) == "0 B"
    assert human_size(1023) == "1023 B"
    assert human_size(1536) == "1.5 KiB"
    assert human_size(12 * 1024 ** 2) == "12.0 MiB"
    assert human_size(3 * 1024 ** 4) == "3072.0 GiB"  # GiB is the largest unit
