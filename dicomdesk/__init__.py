"""dicomdesk: a desktop DICOM network client and server."""

__version__ = "0.1.0"
