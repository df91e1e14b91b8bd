"""Before/after figures for a change: two source trees drain the same backlog, interleaved.

    git worktree add /tmp/before <commit>
    python -m benchmarks.compare_trees /tmp/before . --workers 2 --rounds 3

Each round publishes a fresh backlog of demo events on the embedded broker and
drains it with the demo app, once with each tree (``PYTHONPATH`` set to the
tree's ``src`` and root, in a subprocess), alternating, so both sides see the
same machine load. The rate runs from the first committed batch to the last,
as in ``make bench``. The shared machine's load moves absolute figures a lot:
read the two columns of one round side by side.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

_CHILD = """
import asyncio, sqlite3, sys
from pathlib import Path
from scorebus.app import Settings
from benchmarks.common import demo_registry
from benchmarks.scenarios import publish_all, payloads, pipeline
root, n, workers = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
registry = root / "models"
demo_registry(registry)
settings = Settings(
    broker=f"sqlite:///{root}/bus.db", store=f"sqlite:///{root}/scores.db", registry=registry
)
print(pipeline(settings, payloads(n), workers)["eps"])
"""


def drain(tree: Path, events: int, workers: int) -> float:
    """Events/s of ``tree``'s demo pipeline draining ``events`` with ``workers`` processes."""
    env = dict(os.environ, PYTHONPATH=f"{tree / 'src'}{os.pathsep}{tree}")
    with tempfile.TemporaryDirectory(prefix="scorebus-compare-") as root:
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, root, str(events), str(workers)],
            env=env,
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        )
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("before", type=Path, help="source tree before the change")
    ap.add_argument("after", type=Path, help="source tree after the change")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--events", type=int, default=200_000)
    args = ap.parse_args(argv)
    print(f"| round | before /s | after /s | after / before |  ({args.workers} worker(s))")
    for i in range(1, args.rounds + 1):
        before = drain(args.before.resolve(), args.events, args.workers)
        after = drain(args.after.resolve(), args.events, args.workers)
        print(f"| {i} | {before:,.0f} | {after:,.0f} | {after / before:.2f} |", flush=True)


if __name__ == "__main__":
    main()
