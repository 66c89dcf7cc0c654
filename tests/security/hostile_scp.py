"""A scripted hostile SCP on 127.0.0.1, for attacking dicomdesk's client commands.

``HostileSCP(script)`` listens on a free port; for each connection it reads the
A-ASSOCIATE-RQ, accepts every proposed context in its first transfer syntax (and grants the
SCP role for every role the requestor asked), then hands the socket to
``script(peer, request)``: the script decides every byte that follows (responses with wrong
Message IDs, truncated data sets, an A-ABORT mid-transfer, ...). Raw sockets and our own PDU
classes only, so nothing on this side corrects what the script sends.
"""

from __future__ import annotations

import socket
import struct
import threading
from typing import Any, Callable

from dicomdesk.net import pdu, userdataitems
from dicomdesk.net.negotiation import APPLICATION_CONTEXT_NAME, build_user_information
from dicomdesk.net.commandset import decode_command, encode_fields

from serving import LOCALHOST, read_pdu


class ScriptedPeer:
    """The accepted association, as the script sees it."""

    def __init__(self, sock: socket.socket, request: pdu.AAssociateRqPDU):
        self.sock = sock
        self.request = request
        #: SOP Class UID -> presentation context ID, as the requestor proposed them
        self.contexts = {ctx.abs_sub_item.name: ctx.context_id for ctx in request.presentation_contexts}

    def context_of(self, sop_class: str) -> int:
        return self.contexts[sop_class]

    def read_command(self) -> tuple[Any, int]:
        """The next message's command set (its data set PDVs, if any, are read and dropped:
        in the same P-DATA-TF as the command or in the following ones)."""
        command = b""
        found: tuple[Any, int] | None = None
        while True:
            raw = read_pdu(self.sock)
            if not raw:
                raise ConnectionError("the requestor closed the connection")
            if raw[0] != 0x04:
                raise ConnectionError(f"PDU type 0x{raw[0]:02x} instead of P-DATA-TF")
            for item in pdu.PDataTfPDU.decode(raw).data_value_items:
                if item.is_command:
                    command += item.data_value[1:]
                    if item.is_last:
                        ds = decode_command(command)
                        found = (ds, item.context_id)
                        if int(ds.get("CommandDataSetType", 0x0101)) == 0x0101:
                            return found
                elif item.is_last and found is not None:
                    return found

    def send_command(self, pc_id: int, fields: dict[int, Any]) -> None:
        self.send_pdv(pc_id, encode_fields(fields), command=True, last=True)

    def send_pdv(self, pc_id: int, value: bytes, *, command: bool, last: bool) -> None:
        header = (1 if command else 0) | (2 if last else 0)
        item = pdu.PresentationDataValueItem(pc_id, bytes((header,)) + value)
        self.sock.sendall(pdu.PDataTfPDU([item]).encode())

    def abort(self) -> None:
        self.sock.sendall(pdu.AAbortPDU(0, 0).encode())

    def answer_release(self) -> None:
        """Read until the A-RELEASE-RQ and answer it (or until the requestor goes)."""
        while True:
            raw = read_pdu(self.sock)
            if not raw:
                return
            if raw[0] == 0x05:
                self.sock.sendall(pdu.AReleaseRpPDU().encode())
                return


class HostileSCP:
    """Accepts associations on a free port and runs ``script(peer, request)`` on each."""

    def __init__(self, script: Callable[[ScriptedPeer, pdu.AAssociateRqPDU], None]):
        self.script = script
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind((LOCALHOST, 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.errors: list[BaseException] = []
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> HostileSCP:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.listener.close()
        self._thread.join(timeout=30)

    def _serve(self) -> None:
        try:
            sock, _ = self.listener.accept()
        except OSError:
            return
        sock.settimeout(30)
        try:
            raw = read_pdu(sock)
            request = pdu.AAssociateRqPDU.decode(raw)
            sock.sendall(_accept(request).encode())
            self.script(ScriptedPeer(sock, request), request)
        except (OSError, ConnectionError) as exc:  # the client went away: that is its right
            self.errors.append(exc)
        finally:
            self.done.set()
            sock.close()


def _accept(request: pdu.AAssociateRqPDU) -> pdu.AAssociateAcPDU:
    items: list[Any] = [pdu.ApplicationContextItem(APPLICATION_CONTEXT_NAME)]
    for ctx in request.presentation_contexts:
        items.append(pdu.PresentationContextItemAC(ctx.context_id, 0, ctx.ts_sub_items[0]))
    roles = [userdataitems.ScpScuRoleSelectionSubItem(sub.sop_class_uid, sub.scu_role, sub.scp_role)
             for sub in (request.user_information.user_data if request.user_information else [])
             if isinstance(sub, userdataitems.ScpScuRoleSelectionSubItem)]
    items.append(build_user_information(16384, role_selection=roles))
    return pdu.AAssociateAcPDU(request.called_ae_title, request.calling_ae_title, items)


def element(group: int, elem: int, vr: bytes, value: bytes, *, length: int | None = None) -> bytes:
    """One Explicit VR Little Endian element; ``length`` may lie about the value's length."""
    size = len(value) if length is None else length
    if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT"):
        return struct.pack("<HH2s2xL", group, elem, vr, size) + value
    return struct.pack("<HH2sH", group, elem, vr, size) + value
