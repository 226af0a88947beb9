"""Reading one TOML table: typed accessors that record problems instead of stopping at the first.

An accessor that meets a bad value records `FILE: table.key: problem` and returns None (or the
default), so the rest of the file is still read and every problem is reported at once. Keys that
no accessor asked for are reported as unknown by `check_unknown()`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from altmesh.config.errors import ConfigError, Problems

T = TypeVar("T")


def _type_name(value: object) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)


class Table:
    """A TOML table being read, at dotted path `path` of the file."""

    def __init__(self, data: dict[str, Any], path: str, problems: Problems, base: Path) -> None:
        self.data = data
        self.path = path
        self.problems = problems
        self.base = base  # relative paths are relative to the config file's directory
        self.used: set[str] = set()

    @classmethod
    def of(cls, value: object, path: str, problems: Problems, base: Path) -> Table | None:
        """The table at `path`, or None (problem recorded) when the value is not a table."""
        if not isinstance(value, dict):
            problems.add(path, f"must be a table, not {_type_name(value)}")
            return None
        return cls(value, path, problems, base)

    def name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def problem(self, key: str, text: str) -> None:
        self.problems.add(self.name(key), text)

    def get(self, key: str) -> Any:
        self.used.add(key)
        return self.data.get(key)

    def has(self, key: str) -> bool:
        return key in self.data

    def parse(
        self, key: str, parser: Callable[[Any, str], T], *, required: bool = False
    ) -> T | None:
        """`parser(value, field)` on the key's value; its ConfigError is recorded, not raised."""
        value = self.get(key)
        if value is None:
            if required:
                self.problem(key, "is required")
            return None
        return self.attempt(lambda: parser(value, self.name(key)))

    def attempt(self, build: Callable[[], T]) -> T | None:
        try:
            return build()
        except ConfigError as error:
            self.problems.add_error(error)
            return None

    def string(self, key: str, default: str | None = None, required: bool = False) -> str | None:
        value = self.get(key)
        if value is None:
            if required:
                self.problem(key, "is required")
            return default
        if not isinstance(value, str) or not value.strip():
            self.problem(key, f"must be a non-empty string, not {_type_name(value)}")
            return default
        return value.strip()

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.string(key, default) or default
        if value not in choices:
            self.problem(key, f"{value!r} is not one of {', '.join(choices)}")
            return default
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.problem(key, f"must be true or false, not {_type_name(value)}")
            return default
        return value

    def number(self, key: str, default: float, low: float, high: float) -> float:
        value = self.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.problem(key, f"must be a number, not {_type_name(value)}")
            return default
        if not low <= value <= high:
            self.problem(key, f"{value:g} is outside {low:g}..{high:g}")
            return default
        return float(value)

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = self.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(key, f"must be an integer, not {_type_name(value)}")
            return default
        if not low <= value <= high:
            self.problem(key, f"{value} is outside {low}..{high}")
            return default
        return value

    def items(
        self, key: str, parser: Callable[[Any, str], T], *, low: int = 0, high: int | None = None
    ) -> list[T]:
        """A list, each item parsed by `parser(item, "key[i]")`; bad items are recorded."""
        value = self.get(key)
        if value is None:
            if low > 0:
                self.problem(key, "is required")
            return []
        if not isinstance(value, list):
            self.problem(key, f"must be a list, not {_type_name(value)}")
            return []
        if len(value) < low or (high is not None and len(value) > high):
            bounds = f"{low} to {high}" if high is not None else f"at least {low}"
            self.problem(key, f"must hold {bounds} entries, not {len(value)}")
        parsed: list[T] = []
        for index, item in enumerate(value):
            try:
                parsed.append(parser(item, self.index(key, index)))
            except ConfigError as error:
                self.problems.add_error(error)
        return parsed

    def index(self, key: str, index: int) -> str:
        return f"{self.name(key)}[{index}]"

    def path_value(self, key: str, required: bool = False) -> Path | None:
        text = self.string(key, required=required)
        if text is None:
            return None
        path = Path(text)
        return path if path.is_absolute() else (self.base / path)

    def table(self, key: str) -> Table | None:
        """The sub-table `key`, or None when it is absent (or not a table: problem recorded)."""
        value = self.get(key)
        if value is None:
            return None
        return Table.of(value, self.name(key), self.problems, self.base)

    def array_of_tables(self, key: str) -> list[Table] | None:
        """`[[key]]` entries, or None when absent; a non-table entry is recorded and skipped."""
        value = self.get(key)
        if value is None:
            return None
        if not isinstance(value, list):
            self.problem(key, f"must be an array of tables ([[{self.name(key)}]])")
            return []
        tables = []
        for index, item in enumerate(value):
            table = Table.of(item, self.index(key, index), self.problems, self.base)
            if table is not None:
                tables.append(table)
        return tables

    def check_unknown(self) -> None:
        for key in sorted(set(self.data) - self.used):
            self.problem(key, "unknown option (check the spelling; see docs)")
