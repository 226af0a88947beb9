"""Run the atheris fuzz targets briefly (seeded with valid messages): any exception other than a
ProtocolError escaping a parser makes the target crash and this test fail."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parents[2] / "fuzz"
SECONDS = {"records": 5, "handshake": 6, "link": 8}


@pytest.mark.parametrize("target", sorted(SECONDS))
def test_fuzz_target_finds_no_crash(target: str, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    subprocess.run(
        [sys.executable, str(FUZZ / "seeds.py"), target, str(corpus)], check=True, timeout=60
    )
    result = subprocess.run(
        [
            sys.executable,
            str(FUZZ / f"fuzz_{target}.py"),
            f"-max_total_time={SECONDS[target]}",
            # atheris instruments every module imported by the target (noise, cryptography
            # included): about 1.6 GB of RSS before the first input on this machine.
            "-rss_limit_mb=4096",
            "-timeout=10",  # one input taking longer is a hang
            f"-artifact_prefix={tmp_path}/",
            str(corpus),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=SECONDS[target] + 60,
    )
    log = result.stderr[-4000:]
    assert result.returncode == 0, f"fuzz target {target} crashed:\n{log}"
    assert "Done" in result.stderr, log
    assert not list(tmp_path.glob("crash-*")), log
