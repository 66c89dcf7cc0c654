"""Quantities as a person reads them: the one size formatter of the CLI and the window."""

from __future__ import annotations

__all__ = ["human_size"]

_UNITS = ("B", "KiB", "MiB", "GiB")


def human_size(size: int | float) -> str:
    """Bytes in the unit a person reads at a glance, on base 1024 (so IEC names: KiB, not KB):
    ``512 B``, ``1.5 KiB``, ``12.0 MiB``; GiB is the largest unit."""
    value = float(size or 0)
    for unit in _UNITS[:-1]:
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} {_UNITS[-1]}"
