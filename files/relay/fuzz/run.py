"""Run every fuzz target for a while, from seeds of valid messages, and report per target the
executions, the coverage libFuzzer reached (`cov`: edges, `ft`: features) and the crashes.

    python files/relay/fuzz/run.py SECONDS [WORKDIR]       (make fuzz TIME=SECONDS)

Each target runs in WORKDIR/<target> (default: a temporary directory): its corpus grows there and
a crash leaves `crash-*` with the input (replay it with `fuzz_<target>.py crash-...`). Exits 1
if any target crashed or broke an oracle.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGETS = ("records", "handshake", "link", "announcements")
_DONE = re.compile(r"Done (\d+) runs in (\d+) second")
_COVERAGE = re.compile(r"cov: (\d+) ft: (\d+)")


def run_target(target: str, seconds: int, workdir: Path) -> tuple[int, str, int, str]:
    """(executions, 'cov/ft', crashes, last lines of the log) of one target."""
    workdir.mkdir(parents=True, exist_ok=True)
    corpus = workdir / "corpus"
    # The routing target has its own seed script (ROUTE_INFO payloads, not link messages).
    seeds = (
        [str(HERE / "seeds_announcements.py"), str(corpus)]
        if target == "announcements"
        else [str(HERE / "seeds.py"), target, str(corpus)]
    )
    subprocess.run([sys.executable, *seeds], check=True, timeout=60)
    result = subprocess.run(
        [
            sys.executable,
            str(HERE / f"fuzz_{target}.py"),
            f"-max_total_time={seconds}",
            "-rss_limit_mb=4096",
            "-timeout=10",
            f"-artifact_prefix={workdir}/",
            "-print_final_stats=1",
            str(corpus),
        ],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=seconds + 120,
    )
    log = result.stderr
    done = _DONE.search(log)
    coverage = _COVERAGE.findall(log)
    crashes = len(list(workdir.glob("crash-*"))) + len(list(workdir.glob("timeout-*")))
    if result.returncode != 0 and crashes == 0:
        crashes = 1  # a crash libFuzzer could not write out is still one
    executions = int(done.group(1)) if done else 0
    cov = f"{coverage[-1][0]}/{coverage[-1][1]}" if coverage else "?"
    return executions, cov, crashes, "\n".join(log.splitlines()[-15:])


def main(argv: list[str]) -> int:
    if not argv or not argv[0].isdigit():
        print(__doc__, file=sys.stderr)
        return 2
    seconds = int(argv[0])
    with tempfile.TemporaryDirectory(prefix="altmesh-fuzz-") as tmp:
        base = Path(argv[1]) if len(argv) > 1 else Path(tmp)
        print(f"fuzz: {seconds} s per target, work in {base}")
        print(f"  {'target':<13} {'executions':>11} {'per s':>8} {'cov/ft':>12} {'crashes':>8}")
        failed = []
        for target in TARGETS:
            executions, cov, crashes, tail = run_target(target, seconds, base / target)
            print(
                f"  {target:<13} {executions:>11} {executions / max(1, seconds):>8.0f} "
                f"{cov:>12} {crashes:>8}"
            )
            if crashes:
                failed.append(target)
                print(tail)
        if failed:
            print(f"fuzz: crashes in {', '.join(failed)} (inputs in {base})")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
