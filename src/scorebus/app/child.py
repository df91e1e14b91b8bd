"""Entry point of one worker process started by ``run_processes``.

Prints its ``WorkerReport`` as one JSON line on stdout when it exits cleanly;
a scorebus error ends in one line on stderr and exit code 2, like the CLI.
"""

from __future__ import annotations

import asyncio
import logging
import sys

import msgspec

from ..errors import ScorebusError
from .loader import load_app
from .run import run_app
from .settings import Settings


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    spec = msgspec.json.decode(argv[0])
    settings = Settings(
        broker=spec["broker"],
        store=spec["store"],
        registry=spec["registry"],
        trust_models=spec["trust_models"],
        ack_deadline_s=spec.get("ack_deadline_s"),
        model_poll_s=spec.get("model_poll_s", Settings.model_poll_s),
        model_threads=spec.get("model_threads"),
    )
    try:
        app = load_app(spec["app"])
        report = asyncio.run(
            run_app(
                app, settings, until_idle_s=spec["until_idle_s"], shutdown_grace_s=spec["grace_s"]
            )
        )
    except ScorebusError as exc:
        sys.stderr.write(f"error: worker process: {exc}\n")
        return 2
    sys.stdout.buffer.write(msgspec.json.encode(report) + b"\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
