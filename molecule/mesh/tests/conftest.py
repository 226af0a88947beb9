"""Figures the mesh scenario measures, printed in pytest's terminal summary (molecule verify)."""

from __future__ import annotations

from typing import Any

import pytest

FIGURES: dict[str, str] = {}


@pytest.fixture(scope="session")
def figures() -> dict[str, str]:
    return FIGURES


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.section("altmesh mesh figures")
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name}: {value}")
