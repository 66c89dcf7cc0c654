"""The Storage SOP Class UIDs (PS3.4 Annex B, PS3.6 Annex A): a data module.

The reference's named constants for the storage classes (its chapter 13), one per class with
the name PS3.6 gives it, and ``storage_sop_classes()``: those first, then every other Storage
SOP Class pydicom's UID dictionary knows, so a Storage SCP accepts classes newer than this
table. ``uids`` re-exports all of it: ``uids.CT_IMAGE_STORAGE``, ``uids.STORAGE_SOP_CLASSES``.
"""

from __future__ import annotations

CR_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.1'
"""Computed Radiography Image Storage"""

DX_IMAGE_STORAGE_FOR_PRESENTATION = '1.2.840.10008.5.1.4.1.1.1.1'
"""Digital X-Ray Image Storage - For Presentation"""

DX_IMAGE_STORAGE_FOR_PROCESSING = '1.2.840.10008.5.1.4.1.1.1.1.1'
"""Digital X-Ray Image Storage - For Processing"""

MG_IMAGE_STORAGE_FOR_PRESENTATION = '1.2.840.10008.5.1.4.1.1.1.2'
"""Digital Mammography X-Ray Image Storage - For Presentation"""

MG_IMAGE_STORAGE_FOR_PROCESSING = '1.2.840.10008.5.1.4.1.1.1.2.1'
"""Digital Mammography X-Ray Image Storage - For Processing"""

IO_IMAGE_STORAGE_FOR_PRESENTATION = '1.2.840.10008.5.1.4.1.1.1.3'
"""Digital Intra-Oral X-Ray Image Storage - For Presentation"""

IO_IMAGE_STORAGE_FOR_PROCESSING = '1.2.840.10008.5.1.4.1.1.1.3.1'
"""Digital Intra-Oral X-Ray Image Storage - For Processing"""

CT_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.2'
"""CT Image Storage"""

ENHANCED_CT_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.2.1'
"""Enhanced CT Image Storage"""

LEGACY_ENHANCED_CT_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.2.2'
"""Legacy Converted Enhanced CT Image Storage"""

ULTRASOUND_MULTI_FRAME_IMAGE = '1.2.840.10008.5.1.4.1.1.3.1'
"""Ultrasound Multi-frame Image Storage"""

MR_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.4'
"""MR Image Storage"""

ENHANCED_MR_IMAGE = '1.2.840.10008.5.1.4.1.1.4.1'
"""Enhanced MR Image Storage"""

MR_SPECTROSCOPY_STORAGE = '1.2.840.10008.5.1.4.1.1.4.2'
"""MR Spectroscopy Storage"""

ENHANCED_MR_COLOR_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.4.3'
"""Enhanced MR Color Image Storage"""

LEGACY_CONVERTED_ENHANCED_MR_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.4.4'
"""Legacy Converted Enhanced MR Image Storage"""

ULTRASOUND_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.6.1'
"""Ultrasound Image Storage"""

ENHANCED_US_VOLUME_STORAGE = '1.2.840.10008.5.1.4.1.1.6.2'
"""Enhanced US Volume Storage"""

SC_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.7'
"""Secondary Capture Image Storage"""

MULTI_FRAME_SINGLE_BIT_SC_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.7.1'
"""Multi-frame Single Bit Secondary Capture Image Storage"""

MULTI_FRAME_GRAYSCALE_BYTE_SC_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.7.2'
"""Multi-frame Grayscale Byte Secondary Capture Image Storage"""

MULTI_FRAME_GRAYSCALE_WORD_SC_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.7.3'
"""Multi-frame Grayscale Word Secondary Capture Image Storage"""

MULTI_FRAME_TRUE_COLOR_SC_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.7.4'
"""Multi-frame True Color Secondary Capture Image Storage"""

TWELVE_LEAD_ECG_WAVEFORM_STORAGE = '1.2.840.10008.5.1.4.1.1.9.1.1'
"""12-lead ECG Waveform Storage"""

GENERAL_ECG_WAVEFORM_STORAGE = '1.2.840.10008.5.1.4.1.1.9.1.2'
"""General ECG Waveform Storage"""

AMBULATORY_ECG_WAVEFORM_STORAGE = '1.2.840.10008.5.1.4.1.1.9.1.3'
"""Ambulatory ECG Waveform Storage"""

HEMODYNAMIC_WAVEFORM_STORAGE = '1.2.840.10008.5.1.4.1.1.9.2.1'
"""Hemodynamic Waveform Storage"""

CARDIAC_ELECTROPHYSIOLOGY_WAVEFORM_STORAGE = '1.2.840.10008.5.1.4.1.1.9.3.1'
"""Cardiac Electrophysiology Waveform Storage"""

BASIC_VOICE_AUDIO_WAVEFORM_STORAGE = '1.2.840.10008.5.1.4.1.1.9.4.1'
"""Basic Voice Audio Waveform Storage"""

GENERAL_AUDIO_WAVEFORM_STORAGE = '1.2.840.10008.5.1.4.1.1.9.4.2'
"""General Audio Waveform Storage"""

ARTERIAL_PULSE_WAVEFORM_STORAGE = '1.2.840.10008.5.1.4.1.1.9.5.1'
"""Arterial Pulse Waveform Storage"""

RESPIRATORY_WAVEFORM_STORAGE = '1.2.840.10008.5.1.4.1.1.9.6.1'
"""Respiratory Waveform Storage"""

GRAYSCALE_SOFTCOPY_PRESENTATION_STATE_STORAGE = '1.2.840.10008.5.1.4.1.1.11.1'
"""Grayscale Softcopy Presentation State Storage"""

COLOR_SOFTCOPY_PRESENTATION_STATE_STORAGE = '1.2.840.10008.5.1.4.1.1.11.2'
"""Color Softcopy Presentation State Storage"""

PSEUDO_COLOR_SOFTCOPY_PRESENTATION_STATE_STORAGE = '1.2.840.10008.5.1.4.1.1.11.3'
"""Pseudo-Color Softcopy Presentation State Storage"""

BLENDING_SOFTCOPY_PRESENTATION_STATE_STORAGE = '1.2.840.10008.5.1.4.1.1.11.4'
"""Blending Softcopy Presentation State Storage"""

XA_XRF_GRAYSCALE_SOFTCOPY_PRESENTATION_STATE_STORAGE = '1.2.840.10008.5.1.4.1.1.11.5'
"""XA/XRF Grayscale Softcopy Presentation State Storage"""

GRAYSCALE_PLANAR_MPR_VOLUMETRIC_PRESENTATION_STATE_STORAGE = '1.2.840.10008.5.1.4.1.1.11.6'
"""Grayscale Planar MPR Volumetric Presentation State Storage"""

COMPOSITING_PLANAR_MPR_VOLUMETRIC_PRESENTATION_STATE_STORAGE = '1.2.840.10008.5.1.4.1.1.11.7'
"""Compositing Planar MPR Volumetric Presentation State Storage"""

ADVANCED_BLENDING_PRESENTATION_STATE_STORAGE = '1.2.840.10008.5.1.4.1.1.11.8'
"""Advanced Blending Presentation State Storage"""

VOLUME_RENDERING_VOLUMETRIC_PRESENTATION_STATE_STORAGE = '1.2.840.10008.5.1.4.1.1.11.9'
"""Volume Rendering Volumetric Presentation State Storage"""

SEGMENTED_VOLUME_RENDERING_VOLUMETRIC_PRESENTATION_STATE_STORAGE = '1.2.840.10008.5.1.4.1.1.11.10'
"""Segmented Volume Rendering Volumetric Presentation State Storage"""

MULTIPLE_VOLUME_RENDERING_VOLUMETRIC_PRESENTATION_STATE_STORAGE = '1.2.840.10008.5.1.4.1.1.11.11'
"""Multiple Volume Rendering Volumetric Presentation State Storage"""

XA_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.12.1'
"""X-Ray Angiographic Image Storage"""

ENHANCED_XA_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.12.1.1'
"""Enhanced XA Image Storage"""

RF_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.12.2'
"""X-Ray Radiofluoroscopic Image Storage"""

ENHANCED_RF_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.12.2.1'
"""Enhanced XRF Image Storage"""

X_RAY_3D_ANGIOGRAPHIC_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.13.1.1'
"""X-Ray 3D Angiographic Image Storage"""

X_RAY_3D_CRANIOFACIAL_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.13.1.2'
"""X-Ray 3D Craniofacial Image Storage"""

BREAST_TOMOSYNTHESIS_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.13.1.3'
"""Breast Tomosynthesis Image Storage"""

BREAST_PROJECTION_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION = '1.2.840.10008.5.1.4.1.1.13.1.4'
"""Breast Projection X-Ray Image Storage - For Presentation"""

BREAST_PROJECTION_X_RAY_IMAGE_STORAGE_FOR_PROCESSING = '1.2.840.10008.5.1.4.1.1.13.1.5'
"""Breast Projection X-Ray Image Storage - For Processing"""

INTRAVASCULAR_OPTICAL_COHERENCE_TOMOGRAPHY_IMAGE_STORAGE_FOR_PRESENTATION = '1.2.840.10008.5.1.4.1.1.14.1'
"""Intravascular Optical Coherence Tomography Image Storage - For Presentation"""

INTRAVASCULAR_OPTICAL_COHERENCE_TOMOGRAPHY_IMAGE_STORAGE_FOR_PROCESSING = '1.2.840.10008.5.1.4.1.1.14.2'
"""Intravascular Optical Coherence Tomography Image Storage - For Processing"""

NM_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.20'
"""Nuclear Medicine Image Storage"""

PARAMETRIC_MAP_STORAGE = '1.2.840.10008.5.1.4.1.1.30'
"""Parametric Map Storage"""

RAW_DATA_STORAGE = '1.2.840.10008.5.1.4.1.1.66'
"""Raw Data Storage"""

SPATIAL_REGISTRATION = '1.2.840.10008.5.1.4.1.1.66.1'
"""Spatial Registration Storage"""

SPATIAL_FIDUCIALS_STORAGE = '1.2.840.10008.5.1.4.1.1.66.2'
"""Spatial Fiducials Storage"""

DEFORMABLE_SPATIAL_REGISTRATION_STORAGE = '1.2.840.10008.5.1.4.1.1.66.3'
"""Deformable Spatial Registration Storage"""

SEGMENTATION_STORAGE = '1.2.840.10008.5.1.4.1.1.66.4'
"""Segmentation Storage"""

SURFACE_SEGMENTATION_STORAGE = '1.2.840.10008.5.1.4.1.1.66.5'
"""Surface Segmentation Storage"""

TRACTOGRAPHY_RESULTS_STORAGE = '1.2.840.10008.5.1.4.1.1.66.6'
"""Tractography Results Storage"""

REAL_WORLD_VALUE_MAPPING_STORAGE = '1.2.840.10008.5.1.4.1.1.67'
"""Real World Value Mapping Storage"""

SURFACE_SCAN_MESH_STORAGE = '1.2.840.10008.5.1.4.1.1.68.1'
"""Surface Scan Mesh Storage"""

SURFACE_SCAN_POINT_CLOUD_STORAGE = '1.2.840.10008.5.1.4.1.1.68.2'
"""Surface Scan Point Cloud Storage"""

VL_ENDOSCOPIC_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.77.1.1'
"""VL Endoscopic Image Storage"""

VIDEO_ENDOSCOPIC_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.77.1.1.1'
"""Video Endoscopic Image Storage"""

VL_MICROSCOPIC_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.77.1.2'
"""VL Microscopic Image Storage"""

VIDEO_MICROSCOPIC_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.77.1.2.1'
"""Video Microscopic Image Storage"""

VL_SLIDE_COORDINATES_MICROSCOPIC_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.77.1.3'
"""VL Slide-Coordinates Microscopic Image Storage"""

VL_PHOTOGRAPHIC_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.77.1.4'
"""VL Photographic Image Storage"""

VIDEO_PHOTOGRAPHIC_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.77.1.4.1'
"""Video Photographic Image Storage"""

OPHTHALMIC_PHOTOGRAPHY_8_BIT_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.77.1.5.1'
"""Ophthalmic Photography 8 Bit Image Storage"""

OPHTHALMIC_PHOTOGRAPHY_16_BIT_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.77.1.5.2'
"""Ophthalmic Photography 16 Bit Image Storage"""

STEREOMETRIC_RELATIONSHIP_STORAGE = '1.2.840.10008.5.1.4.1.1.77.1.5.3'
"""Stereometric Relationship Storage"""

OPHTHALMIC_TOMOGRAPHY_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.77.1.5.4'
"""Ophthalmic Tomography Image Storage"""

WIDE_FIELD_OPHTHALMIC_PHOTOGRAPHY_STEREOGRAPHIC_PROJECTION_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.77.1.5.5'
"""Wide Field Ophthalmic Photography Stereographic Projection Image Storage"""

WIDE_FIELD_OPHTHALMIC_PHOTOGRAPHY_3D_COORDINATES_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.77.1.5.6'
"""Wide Field Ophthalmic Photography 3D Coordinates Image Storage"""

OPHTHALMIC_OPTICAL_COHERENCE_TOMOGRAPHY_EN_FACE_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.77.1.5.7'
"""Ophthalmic Optical Coherence Tomography En Face Image Storage"""

OPHTHALMIC_OPTICAL_COHERENCE_TOMOGRAPHY_B_SCAN_VOLUME_ANALYSIS_STORAGE = '1.2.840.10008.5.1.4.1.1.77.1.5.8'
"""Ophthalmic Optical Coherence Tomography B-scan Volume Analysis Storage"""

VL_WHOLE_SLIDE_MICROSCOPY_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.77.1.6'
"""VL Whole Slide Microscopy Image Storage"""

LENSOMETRY_MEASUREMENTS_STORAGE = '1.2.840.10008.5.1.4.1.1.78.1'
"""Lensometry Measurements Storage"""

AUTOREFRACTION_MEASUREMENTS_STORAGE = '1.2.840.10008.5.1.4.1.1.78.2'
"""Autorefraction Measurements Storage"""

KERATOMETRY_MEASUREMENTS_STORAGE = '1.2.840.10008.5.1.4.1.1.78.3'
"""Keratometry Measurements Storage"""

SUBJECTIVE_REFRACTION_MEASUREMENTS_STORAGE = '1.2.840.10008.5.1.4.1.1.78.4'
"""Subjective Refraction Measurements Storage"""

VISUAL_ACUITY_MEASUREMENTS_STORAGE = '1.2.840.10008.5.1.4.1.1.78.5'
"""Visual Acuity Measurements Storage"""

SPECTACLE_PRESCRIPTION_REPORT_STORAGE = '1.2.840.10008.5.1.4.1.1.78.6'
"""Spectacle Prescription Report Storage"""

OPHTHALMIC_AXIAL_MEASUREMENTS_STORAGE = '1.2.840.10008.5.1.4.1.1.78.7'
"""Ophthalmic Axial Measurements Storage"""

INTRAOCULAR_LENS_CALCULATIONS_STORAGE = '1.2.840.10008.5.1.4.1.1.78.8'
"""Intraocular Lens Calculations Storage"""

MACULAR_GRID_THICKNESS_AND_VOLUME_REPORT_STORAGE = '1.2.840.10008.5.1.4.1.1.79.1'
"""Macular Grid Thickness and Volume Report Storage"""

OPHTHALMIC_VISUAL_FIELD_STATIC_PERIMETRY_MEASUREMENTS_STORAGE = '1.2.840.10008.5.1.4.1.1.80.1'
"""Ophthalmic Visual Field Static Perimetry Measurements Storage"""

OPHTHALMIC_THICKNESS_MAP_STORAGE = '1.2.840.10008.5.1.4.1.1.81.1'
"""Ophthalmic Thickness Map Storage"""

CORNEAL_TOPOGRAPHY_MAP_STORAGE = '1.2.840.10008.5.1.4.1.1.82.1'
"""Corneal Topography Map Storage"""

BASIC_TEXT_SR_STORAGE = '1.2.840.10008.5.1.4.1.1.88.11'
"""Basic Text SR Storage"""

ENHANCED_SR_STORAGE = '1.2.840.10008.5.1.4.1.1.88.22'
"""Enhanced SR Storage"""

COMPREHENSIVE_SR_STORAGE = '1.2.840.10008.5.1.4.1.1.88.33'
"""Comprehensive SR Storage"""

COMPREHENSIVE_3D_SR_STORAGE = '1.2.840.10008.5.1.4.1.1.88.34'
"""Comprehensive 3D SR Storage"""

EXTENSIBLE_SR_STORAGE = '1.2.840.10008.5.1.4.1.1.88.35'
"""Extensible SR Storage"""

PROCEDURE_LOG_STORAGE = '1.2.840.10008.5.1.4.1.1.88.40'
"""Procedure Log Storage"""

MAMMOGRAPHY_CAD_SR_STORAGE = '1.2.840.10008.5.1.4.1.1.88.50'
"""Mammography CAD SR Storage"""

KEY_OBJECT_SELECTION_DOCUMENT_STORAGE = '1.2.840.10008.5.1.4.1.1.88.59'
"""Key Object Selection Document Storage"""

CHEST_CAD_SR_STORAGE = '1.2.840.10008.5.1.4.1.1.88.65'
"""Chest CAD SR Storage"""

XRAY_RADIATION_DOSE_SR_STORAGE = '1.2.840.10008.5.1.4.1.1.88.67'
"""X-Ray Radiation Dose SR Storage"""

RADIOPHARMACEUTICAL_RADIATION_DOSE_SR_STORAGE = '1.2.840.10008.5.1.4.1.1.88.68'
"""Radiopharmaceutical Radiation Dose SR Storage"""

COLON_CAD_SR_STORAGE = '1.2.840.10008.5.1.4.1.1.88.69'
"""Colon CAD SR Storage"""

IMPLANTATION_PLAN_SR_STORAGE = '1.2.840.10008.5.1.4.1.1.88.70'
"""Implantation Plan SR Storage"""

ACQUISITION_CONTEXT_SR_STORAGE = '1.2.840.10008.5.1.4.1.1.88.71'
"""Acquisition Context SR Storage"""

SIMPLIFIED_ADULT_ECHO_SR_STORAGE = '1.2.840.10008.5.1.4.1.1.88.72'
"""Simplified Adult Echo SR Storage"""

PATIENT_RADIATION_DOSE_SR_STORAGE = '1.2.840.10008.5.1.4.1.1.88.73'
"""Patient Radiation Dose SR Storage"""

CONTENT_ASSESSMENT_RESULTS_STORAGE = '1.2.840.10008.5.1.4.1.1.90.1'
"""Content Assessment Results Storage"""

ENCAPSULATED_PDF_STORAGE = '1.2.840.10008.5.1.4.1.1.104.1'
"""Encapsulated PDF Storage"""

ENCAPSULATED_CDA_STORAGE = '1.2.840.10008.5.1.4.1.1.104.2'
"""Encapsulated CDA Storage"""

PET_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.128'
"""Positron Emission Tomography Image Storage"""

LEGACY_CONVERTED_ENHANCED_PET_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.128.1'
"""Legacy Converted Enhanced PET Image Storage"""

STANDALONE_PET_CURVE_STORAGE = '1.2.840.10008.5.1.4.1.1.129'
"""Standalone PET Curve Storage"""

ENHANCED_PET_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.130'
"""Enhanced PET Image Storage"""

BASIC_STRUCTURED_DISPLAY_STORAGE = '1.2.840.10008.5.1.4.1.1.131'
"""Basic Structured Display Storage"""

CT_DEFINED_PROCEDURE_PROTOCOL_STORAGE = '1.2.840.10008.5.1.4.1.1.200.1'
"""CT Defined Procedure Protocol Storage"""

CT_PERFORMED_PROCEDURE_PROTOCOL_STORAGE = '1.2.840.10008.5.1.4.1.1.200.2'
"""CT Performed Procedure Protocol Storage"""

PROTOCOL_APPROVAL_STORAGE = '1.2.840.10008.5.1.4.1.1.200.3'
"""Protocol Approval Storage"""

RT_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.481.1'
"""RT Image Storage"""

RT_DOSE_STORAGE = '1.2.840.10008.5.1.4.1.1.481.2'
"""RT Dose Storage"""

RT_STRUCTURE_SET_STORAGE = '1.2.840.10008.5.1.4.1.1.481.3'
"""RT Structure Set Storage"""

RT_BEAMS_TREATMENT_RECORD_STORAGE = '1.2.840.10008.5.1.4.1.1.481.4'
"""RT Beams Treatment Record Storage"""

RT_PLAN_STORAGE = '1.2.840.10008.5.1.4.1.1.481.5'
"""RT Plan Storage"""

RT_BRACHY_TREATMENT_RECORD_STORAGE = '1.2.840.10008.5.1.4.1.1.481.6'
"""RT Brachy Treatment Record Storage"""

RT_TREATMENT_SUMMARY_RECORD_STORAGE = '1.2.840.10008.5.1.4.1.1.481.7'
"""RT Treatment Summary Record Storage"""

RT_ION_PLAN_STORAGE = '1.2.840.10008.5.1.4.1.1.481.8'
"""RT Ion Plan Storage"""

RT_ION_BEAMS_TREATMENT_RECORD_STORAGE = '1.2.840.10008.5.1.4.1.1.481.9'
"""RT Ion Beams Treatment Record Storage"""

DICOS_CT_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.501.1'
"""DICOS CT Image Storage"""

DICOS_DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION = '1.2.840.10008.5.1.4.1.1.501.2.1'
"""DICOS Digital X-Ray Image Storage - For Presentation"""

DICOS_DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PROCESSING = '1.2.840.10008.5.1.4.1.1.501.2.2'
"""DICOS Digital X-Ray Image Storage - For Processing"""

DICOS_THREAT_DETECTION_REPORT_STORAGE = '1.2.840.10008.5.1.4.1.1.501.3'
"""DICOS Threat Detection Report Storage"""

DICOS_2D_AIT_STORAGE = '1.2.840.10008.5.1.4.1.1.501.4'
"""DICOS 2D AIT Storage"""

DICOS_3D_AIT_STORAGE = '1.2.840.10008.5.1.4.1.1.501.5'
"""DICOS 3D AIT Storage"""

DICOS_QR_STORAGE = '1.2.840.10008.5.1.4.1.1.501.6'
"""DICOS Quadrupole Resonance (QR) Storage"""

EDDY_CURRENT_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.601.1'
"""Eddy Current Image Storage"""

EDDY_CURRENT_MULTI_FRAME_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.601.2'
"""Eddy Current Multi-frame Image Storage"""


def _pydicom_storage_classes() -> list[str]:
    """Every Storage SOP Class (PS3.4 B.5) in pydicom's UID dictionary: from the copy of
    pydicom's tables when it matches the installed pydicom (``pydicom_tables``: a server
    starts without importing pydicom), else from pydicom itself."""
    from . import pydicom_tables

    data = pydicom_tables.tables()
    if data is not None:
        return list(data.STORAGE_SOP_CLASSES)
    return pydicom_tables.storage_classes_from_pydicom()


#: The constants above, in their order: the start of ``storage_sop_classes()``.
__all__ = [key for key, value in globals().items()
           if key.isupper() and isinstance(value, str) and value.startswith('1.2.840.10008.5.1.4.1.1.')]
_NAMED_STORAGE_CLASSES = [globals()[key] for key in __all__]


def storage_sop_classes() -> tuple[str, ...]:
    """All Storage SOP Classes: the named constants first, then the rest pydicom knows."""
    return tuple(dict.fromkeys(_NAMED_STORAGE_CLASSES + _pydicom_storage_classes()))
