"""`make bench`'s smallest path: every scenario runs and the report has its rows.

No speed is asserted here (targets live in docs/benchmarks.md); this only pins
that the benchmark suite still runs against the current runtime and writes the
markdown and the plot it promises.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from benchmarks.policy_apps import has_adaptive
from benchmarks.report import MARK

ROOT = Path(__file__).resolve().parents[2]


def test_quick_bench_writes_report_and_plot(tmp_path: Path) -> None:
    doc, png = tmp_path / "bench.md", tmp_path / "bench.png"
    doc.write_text(f"# Prose kept\n\nWritten by hand.\n\n{MARK}\n\nstale results\n")
    cmd = [
        sys.executable, "-m", "benchmarks.run", "--quick", "--events", "2000",
        "--no-beam", "--no-brokers", "--policies", "size_8,adaptive",
        "--doc", str(doc), "--png", str(png),
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr[-3000:]

    text = doc.read_text()
    assert text.startswith("# Prose kept\n\nWritten by hand.\n\n")
    assert "stale results" not in text
    assert text.count(MARK) == 1
    for row in (
        "| limit: decode + bare model, batch 512 |",
        "| Apache Beam RunInference (peer) | not run: --no-beam |",
        "| per-message: decode, predict 1 row, commit, ack |",
        "| scorebus end to end, embedded broker, 1 worker process(es) |",
        "| 25% of capacity |",
        "| 50% of capacity |",
        "| 80% of capacity |",
        "| max_size 8 |",
        "Not run: --no-brokers.",
        "- end to end / limit:",
        "- 10x burst, peak / steady memory:",
    ):
        assert row in text, row
    if has_adaptive():
        assert "| adaptive (max_size 512) |" in text
    else:
        assert "The adaptive policy is not in this run" in text
    # The stage profile: every stage timed, and the rows add up to the total.
    profile = text.split("| stage | µs per event | share |")[1].split("\n\n")[0]
    cells = [line.split(" | ") for line in profile.strip().splitlines()[1:]]
    stage_us = [float(c[1]) for c in cells[:6]]
    total = float(cells[6][1].strip("*"))
    assert all(us > 0 for us in stage_us)
    assert abs(sum(stage_us) - total) < 0.05
    # The burst row: steady and peak memory of a live worker, both positive.
    burst = text.split("| steady RSS (median) |")[1].splitlines()[2]
    steady, peak = (float(cell.split()[0]) for cell in burst.strip("| ").split(" | ")[:2])
    assert 0 < steady <= peak

    if importlib.util.find_spec("matplotlib") is not None:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "](bench.png)" in text
    else:
        assert not png.exists()
        assert "Plot not drawn: matplotlib is not installed" in text
