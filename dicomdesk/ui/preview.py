"""8-bit preview of a stored image and its tag dump, computed off the GUI thread (no Qt here).

Windowing follows PS3.3 C.11.2.1.2 (VOI LUT Function LINEAR): the Window Center/Width of the
object when present, otherwise the full range of the pixel values; the Modality LUT (Rescale
Slope/Intercept, C.11.1) is applied first, and MONOCHROME1 is inverted (C.7.6.3.1.2).

Loading (``load_image``: read, decode, downsample to at most ``max_side``, rescale) is slow and
runs in a worker; windowing (``render``) is one vectorised numpy pass over at most 512x512
float32 values (a few milliseconds), so the window/level drag re-renders on the GUI thread at
every mouse move without a worker round trip. Compressed transfer syntaxes (JPEG, JPEG-LS,
JPEG 2000, RLE) decode through pydicom's pixel data plugins (pylibjpeg with its libjpeg,
openjpeg and rle plugins; pyjpegls for JPEG-LS); a file none of them can decode raises ``PreviewError`` with
pydicom's reason in words.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ImageData", "Preview", "PreviewError", "load_image", "load_preview", "render",
           "tag_dump"]


class PreviewError(Exception):
    """The file has no picture we can show; ``str()`` says why in words."""


@dataclass(frozen=True)
class Preview:
    """Grayscale 8-bit pixels (row-major, ``width`` bytes per row) or RGB888 when ``rgb``."""

    width: int
    height: int
    pixels: bytes
    rgb: bool = False
    caption: str = ""
    center: float = 0.0
    window: float = 0.0


@dataclass(frozen=True, eq=False)
class ImageData:
    """A decoded first frame, ready to window: ``values`` are float32 modality values (after
    Rescale Slope/Intercept) or uint8 RGB when ``rgb``; ``center``/``width`` the default window."""

    values: Any = field(repr=False)
    center: float
    width: float
    rgb: bool = False
    invert: bool = False
    caption: str = ""
    low: float = 0.0   # smallest and largest modality value (bounds of the drag)
    high: float = 0.0
    frame: int = 0     # which frame this is (0-based) of ``frames``
    frames: int = 1


def _first(value: object) -> float:
    try:
        return float(value[0])  # type: ignore[index]
    except (TypeError, IndexError, KeyError):
        return float(value)  # type: ignore[arg-type]


def _transfer_syntax_name(ds: Any) -> str:
    meta = getattr(ds, "file_meta", None)
    uid = meta.get("TransferSyntaxUID") if meta is not None else None
    return uid.name if uid is not None else "unknown transfer syntax"


def load_image(path: str | Path, max_side: int = 512, frame: int = 0) -> ImageData:
    """Read ``path``, decode one frame (the first by default) and prepare it for ``render``
    (worker thread). As a viewer does: PALETTE COLOR through its LUTs (C.7.6.3.1.5), YBR to
    RGB, then the Modality LUT (C.11.1) and, without a window, the VOI LUT (C.11.2)."""
    import numpy as np
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, pixel_array

    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise PreviewError(f"not a readable DICOM file ({exc})") from exc
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise PreviewError("this object has no pixel data (it is not an image)")
    try:
        frames = max(int(getattr(ds, "NumberOfFrames", 1) or 1), 1)
    except (TypeError, ValueError):
        frames = 1
    frame = min(max(int(frame), 0), frames - 1)
    photometric = str(getattr(ds, "PhotometricInterpretation", "")).strip()
    try:
        # index decodes only that frame; YCbCr is converted to RGB (as_rgb default)
        array = pixel_array(ds, index=frame if frames > 1 else None)
        if photometric == "PALETTE COLOR":
            array = apply_color_lut(array, ds)  # indices -> RGB through the palette
            if array.dtype.itemsize > 1:  # 16-bit LUT entries: their top 8 bits (C.7.6.3.1.5)
                array = (array >> 8).astype(np.uint8)
    except Exception as exc:
        reason = " ".join(str(exc).split())
        raise PreviewError(
            f"the pixel data ({_transfer_syntax_name(ds)}) cannot be decoded: {reason}") from exc
    if frames > 1 and array.ndim >= 3 and array.shape[0] == frames and array.ndim == 4:
        array = array[0]
    caption = f"{getattr(ds, 'Modality', '')} {array.shape[1]}×{array.shape[0]}".strip()
    caption += f", {_transfer_syntax_name(ds)}"
    if photometric == "PALETTE COLOR":
        caption += ", palette colour"
    if frames > 1:
        caption += f", frame {frame + 1} of {frames}"
    step = max(1, -(-max(array.shape[:2]) // max_side))
    array = array[::step, ::step]
    if array.ndim == 3 and array.shape[2] == 3:
        if array.dtype != np.uint8:  # 16-bit colour: scale to 8 bits
            top = float(array.max()) or 1.0
            array = (array.astype(np.float32) * (255.0 / top)).astype(np.uint8)
        return ImageData(np.ascontiguousarray(array), 127.5, 256.0, rgb=True, caption=caption,
                         low=0.0, high=255.0, frame=frame, frames=frames)
    try:  # Rescale Slope/Intercept or a Modality LUT Sequence (C.11.1)
        values = np.asarray(apply_modality_lut(array, ds), dtype=np.float32)
    except Exception:  # a broken LUT: show the stored values rather than nothing
        values = array.astype(np.float32)
    has_window = "WindowCenter" in ds and "WindowWidth" in ds
    if not has_window and "VOILUTSequence" in ds:
        try:  # a VOI LUT table instead of a window (C.11.2.1.1); then show its whole output
            values = np.asarray(apply_voi_lut(values, ds), dtype=np.float32)
        except Exception:
            pass
    low, high = float(values.min()), float(values.max())
    if has_window:
        center, width = _first(ds.WindowCenter), max(_first(ds.WindowWidth), 1.0)
    else:  # computed: the full range of the values
        center, width = (low + high) / 2.0, max(high - low, 1.0)
    invert = str(getattr(ds, "PhotometricInterpretation", "")) == "MONOCHROME1"
    return ImageData(np.ascontiguousarray(values), center, width, invert=invert, caption=caption,
                     low=low, high=high, frame=frame, frames=frames)


def render(image: ImageData, center: float | None = None, width: float | None = None) -> Preview:
    """Window ``image`` to 8 bits (PS3.3 C.11.2.1.2.1 LINEAR); fast enough for the GUI thread."""
    import numpy as np

    center = image.center if center is None else float(center)
    width = max(image.width if width is None else float(width), 1.0)
    values = image.values
    height, columns = values.shape[:2]
    if image.rgb:
        return Preview(columns, height, values.tobytes(), rgb=True, caption=image.caption,
                       center=center, window=width)
    low = center - 0.5 - (width - 1.0) / 2.0
    scale = np.float32(255.0 / max(width - 1.0, 1e-6))
    scaled = (values - np.float32(low)) * scale
    np.clip(scaled, 0.0, 255.0, out=scaled)
    gray = scaled.astype(np.uint8)
    if image.invert:
        np.subtract(255, gray, out=gray)
    return Preview(columns, height, gray.tobytes(), caption=image.caption, center=center,
                   window=width)


def load_preview(path: str | Path, max_side: int = 512) -> Preview:
    """``render(load_image(path))``: the picture with its default window."""
    return render(load_image(path, max_side))


#: pydicom's ``str(ds)`` layout plus the keyword, so a user can search the dump for the names
#: the standard's tables (PS3.6) and the command line use ("PatientName").
_ELEMENT_FORMAT = "%(tag)s %(name)-35.35s %(keyword)-32.32s %(VR)s: %(repval)s"
_SEQUENCE_FORMAT = "%(tag)s %(name)-35.35s %(keyword)-32.32s %(VR)s: %(repval)s"


def tag_dump(path: str | Path) -> str:
    """The full text dump of the file (meta header, then the data set with its sequences
    indented), without the pixel data: the data set is read up to Pixel Data only."""
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    lines: list[str] = []
    meta = getattr(ds, "file_meta", None)
    if meta is not None and len(meta):
        lines.extend(meta.formatted_lines(_ELEMENT_FORMAT, _SEQUENCE_FORMAT, "   "))
        lines.append("-" * 72)
    lines.extend(ds.formatted_lines(_ELEMENT_FORMAT, _SEQUENCE_FORMAT, "   "))
    return "\n".join(lines)
