"""SOP Class and Transfer Syntax UIDs (PS3.6 Annex A; PS3.4 for the service classes).

The constants are the ones of the pynetdicom2 reference (chapter 13), plus the
base transfer syntaxes (PS3.5 10.1, A.2-A.5), the Query/Retrieve (PS3.4 C.6),
Modality Worklist (PS3.4 K.6) and Storage Commitment (PS3.4 J.3) classes that
dicomdesk uses.  The Storage SOP Class constants are a table of their own
(``storage_uids``), re-exported here; ``STORAGE_SOP_CLASSES`` holds every Storage SOP
Class (PS3.4 Annex B) that pydicom's UID dictionary knows, so a Storage SCP can accept
objects of classes newer than the table.

Every constant is a plain ``str``, so importing this module does not import pydicom
(``dicomdesk echo`` needs none of it); ``STORAGE_SOP_CLASSES`` alone needs pydicom's UID
dictionary and is computed on first access (PEP 562 module ``__getattr__``).
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

# dicomdesk's Implementation Class UID (PS3.7 D.3.3.2) under pydicom's documented
# free root 1.2.826.0.1.3680043.8.498. and its Implementation Version Name
# (at most 16 characters, PS3.7 D.3.3.2.2).
IMPLEMENTATION_CLASS_UID = '1.2.826.0.1.3680043.8.498.7351.1'
IMPLEMENTATION_VERSION_NAME = 'DICOMDESK_010'

# --- Transfer syntaxes (PS3.5 Section 10, Annex A) ---
IMPLICIT_VR_LITTLE_ENDIAN = '1.2.840.10008.1.2'
"""Implicit VR Little Endian: the default transfer syntax (PS3.5 A.1)."""

EXPLICIT_VR_LITTLE_ENDIAN = '1.2.840.10008.1.2.1'
"""Explicit VR Little Endian (PS3.5 A.2)."""

EXPLICIT_VR_BIG_ENDIAN = '1.2.840.10008.1.2.2'
"""Explicit VR Big Endian, retired (PS3.5 A.3)."""

DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = '1.2.840.10008.1.2.1.99'
"""Deflated Explicit VR Little Endian"""

JPEG_BASELINE_PROCESS_1 = '1.2.840.10008.1.2.4.50'
"""JPEG Baseline (Process 1)"""

JPEG_EXTENDED_PROCESS_2_AND_4 = '1.2.840.10008.1.2.4.51'
"""JPEG Extended (Process 2 and 4)"""

JPEG_LOSSLESS_NON_HIERARCHICAL_PROCESS_14 = '1.2.840.10008.1.2.4.57'
"""JPEG Lossless, Non-Hierarchical (Process 14)"""

JPEG_LOSSLESS_NON_HIERARCHICAL_FIRST_ORDER_PREDICTION_PROCESS_14_SELECTION_VALUE_1 = '1.2.840.10008.1.2.4.70'
"""JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14 [Selection Value 1])"""

JPEG_LS_LOSSLESS_IMAGE_COMPRESSION = '1.2.840.10008.1.2.4.80'
"""JPEG-LS Lossless Image Compression"""

JPEG_LS_LOSSY_NEAR_LOSSLESS_IMAGE_COMPRESSION = '1.2.840.10008.1.2.4.81'
"""JPEG-LS Lossy (Near-Lossless) Image Compression"""

JPEG_2000_IMAGE_COMPRESSION_LOSSLESS_ONLY = '1.2.840.10008.1.2.4.90'
"""JPEG 2000 Image Compression (Lossless Only)"""

JPEG_2000_IMAGE_COMPRESSION = '1.2.840.10008.1.2.4.91'
"""JPEG 2000 Image Compression"""

JPEG_2000_PART_2_MULTI_COMPONENT_IMAGE_COMPRESSION_LOSSLESS_ONLY = '1.2.840.10008.1.2.4.92'
"""JPEG 2000 Part 2 Multi-component Image Compression (Lossless Only)"""

JPEG_2000_PART_2_MULTI_COMPONENT_IMAGE_COMPRESSION = '1.2.840.10008.1.2.4.93'
"""JPEG 2000 Part 2 Multi-component Image Compression"""

JPIP_REFERENCED = '1.2.840.10008.1.2.4.94'
"""JPIP Referenced"""

JPIP_REFERENCED_DEFLATE = '1.2.840.10008.1.2.4.95'
"""JPIP Referenced Deflate"""

MPEG2_MAIN_PROFILE_MAIN_LEVEL = '1.2.840.10008.1.2.4.100'
"""MPEG2 Main Profile / Main Level"""

MPEG2_MAIN_PROFILE_HIGH_LEVEL = '1.2.840.10008.1.2.4.101'
"""MPEG2 Main Profile / High Level"""

MPEG_4_AVC_H_264_HIGH_PROFILE_LEVEL_4_1 = '1.2.840.10008.1.2.4.102'
"""MPEG-4 AVC/H.264 High Profile / Level 4.1"""

MPEG_4_AVC_H_264_BD_COMPATIBLE_HIGH_PROFILE_LEVEL_4_1 = '1.2.840.10008.1.2.4.103'
"""MPEG-4 AVC/H.264 BD-compatible High Profile / Level 4.1"""

MPEG_4_AVC_H_264_HIGH_PROFILE_LEVEL_4_2_FOR_2D_VIDEO = '1.2.840.10008.1.2.4.104'
"""MPEG-4 AVC/H.264 High Profile / Level 4.2 For 2D Video"""

MPEG_4_AVC_H_264_HIGH_PROFILE_LEVEL_4_2_FOR_3D_VIDEO = '1.2.840.10008.1.2.4.105'
"""MPEG-4 AVC/H.264 High Profile / Level 4.2 For 3D Video"""

MPEG_4_AVC_H_264_STEREO_HIGH_PROFILE_LEVEL_4_2 = '1.2.840.10008.1.2.4.106'
"""MPEG-4 AVC/H.264 Stereo High Profile / Level 4.2"""

HEVC_H_265_MAIN_PROFILE_LEVEL_5_1 = '1.2.840.10008.1.2.4.107'
"""HEVC/H.265 Main Profile / Level 5.1"""

HEVC_H_265_MAIN_10_PROFILE_LEVEL_5_1 = '1.2.840.10008.1.2.4.108'
"""HEVC/H.265 Main 10 Profile / Level 5.1"""

RLE_LOSSLESS = '1.2.840.10008.1.2.5'
"""RLE Lossless"""

RFC_2557_MIME_ENCAPSULATION = '1.2.840.10008.1.2.6.1'
"""RFC 2557 MIME encapsulation"""

XML_ENCODING = '1.2.840.10008.1.2.6.2'
"""XML Encoding"""



UNCOMPRESSED_TRANSFER_SYNTAXES = (
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
)
"""Native (uncompressed) transfer syntaxes, preferred first (PS3.5 A.1-A.3)."""

ALL_TS = (
    EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN,
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, JPEG_BASELINE_PROCESS_1, JPEG_EXTENDED_PROCESS_2_AND_4,
    JPEG_LOSSLESS_NON_HIERARCHICAL_PROCESS_14,
    JPEG_LOSSLESS_NON_HIERARCHICAL_FIRST_ORDER_PREDICTION_PROCESS_14_SELECTION_VALUE_1,
    JPEG_LS_LOSSLESS_IMAGE_COMPRESSION, JPEG_LS_LOSSY_NEAR_LOSSLESS_IMAGE_COMPRESSION,
    JPEG_2000_IMAGE_COMPRESSION_LOSSLESS_ONLY, JPEG_2000_IMAGE_COMPRESSION,
    JPEG_2000_PART_2_MULTI_COMPONENT_IMAGE_COMPRESSION_LOSSLESS_ONLY,
    JPEG_2000_PART_2_MULTI_COMPONENT_IMAGE_COMPRESSION, JPIP_REFERENCED, JPIP_REFERENCED_DEFLATE,
    MPEG2_MAIN_PROFILE_MAIN_LEVEL, MPEG2_MAIN_PROFILE_HIGH_LEVEL,
    MPEG_4_AVC_H_264_HIGH_PROFILE_LEVEL_4_1, MPEG_4_AVC_H_264_BD_COMPATIBLE_HIGH_PROFILE_LEVEL_4_1,
    MPEG_4_AVC_H_264_HIGH_PROFILE_LEVEL_4_2_FOR_2D_VIDEO,
    MPEG_4_AVC_H_264_HIGH_PROFILE_LEVEL_4_2_FOR_3D_VIDEO,
    MPEG_4_AVC_H_264_STEREO_HIGH_PROFILE_LEVEL_4_2, HEVC_H_265_MAIN_PROFILE_LEVEL_5_1,
    HEVC_H_265_MAIN_10_PROFILE_LEVEL_5_1, RLE_LOSSLESS,
)
"""Every transfer syntax that encodes a Data Set (PS3.5 Section 10), for an AE that accepts
whatever it is sent (``AE(..., supported_ts=uids.ALL_TS)``), as later releases of the
reference offer. RFC 2557 and XML encodings are left out: they encode no Data Set."""

# --- Verification (PS3.4 Annex A) ---
VERIFICATION_SOP_CLASS = '1.2.840.10008.1.1'
"""Verification SOP Class"""

# --- Storage (PS3.4 Annex B): the table is a module of its own ---
from .storage_uids import *  # noqa: E402,F401,F403 - CR_IMAGE_STORAGE ... (the reference's names)
from .storage_uids import storage_sop_classes as _storage_sop_classes  # noqa: E402

# --- Query/Retrieve (PS3.4 Annex C.6) ---
PATIENT_ROOT_FIND_SOP_CLASS = '1.2.840.10008.5.1.4.1.2.1.1'
"""Patient Root Query/Retrieve Information Model - FIND"""

PATIENT_ROOT_MOVE_SOP_CLASS = '1.2.840.10008.5.1.4.1.2.1.2'
"""Patient Root Query/Retrieve Information Model - MOVE"""

PATIENT_ROOT_GET_SOP_CLASS = '1.2.840.10008.5.1.4.1.2.1.3'
"""Patient Root Query/Retrieve Information Model - GET"""

STUDY_ROOT_FIND_SOP_CLASS = '1.2.840.10008.5.1.4.1.2.2.1'
"""Study Root Query/Retrieve Information Model - FIND"""

STUDY_ROOT_MOVE_SOP_CLASS = '1.2.840.10008.5.1.4.1.2.2.2'
"""Study Root Query/Retrieve Information Model - MOVE"""

STUDY_ROOT_GET_SOP_CLASS = '1.2.840.10008.5.1.4.1.2.2.3'
"""Study Root Query/Retrieve Information Model - GET"""

PATIENT_STUDY_ONLY_FIND_SOP_CLASS = '1.2.840.10008.5.1.4.1.2.3.1'
"""Patient/Study Only Query/Retrieve Information Model - FIND (retired)"""

PATIENT_STUDY_ONLY_MOVE_SOP_CLASS = '1.2.840.10008.5.1.4.1.2.3.2'
"""Patient/Study Only Query/Retrieve Information Model - MOVE (retired)"""

PATIENT_STUDY_ONLY_GET_SOP_CLASS = '1.2.840.10008.5.1.4.1.2.3.3'
"""Patient/Study Only Query/Retrieve Information Model - GET (retired)"""

# --- Basic Worklist Management (PS3.4 Annex K.6) ---
MODALITY_WORK_LIST_INFORMATION_FIND = '1.2.840.10008.5.1.4.31'
"""Modality Worklist Information Model - FIND"""

MODALITY_WORK_LIST_INFORMATION_FIND_SOP_CLASS = MODALITY_WORK_LIST_INFORMATION_FIND
"""The same UID under the name later releases of the reference use."""

# --- Storage Commitment (PS3.4 Annex J.3) ---
STORAGE_COMMITMENT_PUSH_MODEL_SOP_CLASS = '1.2.840.10008.1.20.1'
"""Storage Commitment Push Model SOP Class"""

STORAGE_COMMITMENT_SOP_CLASS = STORAGE_COMMITMENT_PUSH_MODEL_SOP_CLASS
"""The reference's name for the Storage Commitment Push Model SOP Class (its
``StorageCommitment`` service and ``storage_commitment_scu`` are tagged with it)."""

STORAGE_COMMITMENT_PUSH_MODEL_SOP_INSTANCE = '1.2.840.10008.1.20.1.1'
"""Storage Commitment Push Model SOP Instance: the well-known instance of PS3.4 J.3.5."""


def sop_class_name(uid: str) -> str:
    """pydicom's name of a UID (``UID(uid).name``; the UID itself when unknown), read from
    the copy of pydicom's tables for a SOP class when it matches the installed pydicom."""
    from . import pydicom_tables

    data = pydicom_tables.tables()
    if data is not None and uid in data.SOP_CLASS_NAMES:
        return data.SOP_CLASS_NAMES[uid]
    pydicom_tables.load_pydicom()  # an association's thread may be the first to need it
    from pydicom.uid import UID

    return UID(uid).name


#: Names computed on first access (PEP 562), because they need pydicom's dictionaries.
_LAZY_NAMES = ('STORAGE_SOP_CLASSES',)


def __getattr__(name: str) -> Any:
    """``STORAGE_SOP_CLASSES`` (a tuple of str): every Storage SOP Class (PS3.4 Annex B),
    the named constants (``storage_uids``) first, then the rest pydicom's UID dictionary knows.

    Built on first access and then kept as an ordinary module attribute.
    """
    if name == 'STORAGE_SOP_CLASSES':
        value = _storage_sop_classes()
        globals()[name] = value
        return value
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_NAMES))
