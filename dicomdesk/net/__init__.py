"""dicomdesk's DICOM network stack (PS3.7 DIMSE, PS3.8 upper layer).

The public API follows the pynetdicom2 0.9.5 reference: the modules ``pdu``,
``userdataitems``, ``fsm``, ``dulprovider``, ``asceprovider``,
``applicationentity``, ``dimsemessages``, ``sopclass``, ``statuses``, ``uids``
and ``exceptions``. Jobs those modules did beside the reference's names live in modules
of their own (``negotiation``, ``association``, ``fragmentation``, ``state_table``,
``socket_writer``, ``admission``, ``dataset_encoding``, ``storage_uids``); the reference's
modules re-export what the reference documents there. This package never imports Qt.
"""
