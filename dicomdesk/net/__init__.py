"""dicomdesk's DICOM network stack (PS3.7 DIMSE, PS3.8 upper layer).

The public API follows the pynetdicom2 0.9.5 reference: the modules ``pdu``,
``userdataitems``, ``fsm``, ``dulprovider``, ``asceprovider``,
``applicationentity``, ``dimsemessages``, ``sopclass``, ``statuses``, ``uids``
and ``exceptions``. This package never imports Qt.
"""
