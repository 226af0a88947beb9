"""SQLAlchemy statements compiled once per database dialect and run on the driver's own cursor.

For the few statements of a hot path (a relay's heartbeat). SQLAlchemy still writes the SQL for
the dialect, chooses the parameter style and converts every value through the column's type
(the UTC datetimes, the JSON columns), so the tables' rules stay in `models`; what is skipped is
SQLAlchemy's per-execution machinery (cache-key lookup, execution context, result objects),
which measured at about 100 µs per statement on SQLite, several times the statement itself.

Everything else in the app uses the ORM session: this module is for statements whose cost per
call has been measured to matter.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

Processor = Callable[[Any], Any]


@dataclass(frozen=True)
class DriverStatement:
    """One statement as the driver takes it: SQL text, parameter order (for positional
    parameter styles) and the value conversions of its parameters and result columns."""

    sql: str
    positions: tuple[str, ...] | None  # None: the driver takes a dict (named style)
    required: frozenset[str]  # the bind parameters a call must give
    defaults: Mapping[str, Any]  # the others, with their compiled values (such as LIMIT 1)
    bind_processors: tuple[tuple[str, Processor], ...]
    result_processors: tuple[Processor | None, ...]

    def parameters(self, values: Mapping[str, Any]) -> Any:
        """The driver's parameters for `values` (bind name -> Python value), converted by the
        columns' types; binds not in `values` keep their compiled value (such as LIMIT 1)."""
        missing = self.required.difference(values)
        if missing:
            raise ValueError(f"no value for bind parameters {sorted(missing)} of {self.sql!r}")
        merged = {**self.defaults, **values}
        for name, process in self.bind_processors:
            merged[name] = process(merged[name])
        if self.positions is None:
            return merged  # a dict, for named parameter styles
        return [merged[name] for name in self.positions]  # a list, for positional ones

    def row(self, raw: Sequence[Any]) -> tuple[Any, ...]:
        """A fetched row with each column converted by its type (as SQLAlchemy would)."""
        return tuple(
            process(value) if process is not None else value
            for process, value in zip(self.result_processors, raw, strict=True)
        )


def compile_for(
    statement: ClauseElement, dialect: Dialect, column_keys: Sequence[str] | None = None
) -> DriverStatement:
    """Compile `statement` for `dialect`. `column_keys`: the columns an INSERT's VALUES or an
    UPDATE's SET clause takes, each as a bind parameter of the same name."""
    compiled = statement.compile(
        dialect=dialect, column_keys=list(column_keys) if column_keys is not None else None
    )
    assert isinstance(compiled, SQLCompiler)
    # Worked out once here rather than by construct_params() on every call (~10 µs each).
    required = frozenset(name for bind, name in compiled.bind_names.items() if bind.required)
    defaults = {
        name: value
        for name, value in (compiled.construct_params(dict.fromkeys(required)) or {}).items()
        if name not in required
    }
    bind_processors: dict[str, Processor] = {}  # by name: a name bound twice converts once
    for bind, name in compiled.bind_names.items():
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            bind_processors[name] = process
    result_processors = tuple(
        column.type.dialect_impl(dialect).result_processor(dialect, None)
        for column in getattr(statement, "selected_columns", ())
    )
    positions = tuple(compiled.positiontup or ()) if compiled.positional else None
    return DriverStatement(
        compiled.string,
        positions,
        required,
        defaults,
        tuple(bind_processors.items()),
        result_processors,
    )


class DriverStatements:
    """Statements compiled lazily, once per engine (an app has one engine; tests make several
    apps, on SQLite and on PostgreSQL, in one process). Compile after the engine's first
    connection, when its dialect knows the server."""

    def __init__(
        self, statements: Mapping[str, tuple[ClauseElement, Sequence[str] | None]]
    ) -> None:
        self._statements = dict(statements)
        self._compiled: weakref.WeakKeyDictionary[Engine, dict[str, DriverStatement]] = (
            weakref.WeakKeyDictionary()
        )

    def for_engine(self, engine: Engine) -> dict[str, DriverStatement]:
        compiled = self._compiled.get(engine)
        if compiled is None:
            compiled = {
                name: compile_for(statement, engine.dialect, column_keys)
                for name, (statement, column_keys) in self._statements.items()
            }
            self._compiled[engine] = compiled
        return compiled
