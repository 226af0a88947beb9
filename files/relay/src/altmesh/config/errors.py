"""What is wrong with a config: problems, each naming the file, the field and what is wrong."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a config file: `FILE: field: problem`."""

    source: str  # the config file as named to the user; "" for a command-line option
    field: str  # the dotted key as written in the file (`relay.listen`, `mesh.peers[0].name`)
    problem: str

    def __str__(self) -> str:
        where = f"{self.source}: " if self.source else ""
        return f"{where}{self.field}: {self.problem}"


class ConfigError(Exception):
    """A config (file or command line) that cannot be used; `problems` lists everything wrong.

    `str()` is one `FILE: field: problem` line per problem. `field`, `problem` and `source` are
    those of the first problem, for callers that report only one.
    """

    def __init__(self, field_name: str, problem: str, source: str = "") -> None:
        self.problems: tuple[Problem, ...] = (Problem(source, field_name, problem),)
        self.field = field_name
        self.problem = problem
        self.source = source
        super().__init__(str(self.problems[0]))

    @classmethod
    def of(cls, problems: Sequence[Problem]) -> ConfigError:
        """One error carrying every problem (at least one)."""
        if not problems:
            raise ValueError("ConfigError.of needs at least one problem")
        first = problems[0]
        error = cls(first.field, first.problem, first.source)
        error.problems = tuple(problems)
        error.args = ("\n".join(str(p) for p in problems),)
        return error

    def lines(self) -> list[str]:
        return [str(problem) for problem in self.problems]

    def __str__(self) -> str:
        return "\n".join(self.lines())


class Problems:
    """Collects the problems of one config file, so that all of them are reported at once."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.found: list[Problem] = []

    def add(self, field_name: str, problem: str) -> None:
        self.found.append(Problem(self.source, field_name, problem))

    def add_error(self, error: ConfigError) -> None:
        """Record an error raised by a value parser; it gets this file's name if it has none."""
        for problem in error.problems:
            self.found.append(
                problem if problem.source else Problem(self.source, problem.field, problem.problem)
            )

    def extend(self, problems: Iterable[Problem]) -> None:
        self.found.extend(problems)

    def __bool__(self) -> bool:
        return bool(self.found)

    def raise_if_any(self) -> None:
        if self.found:
            raise ConfigError.of(self.found)
