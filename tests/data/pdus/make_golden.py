"""Regenerate the pynetdicom golden PDUs of this folder (see README.md).

Run: .venv/bin/python tests/data/pdus/make_golden.py   (needs pynetdicom 3.0.4)
Each PDU is built by pynetdicom from its service primitives and written as <name>.bin.
"""

from __future__ import annotations

from pathlib import Path

from pynetdicom import pdu, pdu_primitives as prim
from pynetdicom.presentation import PresentationContext

HERE = Path(__file__).parent
VERIFICATION = "1.2.840.10008.1.1"
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
STUDY_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
IMPLICIT, EXPLICIT, BIG = "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"


def context(context_id, abstract, syntaxes, result=None):
    pc = PresentationContext()
    pc.context_id = context_id
    pc.abstract_syntax = abstract
    pc.transfer_syntax = syntaxes
    if result is not None:
        pc.result = result
    return pc


def user_information(*, rq: bool):
    items = []
    max_length = prim.MaximumLengthNotification()
    max_length.maximum_length_received = 16382
    items.append(max_length)
    class_uid = prim.ImplementationClassUIDNotification()
    class_uid.implementation_class_uid = "1.2.826.0.1.3680043.9.3811.3.0.4"
    items.append(class_uid)
    version = prim.ImplementationVersionNameNotification()
    version.implementation_version_name = "PYNETDICOM_304"
    items.append(version)
    window = prim.AsynchronousOperationsWindowNegotiation()
    window.maximum_number_operations_invoked = 5
    window.maximum_number_operations_performed = 3
    items.append(window)
    role = prim.SCP_SCU_RoleSelectionNegotiation()
    role.sop_class_uid = CT_STORAGE
    role.scu_role = rq
    role.scp_role = True
    items.append(role)
    extended = prim.SOPClassExtendedNegotiation()
    extended.sop_class_uid = STUDY_FIND
    extended.service_class_application_information = b"\x01\x01\x00\x01"
    items.append(extended)
    if rq:
        common = prim.SOPClassCommonExtendedNegotiation()
        common.sop_class_uid = CT_STORAGE
        common.service_class_uid = "1.2.840.10008.4.2"
        common.related_general_sop_class_identification = ["1.2.840.10008.5.1.4.1.1.2.1"]
        items.append(common)
        identity = prim.UserIdentityNegotiation()
        identity.user_identity_type = 2
        identity.positive_response_requested = True
        identity.primary_field = b"alice"
        identity.secondary_field = b"s3cret"
        items.append(identity)
    else:
        identity = prim.UserIdentityNegotiation()
        identity.server_response = b"server-ticket"
        items.append(identity)
    return items


def associate_rq() -> bytes:
    primitive = prim.A_ASSOCIATE()
    primitive.application_context_name = "1.2.840.10008.3.1.1.1"
    primitive.calling_ae_title = "DICOMDESK"
    primitive.called_ae_title = "ANY-SCP"
    primitive.presentation_context_definition_list = [
        context(1, VERIFICATION, [IMPLICIT]),
        context(3, CT_STORAGE, [EXPLICIT, IMPLICIT, BIG]),
        context(5, STUDY_FIND, [IMPLICIT, EXPLICIT]),
    ]
    primitive.user_information = user_information(rq=True)
    out = pdu.A_ASSOCIATE_RQ()
    out.from_primitive(primitive)
    return out.encode()


def associate_ac() -> bytes:
    primitive = prim.A_ASSOCIATE()
    primitive.application_context_name = "1.2.840.10008.3.1.1.1"
    primitive.calling_ae_title = "DICOMDESK"
    primitive.called_ae_title = "ANY-SCP"
    primitive.result = 0
    primitive.presentation_context_definition_results_list = [
        context(1, VERIFICATION, [IMPLICIT], result=0),
        context(3, CT_STORAGE, [EXPLICIT], result=0),
        context(5, STUDY_FIND, [IMPLICIT], result=3),
    ]
    primitive.user_information = user_information(rq=False)
    out = pdu.A_ASSOCIATE_AC()
    out.from_primitive(primitive)
    return out.encode()


def associate_rj() -> bytes:
    primitive = prim.A_ASSOCIATE()
    primitive.result = 1
    primitive.result_source = 1
    primitive.diagnostic = 7
    out = pdu.A_ASSOCIATE_RJ()
    out.from_primitive(primitive)
    return out.encode()


def p_data() -> bytes:
    primitive = prim.P_DATA()
    primitive.presentation_data_value_list = [
        [1, b"\x03" + bytes(range(16))],   # command, last fragment
        [1, b"\x00" + b"\xAB" * 300],       # data, not last
        [1, b"\x02" + b"\xCD" * 7],          # data, last
    ]
    out = pdu.P_DATA_TF()
    out.from_primitive(primitive)
    return out.encode()


def release_rq() -> bytes:
    out = pdu.A_RELEASE_RQ()
    out.from_primitive(prim.A_RELEASE())
    return out.encode()


def release_rp() -> bytes:
    primitive = prim.A_RELEASE()
    primitive.result = "affirmative"
    out = pdu.A_RELEASE_RP()
    out.from_primitive(primitive)
    return out.encode()


def abort_user() -> bytes:
    primitive = prim.A_ABORT()
    primitive.abort_source = 0
    out = pdu.A_ABORT_RQ()
    out.from_primitive(primitive)
    return out.encode()


def abort_provider() -> bytes:
    primitive = prim.A_P_ABORT()
    primitive.provider_reason = 6
    out = pdu.A_ABORT_RQ()
    out.from_primitive(primitive)
    return out.encode()


if __name__ == "__main__":
    for name, build in [("pynetdicom_associate_rq", associate_rq), ("pynetdicom_associate_ac", associate_ac),
                        ("pynetdicom_associate_rj", associate_rj), ("pynetdicom_p_data_tf", p_data),
                        ("pynetdicom_release_rq", release_rq), ("pynetdicom_release_rp", release_rp),
                        ("pynetdicom_abort_user", abort_user), ("pynetdicom_abort_provider", abort_provider)]:
        data = build()
        (HERE / f"{name}.bin").write_bytes(data)
        print(name, len(data))
