"""8-bit preview of a stored image, computed on a worker thread (no Qt here).

Windowing follows PS3.3 C.11.2.1.2 (VOI LUT Function LINEAR): the Window Center/Width of the
object when present, otherwise the full range of the pixel values; the Modality LUT (Rescale
Slope/Intercept, C.11.1) is applied first, and MONOCHROME1 is inverted (C.7.6.3.1.2).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["Preview", "load_preview"]


@dataclass(frozen=True)
class Preview:
    """Grayscale 8-bit pixels (row-major, ``width`` bytes per row) or RGB888 when ``rgb``."""

    width: int
    height: int
    pixels: bytes
    rgb: bool = False
    caption: str = ""


def _first(value: object) -> float:
    try:
        return float(value[0])  # type: ignore[index]
    except (TypeError, IndexError, KeyError):
        return float(value)  # type: ignore[arg-type]


def load_preview(path: str | Path, max_side: int = 512) -> Preview:
    """Read ``path`` and window its first frame to 8 bits; raises on undecodable pixel data."""
    import numpy as np
    import pydicom

    ds = pydicom.dcmread(path)
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    array = ds.pixel_array
    if frames > 1:
        array = array[0]
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2"))
    caption = f"{getattr(ds, 'Modality', '')} {array.shape[1]}×{array.shape[0]}"
    if frames > 1:
        caption += f", frame 1 of {frames}"
    step = max(1, -(-max(array.shape[:2]) // max_side))
    array = array[::step, ::step]
    if array.ndim == 3 and array.shape[2] == 3:
        if photometric.startswith("YBR"):
            from pydicom.pixels import convert_color_space

            array = convert_color_space(array, photometric, "RGB")
        rgb = np.ascontiguousarray(array.astype(np.uint8) if array.dtype != np.uint8 else array)
        return Preview(rgb.shape[1], rgb.shape[0], rgb.tobytes(), rgb=True, caption=caption)
    values = array.astype(np.float64)
    values = values * float(getattr(ds, "RescaleSlope", 1) or 1) + float(
        getattr(ds, "RescaleIntercept", 0) or 0)
    if "WindowCenter" in ds and "WindowWidth" in ds:
        center, width = _first(ds.WindowCenter), max(_first(ds.WindowWidth), 1.0)
        low, high = center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2
    else:
        low, high = float(values.min()), float(values.max())
    span = max(high - low, 1e-9)
    scaled = np.clip((values - low) / span, 0.0, 1.0) * 255.0
    if photometric == "MONOCHROME1":
        scaled = 255.0 - scaled
    gray = np.ascontiguousarray(scaled.astype(np.uint8))
    return Preview(gray.shape[1], gray.shape[0], gray.tobytes(), caption=caption)
