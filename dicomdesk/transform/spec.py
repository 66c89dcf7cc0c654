"""What to do to each object of a send or an export (``Transform``), and the compressions offered.

A frozen value: the CLI and the window build one and hand it down; the per-send state (UID map,
pseudonyms) lives in ``deidentify.Deidentifier``. Light on purpose (no pydicom pixel modules).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: ``--decompress`` choices: which compressed files may be sent decompressed when the peer
#: refuses their syntax.
DECOMPRESS_CHOICES = ("lossless", "all", "never")

#: ``--compress`` choices and their transfer syntaxes (PS3.5 A.4: RLE, JPEG-LS, JPEG 2000).
COMPRESS_SYNTAXES = {
    "jpeg-ls-lossless": "1.2.840.10008.1.2.4.80",
    "jpeg2000-lossless": "1.2.840.10008.1.2.4.90",
    "rle": "1.2.840.10008.1.2.5",
}


def is_lossless_syntax(ts: str) -> bool:
    """True for the transfer syntaxes PS3.5 names lossless (by their registered names:
    "... Lossless ...", not "Near-Lossless"); uncompressed ones are lossless too."""
    from pydicom.uid import UID

    uid = UID(ts)
    if not uid.is_compressed:
        return True
    name = uid.name
    return "Lossless" in name and "Near-Lossless" not in name


def may_decompress(policy: str, ts: str) -> bool:
    """Whether ``policy`` (a ``DECOMPRESS_CHOICES`` value) lets a file in ``ts`` be decoded."""
    from pydicom.uid import UID

    if policy == "never" or not UID(ts).is_compressed or UID(ts).is_deflated:
        return False
    return policy == "all" or is_lossless_syntax(ts)


@dataclass(frozen=True)
class Transform:
    """Changes applied to what is sent or exported (never to the source files).

    ``deidentify`` is a ``deidentify.Profile`` (or None); ``edits`` are ``edits.Edit`` values
    applied after de-identification (so a user's pseudonym wins); ``compress`` a
    ``COMPRESS_SYNTAXES`` key; ``decompress`` a ``DECOMPRESS_CHOICES`` value; ``mapping_path``
    where the original -> new identifiers are written at the end (0600).
    """

    deidentify: Any = None
    edits: tuple[Any, ...] = field(default=())
    decompress: str = "lossless"
    compress: str | None = None
    allow_burned_in: bool = False
    mapping_path: str | None = None
    #: edits for some files only (path -> edits, after ``edits``): the window's "Edit tags…"
    #: on selected rows
    file_edits: Any = None

    @property
    def changes_data_set(self) -> bool:
        """True when every object must be rewritten (not streamed from its file as is)."""
        return self.deidentify is not None or bool(self.edits)

    def edits_for(self, path: Any) -> tuple[Any, ...]:
        extra = (self.file_edits or {}).get(str(path), ())
        return tuple(self.edits) + tuple(extra)

    def rewrites(self, path: Any) -> bool:
        """True when the file at ``path`` must be rewritten even if its syntax is kept."""
        return self.deidentify is not None or bool(self.edits_for(path))

    def compress_syntax(self) -> str | None:
        return COMPRESS_SYNTAXES[self.compress] if self.compress else None
