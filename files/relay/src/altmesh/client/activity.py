"""What went wrong lately, for the status page: warnings and errors of the node's log, and its
security events, each kept in a short ring (the newest last)."""

from __future__ import annotations

import logging
from collections import deque
from pathlib import Path
from typing import Any

from altmesh.events import SecurityEventLog

KEPT = 50


class RecentErrors(logging.Handler):
    """Log records at WARNING and above of the `altmesh` loggers."""

    def __init__(self, kept: int = KEPT) -> None:
        super().__init__(logging.WARNING)
        self.records: deque[dict[str, Any]] = deque(maxlen=kept)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a bad format string must not break logging
            message = str(record.msg)
        self.records.append(
            {
                "time": record.created,
                "level": record.levelname.lower(),
                "logger": record.name,
                "message": message,
            }
        )

    def install(self) -> None:
        logging.getLogger("altmesh").addHandler(self)

    def remove(self) -> None:
        logging.getLogger("altmesh").removeHandler(self)


class RecordingEventLog(SecurityEventLog):
    """The node's security event log, also keeping the newest lines it wrote for the status
    page (aggregated as in the log: a flood shows as its first line and then summaries with
    their count, not as the last 50 occurrences of one event)."""

    def __init__(self, path: Path | None, node: str, kept: int = KEPT, **options: Any) -> None:
        self.recent: deque[dict[str, Any]] = deque(maxlen=kept)
        super().__init__(path, node, on_record=self.recent.append, **options)
