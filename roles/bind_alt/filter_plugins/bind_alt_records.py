"""Filters over record lists as the inventory writes them (bind_alt_records and published sets)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any


def absolute_name(name: str, origin: str) -> str:
    """`www` / `www.alt.` / `@` as the absolute, lower-case name `www.alt.` in zone `origin`."""
    origin = origin.rstrip(".").lower() + "."
    name = str(name).strip().lower()
    if name in ("@", ""):
        return origin
    if name.endswith("."):
        return name
    return f"{name}.{origin}"


def bind_alt_rrset_keys(records: Iterable[Mapping[str, Any]] | None, origin: str) -> list[str]:
    """The RRsets a record list declares, as sorted unique `NAME. TYPE` strings."""
    return sorted(
        {
            f"{absolute_name(record.get('name', ''), origin)} {str(record.get('type', '')).upper()}"
            for record in records or []
        }
    )


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"bind_alt_rrset_keys": bind_alt_rrset_keys}
