"""Run the routing fuzz target briefly, seeded with valid payloads: an exception other than a
ProtocolError from `receive`, or a broken database limit, crashes the target and fails this test
(the same way tests/protocol/test_fuzz.py runs the protocol targets)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

FUZZ = Path(__file__).resolve().parents[2] / "fuzz"
SECONDS = 8


def test_fuzz_announcements_finds_no_crash(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    subprocess.run(
        [sys.executable, str(FUZZ / "seeds_announcements.py"), str(corpus)],
        check=True,
        timeout=60,
        capture_output=True,
    )
    assert len(list(corpus.iterdir())) >= 5
    result = subprocess.run(
        [
            sys.executable,
            str(FUZZ / "fuzz_announcements.py"),
            f"-max_total_time={SECONDS}",
            "-rss_limit_mb=4096",
            "-timeout=10",  # one input taking longer is a hang
            f"-artifact_prefix={tmp_path}/",
            str(corpus),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=SECONDS + 60,
    )
    log = result.stderr[-4000:]
    assert result.returncode == 0, f"fuzz_announcements crashed:\n{log}"
    assert "Done" in result.stderr, log
    assert not list(tmp_path.glob("crash-*")), log
