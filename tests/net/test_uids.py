"""uids: the reference's constants agree with pydicom's UID dictionary."""

from __future__ import annotations

import re

from pydicom.uid import UID_dictionary

from dicomdesk.net import uids

# Constants whose names the reference abbreviates, with pydicom's full name of the UID.
ABBREVIATED = {
    'CR_IMAGE_STORAGE', 'DX_IMAGE_STORAGE_FOR_PRESENTATION', 'DX_IMAGE_STORAGE_FOR_PROCESSING',
    'MG_IMAGE_STORAGE_FOR_PRESENTATION', 'MG_IMAGE_STORAGE_FOR_PROCESSING',
    'IO_IMAGE_STORAGE_FOR_PRESENTATION', 'IO_IMAGE_STORAGE_FOR_PROCESSING',
    'LEGACY_ENHANCED_CT_IMAGE_STORAGE', 'ULTRASOUND_MULTI_FRAME_IMAGE', 'ENHANCED_MR_IMAGE',
    'SC_IMAGE_STORAGE', 'MULTI_FRAME_SINGLE_BIT_SC_IMAGE_STORAGE',
    'MULTI_FRAME_GRAYSCALE_BYTE_SC_IMAGE_STORAGE', 'MULTI_FRAME_GRAYSCALE_WORD_SC_IMAGE_STORAGE',
    'MULTI_FRAME_TRUE_COLOR_SC_IMAGE_STORAGE', 'TWELVE_LEAD_ECG_WAVEFORM_STORAGE',
    'XA_IMAGE_STORAGE', 'RF_IMAGE_STORAGE', 'ENHANCED_RF_IMAGE_STORAGE', 'NM_IMAGE_STORAGE',
    'SPATIAL_REGISTRATION', 'XRAY_RADIATION_DOSE_SR_STORAGE', 'PET_IMAGE_STORAGE',
    'DICOS_QR_STORAGE',
    # dicomdesk's own names for Q/R, worklist and commitment classes
    'PATIENT_ROOT_FIND_SOP_CLASS', 'PATIENT_ROOT_MOVE_SOP_CLASS', 'PATIENT_ROOT_GET_SOP_CLASS',
    'STUDY_ROOT_FIND_SOP_CLASS', 'STUDY_ROOT_MOVE_SOP_CLASS', 'STUDY_ROOT_GET_SOP_CLASS',
    'PATIENT_STUDY_ONLY_FIND_SOP_CLASS', 'PATIENT_STUDY_ONLY_MOVE_SOP_CLASS',
    'PATIENT_STUDY_ONLY_GET_SOP_CLASS', 'MODALITY_WORK_LIST_INFORMATION_FIND',
    # aliases under the names later releases of the reference use
    'MODALITY_WORK_LIST_INFORMATION_FIND_SOP_CLASS', 'STORAGE_COMMITMENT_SOP_CLASS',
}


def _constants():
    return {name: value for name, value in vars(uids).items()
            if name.isupper() and isinstance(value, str) and value.startswith('1.2.840.10008.')}


def _normalise(name: str) -> str:
    return re.sub(r'[^A-Z0-9]+', '_', name.upper()).strip('_')


def test_every_named_constant_is_the_uid_pydicom_names_alike():
    mismatched = []
    for name, value in _constants().items():
        assert value in UID_dictionary, name
        if name in ABBREVIATED:
            continue
        if _normalise(UID_dictionary[value][0]) != name:
            mismatched.append((name, UID_dictionary[value][0]))
    assert mismatched == []


def test_abbreviated_constants_name_the_same_kind_of_object():
    for name in ABBREVIATED:
        pydicom_name = UID_dictionary[getattr(uids, name)][0]
        words = {'FIND', 'MOVE', 'GET', 'STORAGE', 'IMAGE', 'REGISTRATION'} & set(name.split('_'))
        assert any(word.lower() in pydicom_name.lower() for word in words), name


def test_reference_and_named_values():
    assert uids.VERIFICATION_SOP_CLASS == '1.2.840.10008.1.1'
    assert uids.IMPLICIT_VR_LITTLE_ENDIAN == '1.2.840.10008.1.2'
    assert uids.EXPLICIT_VR_LITTLE_ENDIAN == '1.2.840.10008.1.2.1'
    assert uids.EXPLICIT_VR_BIG_ENDIAN == '1.2.840.10008.1.2.2'
    assert uids.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN == '1.2.840.10008.1.2.1.99'
    assert uids.CT_IMAGE_STORAGE == '1.2.840.10008.5.1.4.1.1.2'
    assert uids.MODALITY_WORK_LIST_INFORMATION_FIND == '1.2.840.10008.5.1.4.31'
    assert uids.STORAGE_COMMITMENT_PUSH_MODEL_SOP_CLASS == '1.2.840.10008.1.20.1'
    assert uids.STORAGE_COMMITMENT_PUSH_MODEL_SOP_INSTANCE == '1.2.840.10008.1.20.1.1'
    assert uids.STUDY_ROOT_MOVE_SOP_CLASS == '1.2.840.10008.5.1.4.1.2.2.2'
    assert set(uids.UNCOMPRESSED_TRANSFER_SYNTAXES) == {
        uids.IMPLICIT_VR_LITTLE_ENDIAN, uids.EXPLICIT_VR_LITTLE_ENDIAN,
        uids.EXPLICIT_VR_BIG_ENDIAN}


def test_storage_sop_classes_hold_every_storage_class_pydicom_knows_and_nothing_else():
    expected = {
        uid for uid, entry in UID_dictionary.items()
        if entry[1] == 'SOP Class' and entry[0].endswith('Storage')
        and 'Commitment' not in entry[0] and 'Directory' not in entry[0]
    }
    classes = set(uids.STORAGE_SOP_CLASSES)
    assert expected <= classes
    assert len(classes) == len(uids.STORAGE_SOP_CLASSES)
    assert uids.STORAGE_COMMITMENT_PUSH_MODEL_SOP_CLASS not in classes
    assert '1.2.840.10008.1.3.10' not in classes  # Media Storage Directory Storage
    assert uids.VERIFICATION_SOP_CLASS not in classes
    for uid in classes:
        assert 'Storage' in UID_dictionary[uid][0]


def test_named_storage_constants_are_storage_sop_classes():
    for name, value in _constants().items():
        if value.startswith('1.2.840.10008.5.1.4.1.1.'):
            assert value in uids.STORAGE_SOP_CLASSES, name


def test_implementation_identity_is_valid():
    uid = uids.IMPLEMENTATION_CLASS_UID
    assert uid.startswith('1.2.826.0.1.3680043.8.498.')
    assert len(uid) <= 64 and re.fullmatch(r'[0-9.]+', uid) and '..' not in uid
    assert 1 <= len(uids.IMPLEMENTATION_VERSION_NAME) <= 16
