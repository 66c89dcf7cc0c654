"""The association doctor's pure part: contexts planned and outcomes explained in words."""

from __future__ import annotations

from dicomdesk.net import uids
from dicomdesk.operations.common import Peer
from dicomdesk.operations.doctor import (
    MAX_CONTEXTS,
    ContextOutcome,
    Negotiation,
    contexts_for_files,
    explain,
    split_contexts,
    standard_contexts,
)

PEER = Peer("127.0.0.1", 104, "ARCHIVE", "DICOMDESK")
CT, MR = uids.CT_IMAGE_STORAGE, uids.MR_IMAGE_STORAGE
EXPLICIT, IMPLICIT, J2K = (uids.EXPLICIT_VR_LITTLE_ENDIAN, uids.IMPLICIT_VR_LITTLE_ENDIAN,
                           uids.JPEG_2000_IMAGE_COMPRESSION)


def test_standard_set_fits_one_association_with_one_syntax_per_context():
    pairs = standard_contexts()
    assert len(pairs) == len(set(pairs)) <= MAX_CONTEXTS
    assert (CT, J2K) in pairs and (uids.VERIFICATION_SOP_CLASS, IMPLICIT) in pairs
    assert (uids.STORAGE_COMMITMENT_PUSH_MODEL_SOP_CLASS, EXPLICIT) in pairs


def test_files_propose_their_own_syntax_plus_the_uncompressed_ones():
    pairs = contexts_for_files([(CT, J2K), (CT, EXPLICIT)])
    assert pairs[0] == (CT, J2K)
    assert {ts for _, ts in pairs} == {J2K, *uids.UNCOMPRESSED_TRANSFER_SYNTAXES}


def test_more_than_128_contexts_are_split_keeping_a_class_together():
    pairs = [(f"1.2.3.{i}", ts) for i in range(50) for ts in ("a", "b", "c")]
    groups = split_contexts(pairs)
    assert [len(g) for g in groups] == [126, 24]
    assert all(len({c for c, _ in g}) * 3 == len(g) for g in groups)


def test_outcome_is_explained_per_class_and_reason():
    contexts = (
        ContextOutcome(1, CT, (IMPLICIT,), 0, IMPLICIT),
        ContextOutcome(3, CT, (J2K,), 4, J2K),
        ContextOutcome(5, MR, (EXPLICIT,), 3, EXPLICIT),
        ContextOutcome(7, MR, (IMPLICIT,), 3, IMPLICIT),
    )
    lines = explain(PEER, [Negotiation(contexts, True, max_pdu=16384,
                                       implementation_class_uid="1.2.3",
                                       implementation_version_name="PEER_1")])
    assert "CT Image Storage: accepted with Implicit VR Little Endian" in lines
    assert ("CT Image Storage: refused: transfer syntax not supported "
            "(proposed JPEG 2000 Image Compression)") in lines
    assert "MR Image Storage: refused: abstract syntax not supported" in lines
    assert "Peer maximum PDU length: 16384 bytes" in lines
    assert "Peer implementation: class UID 1.2.3, version name PEER_1" in lines
    assert any("1 of 4 presentation context(s) accepted" in line for line in lines)


def test_context_accepted_with_a_syntax_we_never_proposed_is_called_unusable():
    lines = explain(PEER, [Negotiation((ContextOutcome(1, CT, (J2K,), 0, EXPLICIT),), True)])
    assert any("which we did not propose" in line and "unusable" in line for line in lines)


def test_rejection_is_explained_with_its_fields_and_what_to_do():
    n = Negotiation(error="ARCHIVE@127.0.0.1:104: association rejected (permanent): called AE "
                          "title not recognised", reject=(1, 1, 7))
    lines = explain(PEER, [n])
    assert "A-ASSOCIATE-RJ result 1, source 1, reason 7" in "\n".join(lines)
    assert any("What to do" in line and "'ARCHIVE'" in line for line in lines)


def test_files_summary_counts_as_is_converted_and_impossible():
    contexts = (ContextOutcome(1, CT, (IMPLICIT,), 0, IMPLICIT),)
    lines = explain(PEER, [Negotiation(contexts, True)],
                    files={(CT, IMPLICIT): 2, (CT, EXPLICIT): 1, (CT, J2K): 4})
    assert lines[-1] == ("Files: 7 selected; 2 as they are, 1 after conversion to an accepted "
                         "uncompressed transfer syntax, 4 cannot be sent (class or transfer syntax refused)")


def test_user_identity_and_roles_are_reported():
    n = Negotiation((), True, roles_proposed=(CT,), role_replies=((CT, 0, 1),),
                    user_identity_proposed=True, user_identity_response=b"")
    text = "\n".join(explain(PEER, [n]))
    assert "Role selection for CT Image Storage: SCU no, SCP yes" in text
    assert "User identity: accepted (server response of 0 byte(s))" in text


def test_lossless_compressed_files_are_counted_as_sent_decompressed():
    rle = "1.2.840.10008.1.2.5"
    contexts = (ContextOutcome(1, CT, (IMPLICIT,), 0, IMPLICIT),)
    lines = explain(PEER, [Negotiation(contexts, True)], files={(CT, rle): 3, (CT, J2K): 1})
    assert lines[-1] == ("Files: 4 selected; 0 as they are, 3 decompressed (lossless compression the "
                         "peer does not accept), 1 cannot be sent (class or transfer syntax refused)")
