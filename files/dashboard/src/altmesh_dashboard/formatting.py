"""Display helpers for the templates (registered as Jinja filters by the app factory)."""

from __future__ import annotations

UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def human_bytes(count: int | None) -> str:
    """1536 -> "1.5 KiB"; binary units, three significant digits; None -> an en dash."""
    if count is None:
        return "\u2013"  # an en dash, as the templates show a missing value
    value = float(count)
    for unit in UNITS:
        if abs(value) < 1024 or unit == UNITS[-1]:
            if unit == "B":
                return f"{int(value)} B"
            return f"{value:.3g} {unit}" if value < 1000 else f"{value:.0f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
