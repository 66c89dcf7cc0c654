"""The storage SCU (PS3.4 B.2, C-STORE PS3.7 9.1.1): ``storage_scu`` and its three steps.

A file is streamed from disk: its header is read (``part10``), and the open file, positioned
at the first byte of the data set, becomes the message's data set, so the association reads
it in PDV-sized pieces (or hands it to ``os.sendfile``) and the object is never held whole in
memory. Only when the accepted transfer syntax differs from the file's (both uncompressed,
PS3.5 A.1-A.5) is the file decoded and re-encoded (``storage_convert``). The steps are public
(``prepare_store``, ``send_prepared``, ``receive_store_status``) so that a sender of many
objects prepares the next while the peer answers the last.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, BinaryIO, Container

from .. import dimsemessages, statuses, uids
from ..asceprovider import encode_data_set
from ..inflate import InflateLimitExceeded
from ..part10 import (CONVERTIBLE_TRANSFER_SYNTAXES, DEFLATED_TRANSFER_SYNTAXES, SOP_UID_TAGS,
                      Part10Error, Part10Header, clean_uid, pydicom_warnings_logged, read_part10_header,
                      scan_header, transfer_syntax_name)
from ..part10_structure import check_deflated_structure, check_structure, check_structure_of
from .base import sop_classes_on_first_use

logger = logging.getLogger(__name__)


def _is_dataset(value: Any) -> bool:
    """True for a pydicom ``Dataset``; never imports pydicom (nobody holds a Dataset unless
    pydicom is loaded already)."""
    module = sys.modules.get("pydicom.dataset")
    return module is not None and isinstance(value, module.Dataset)


class StorageNotSent(ValueError):
    """A C-STORE that was not attempted: nothing went on the wire, the association is intact."""


class _DataSetReader:
    """The data set part of a file, read in place; reports progress; pads an odd length.

    PS3.5 A.5: a deflated data set shall be padded to an even length; some files are not,
    and a strict peer (DCMTK) aborts on an odd PDV. Padding the stream with one trailing
    NUL byte is exactly what the standard asks for.
    """

    def __init__(self, fp: BinaryIO, length: int, pad: bool, on_bytes: Any):
        self._fp = fp
        self._length = length
        self._pad = pad and length % 2 == 1
        self._on_bytes = on_bytes

    def file_region(self) -> tuple[int, int] | None:
        """(offset, length) of the data set in the file, for ``fragmentation.FileRegion``:
        the DUL then hands the bytes from the page cache to the socket (``os.sendfile``)
        without reading them into Python. None when a pad byte must be added."""
        if self._pad:
            return None
        try:
            self._fp.fileno()
            return self._fp.tell(), self._length
        except (OSError, AttributeError, ValueError):  # not a real file
            return None

    def fileno(self) -> int:
        return self._fp.fileno()

    def read_region(self, offset: int, length: int) -> bytes:
        """The bytes of a region (a TLS socket, or a trace, needs them in memory)."""
        data = os.pread(self._fp.fileno(), length, offset)
        while len(data) < length:
            more = os.pread(self._fp.fileno(), length - len(data), offset + len(data))
            if not more:
                raise OSError(f"the file ended {length - len(data)} bytes early while sending")
            data += more
        return data

    def sent(self, count: int) -> None:
        """Progress of a data set sent as file regions (``on_bytes``)."""
        if count and self._on_bytes is not None:
            self._on_bytes(count)

    def readinto(self, view: Any) -> int:
        count = self._fp.readinto(view)
        if not count and self._pad and len(view):
            self._pad = False
            view[0] = 0
            count = 1
        if count and self._on_bytes is not None:
            self._on_bytes(count)
        return count

    def read(self, size: int = -1) -> bytes:
        buf = bytearray(size if size >= 0 else 1 << 20)
        count = self.readinto(memoryview(buf))
        return bytes(buf[:count])


def _prepare_plain_file(rq: Any, ctx: Any, path: Any, on_bytes: Any,
                        known: Part10Header | None) -> BinaryIO | None:
    """The common case of ``_prepare`` in one open: a plain Part-10 file in the context's syntax.

    The header is read once (``scan_header``; only the data set's elements when the caller
    has ``known`` the file's header from its planning), the structure check starts where
    that walk stopped, and the same open file is then streamed. Returns None (file closed)
    for anything else, and the general path decides, with the same checks and messages.
    """
    if known is not None and known.transfer_syntax != ctx.supported_ts:
        return None
    try:
        fp = open(path, "rb")
    except (OSError, TypeError):
        return None
    try:
        scan = scan_header(fp, SOP_UID_TAGS, raw=True, known=known)
        if scan is None or scan.transfer_syntax != ctx.supported_ts:
            fp.close()
            return None
        if not scan.sop_class_uid or not scan.sop_instance_uid:
            fp.close()
            return None
        check_structure_of(fp, scan, scan.stop_offset)
        length = fp.seek(0, os.SEEK_END) - scan.data_offset
    except (OSError, Part10Error):
        fp.close()
        return None
    except BaseException:
        fp.close()
        raise
    fp.seek(scan.data_offset)
    rq.affected_sop_instance_uid = scan.sop_instance_uid
    rq.data_set = _DataSetReader(fp, length, False, on_bytes)
    return fp


def _prepare(rq: Any, ctx: Any, dataset: Any, on_bytes: Any, known: Part10Header | None = None
             ) -> BinaryIO | None:
    """Fill the C-STORE-RQ's instance UID and data set; return the file to close, if any."""
    if _is_dataset(dataset):
        rq.affected_sop_instance_uid = clean_uid(dataset.get("SOPInstanceUID"))
        meta = getattr(dataset, "file_meta", None)
        meta_ts = clean_uid(meta.get("TransferSyntaxUID")) if meta is not None else ""
        if meta_ts and meta_ts != ctx.supported_ts and meta_ts not in CONVERTIBLE_TRANSFER_SYNTAXES:
            raise StorageNotSent(f"a data set in {transfer_syntax_name(meta_ts)} cannot be sent as "
                                 f"{transfer_syntax_name(ctx.supported_ts)}")
        rq.data_set = dataset
        return None
    fast = _prepare_plain_file(rq, ctx, dataset, on_bytes, known)
    if fast is not None:
        return fast
    try:
        header = read_part10_header(dataset)
    except OSError as exc:
        raise StorageNotSent(f"cannot read the file: {exc.strerror or exc}") from exc
    except Part10Error as exc:
        raise StorageNotSent(str(exc)) from exc
    rq.affected_sop_instance_uid = header.sop_instance_uid
    try:
        check_structure(dataset, header)  # a truncated file would make the peer abort
    except Part10Error as exc:
        raise StorageNotSent(str(exc)) from exc
    if header.transfer_syntax == ctx.supported_ts:
        try:
            fp = open(dataset, "rb")
        except OSError as exc:
            raise StorageNotSent(f"cannot read the file: {exc.strerror or exc}") from exc
        length = fp.seek(0, os.SEEK_END) - header.data_offset
        fp.seek(header.data_offset)
        pad = header.transfer_syntax == uids.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN
        rq.data_set = _DataSetReader(fp, length, pad, on_bytes)
        return fp
    if header.transfer_syntax in CONVERTIBLE_TRANSFER_SYNTAXES \
            and ctx.supported_ts in CONVERTIBLE_TRANSFER_SYNTAXES:
        logger.debug("converting %s from %s to %s", dataset, header.transfer_syntax, ctx.supported_ts)
        if header.transfer_syntax in DEFLATED_TRANSFER_SYNTAXES:
            _check_inflated_size(dataset, header)  # conversion holds the inflated data set
        from .storage_convert import converted_dataset  # with pydicom, on this path only

        try:
            with pydicom_warnings_logged():
                rq.data_set = encode_data_set(converted_dataset(dataset, ctx.supported_ts),
                                              ctx.supported_ts)
        except Exception as exc:  # pydicom raises many types on a damaged file
            raise StorageNotSent(f"cannot convert to {transfer_syntax_name(ctx.supported_ts)}: {exc}") from exc
        return None
    raise StorageNotSent(f"the file's transfer syntax {transfer_syntax_name(header.transfer_syntax)} "
                         f"({header.transfer_syntax}) cannot be converted to {transfer_syntax_name(ctx.supported_ts)}")


#: Converting a deflated file to another syntax holds the whole inflated data set in memory
#: (pydicom), so it is done only up to this size; a larger one is sent only as it is stored
#: (to a peer accepting Deflated Explicit VR Little Endian), streamed from the file.
MAX_CONVERTED_INFLATED_SIZE = 64 * 1024 * 1024


def _check_inflated_size(path: Any, header: Part10Header) -> None:
    """Refuse (``StorageNotSent``) to convert a deflated file that inflates past the bound:
    pydicom would hold all of it in memory (a deflate bomb taking the server with it)."""
    try:
        with open(path, "rb") as fp:
            check_deflated_structure(fp, header.data_offset, MAX_CONVERTED_INFLATED_SIZE)
    except InflateLimitExceeded as exc:
        raise StorageNotSent(f"not converted: {exc}") from exc
    except OSError as exc:
        raise StorageNotSent(f"cannot read the file: {exc.strerror or exc}") from exc
    except Part10Error as exc:
        raise StorageNotSent(str(exc)) from exc


class PreparedStore:
    """A C-STORE-RQ ready to go and the open file its data set streams from (if any).

    ``prepare_store`` does all of a storage SCU's own work on an object (open, header,
    structure check, request) before anything is sent, so a caller sending many objects
    can prepare the next one while the peer is still answering the previous one. The
    file stays open until ``send_prepared`` has sent it or ``close()`` is called (safe
    twice; also a context manager), so an unsent preparation never leaks a descriptor.
    """

    __slots__ = ("rq", "ctx", "_fp")

    def __init__(self, rq: Any, ctx: Any, fp: BinaryIO | None):
        self.rq, self.ctx, self._fp = rq, ctx, fp

    @property
    def message_id(self) -> int:
        return self.rq.message_id

    def close(self) -> None:
        fp, self._fp = self._fp, None
        if fp is not None:
            fp.close()

    def __enter__(self) -> "PreparedStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def prepare_store(ctx: Any, dataset: Any, msg_id: int, *, on_bytes: Any = None,
                  move_originator: tuple[str, int] | None = None,
                  header: Part10Header | None = None) -> PreparedStore:
    """Build the C-STORE-RQ for ``dataset`` (a pydicom Dataset or a file name) on ``ctx``.

    Nothing touches the association. Raises ``StorageNotSent`` (nothing opened is left
    open) for the reasons ``storage_scu`` documents; ``on_bytes(n)`` is called later, as
    ``send_prepared`` streams the file. ``move_originator`` — (AE title, Message ID) of the
    C-MOVE-RQ this store is a sub-operation of — fills Move Originator Application Entity
    Title and Move Originator Message ID (PS3.7 9.3.1.1, required then by PS3.4 C.4.2.2).
    ``header`` — the file's transfer syntax and data set offset as the caller's planning read
    them (``FileInfo.header``) — spares reading the File Meta Information again.
    """
    rq = dimsemessages.CStoreRQMessage()
    rq.message_id = msg_id
    rq.affected_sop_class_uid = ctx.sop_class
    if move_originator is not None:
        rq.move_originator_aet, rq.move_originator_message_id = move_originator
    return PreparedStore(rq, ctx, _prepare(rq, ctx, dataset, on_bytes, header))


def send_prepared(asce: Any, prepared: PreparedStore) -> None:
    """Send a prepared C-STORE-RQ and its data set, then close its file (even on failure)."""
    try:
        asce.send(prepared.rq, prepared.ctx.id)
    finally:
        prepared.close()


def receive_store_status(asce: Any, msg_id: int) -> statuses.Status:
    """Wait for the C-STORE-RSP to ``msg_id``; its status, with ``error_comment`` (or None).

    Other messages arriving meanwhile are kept for the association's next ``receive``.
    """
    rsp, _ = asce.receive_response(msg_id)
    return _store_status(rsp)


def receive_any_store_status(asce: Any, msg_ids: Container[int]) -> tuple[int, statuses.Status]:
    """(Message ID, status) of the next C-STORE-RSP to any of ``msg_ids``: the requests
    outstanding in an asynchronous operations window (PS3.7 D.3.3.3), whose responses a
    peer may send in any order; each is matched by Message ID Being Responded To."""
    rsp, _ = asce.receive_response_to(msg_ids)
    return rsp.message_id_being_responded_to, _store_status(rsp)


def _store_status(rsp: Any) -> statuses.Status:
    status = statuses.Status(rsp.status, 0x0001)
    # Error Comment (0000,0902) from the decoded fields: no pydicom command set per response.
    comment = rsp.get_command_value(0x0902)
    status.error_comment = str(comment).strip() if comment else None
    return status


@sop_classes_on_first_use(lambda: uids.STORAGE_SOP_CLASSES)
def storage_scu(asce: Any, ctx: Any, dataset: Any, msg_id: int, *, on_bytes: Any = None,
                move_originator: tuple[str, int] | None = None) -> statuses.Status:
    """Send C-STORE-RQ with ``dataset`` (a pydicom Dataset or a file name); return the status.

    A file is streamed from disk when the context's transfer syntax is the file's own; an
    uncompressed file is converted otherwise. ``StorageNotSent`` means nothing was sent
    (unreadable file, compressed syntax the context cannot carry). Extension: ``on_bytes(n)``
    is called as the streamed file is read (progress). The response's Error Comment, if
    any, is on the returned status as ``error_comment``. It is ``prepare_store``,
    ``send_prepared`` and ``receive_store_status`` in a row; a caller sending many objects
    calls them itself to prepare the next object while waiting for this one's response.
    Extension: ``move_originator`` = (AE title, Message ID) of the C-MOVE this store serves.
    """
    send_prepared(asce, prepare_store(ctx, dataset, msg_id, on_bytes=on_bytes,
                                      move_originator=move_originator))
    return receive_store_status(asce, msg_id)

