"""Page numbers from the query string, for the paged lists (security events, audit log)."""

from __future__ import annotations


def page_number(raw: str | None, pages: int) -> int:
    """The page asked for, clamped to 1..pages: a malformed `page` shows the first page and one
    past the end the last (`?page=10000000000000000000000` would overflow the database's
    OFFSET; Python's int has no such limit, so the clamp must come before the query)."""
    last = max(pages, 1)
    text = (raw or "").strip()
    if not text.isascii() or not text.isdigit():
        return 1
    return min(max(int(text[:20]) if len(text) <= 20 else last, 1), last)
