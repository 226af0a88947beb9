"""The RESET codes the reference relay and nodes send are the ones docs/protocol.md lists, and
every module that sends one takes it from `ResetCode`."""

from __future__ import annotations

import re
from pathlib import Path

from altmesh.net import stream
from altmesh.protocol import constants as C
from altmesh.protocol.constants import ResetCode

SPEC = Path(__file__).resolve().parents[4] / "docs" / "protocol.md"
SOURCE = Path(__file__).resolve().parents[2] / "src" / "altmesh"

SENT_BY = {
    ResetCode.GIVEN_UP: "client",
    ResetCode.LOCAL_CLOSED: "client, service",
    ResetCode.E2E_FAILED: "client, service",
    ResetCode.TARGET_UNREACHABLE: "service",
    ResetCode.PORT_REFUSED: "client, service",
    ResetCode.NO_ROUTE: "relay",
    ResetCode.LINK_LOST: "relay",
    ResetCode.UNREACHABLE: "relay",
    ResetCode.HOP_LIMIT: "relay",
    ResetCode.NEXT_HOP_BUSY: "relay",
    ResetCode.PATH_FAULT: "relay",
    ResetCode.RELAY_LIMIT: "relay",
}


def documented_codes() -> dict[int, str]:
    text = SPEC.read_text(encoding="utf-8")
    table = text.split("| code | sent by | meaning |", 1)[1].split("\n\n", 1)[0]
    return {
        int(code): sender
        for code, sender in re.findall(r"^\| (\d+) \| ([a-z, ]+) \|", table, flags=re.M)
    }


def reset_codes() -> dict[str, int]:
    return {
        name: value
        for name, value in vars(ResetCode).items()
        if not name.startswith("_") and isinstance(value, int)
    }


def test_every_application_reset_code_is_documented_and_nothing_else() -> None:
    assert set(reset_codes().values()) == set(SENT_BY)
    assert documented_codes() == SENT_BY
    assert len(set(reset_codes().values())) == len(reset_codes())  # no code has two names
    assert all(code < C.CORE_RESET_CODES for code in SENT_BY)  # outside the core's range
    assert C.CORE_RESET_CODES <= C.RESET_FLOW_CONTROL and C.CORE_RESET_CODES <= C.RESET_CANCELLED


def test_the_end_nodes_stream_codes_are_the_constants() -> None:
    assert stream.RESET_GIVEN_UP == ResetCode.GIVEN_UP
    assert stream.RESET_LOCAL_CLOSED == ResetCode.LOCAL_CLOSED
    assert stream.RESET_E2E_FAILED == ResetCode.E2E_FAILED
    assert stream.RESET_TARGET_UNREACHABLE == ResetCode.TARGET_UNREACHABLE
    assert stream.RESET_PORT_REFUSED == ResetCode.PORT_REFUSED


def test_no_module_sends_a_reset_with_a_literal_code() -> None:
    """`reset_stream(id, 17, ...)` or `code=3` written as a number would be a second copy of
    the table: every sender names a ResetCode (or a constant bound to one)."""
    literal = re.compile(r"reset_stream\([^,]+,\s*\d|code=\d")
    offenders = [
        f"{path.relative_to(SOURCE)}:{number}"
        for path in SOURCE.rglob("*.py")
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if literal.search(line)
    ]
    assert offenders == []
