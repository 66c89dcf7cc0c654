"""The PySide6 desktop application: panels over the operations of ``dicomdesk.operations``.

The UI is the outer ring (see ARCHITECTURE.md): it calls only ``dicomdesk.operations`` (in worker
threads) and ``dicomdesk.config`` (the address book), never ``dicomdesk.net`` and never a socket.
"""
