"""The peer: Apache Beam's RunInference on the same model and the same events.

``python -m benchmarks.beam_peer REGISTRY N`` builds the ``payloads(N)`` the
other scenarios use, and runs a batch pipeline on Beam's in-process runner
(``DirectRunner``, which runs batch pipelines on the FnApi runner in this
process): ``Create(payloads) | decode to a feature row | RunInference`` with a
``ModelHandler`` around the same registry model (``fraud@champion``), batched
up to 512 rows like the limit scenario, then a count. It prints one JSON line:
events/s over the whole run (pipeline construction and runner start included)
and the start-up cost measured by the same pipeline on 1 event.

It runs as a subprocess of ``make bench`` (``run_peer``) so Beam's import and
its runner stay out of the benchmark's own process; where apache-beam is not
installed, ``run_peer`` says so and the report shows the reason.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from scorebus.models.demo import FEATURES, Transaction
from scorebus.models.registry import Registry

from .scenarios import payloads

BATCH = 512


def _handler(registry: Path) -> Any:
    from apache_beam.ml.inference.base import ModelHandler, PredictionResult

    class ScorebusModelHandler(ModelHandler[np.ndarray, PredictionResult, Any]):
        """Beam's model-handler contract around a scorebus registry model."""

        def load_model(self) -> Any:
            return Registry(registry).load("fraud@champion")

        def run_inference(
            self,
            batch: Sequence[np.ndarray],
            model: Any,
            inference_args: dict[str, Any] | None = None,
        ) -> Iterable[PredictionResult]:
            scores = model.predict(np.stack(batch))
            return [PredictionResult(x, y) for x, y in zip(batch, scores, strict=True)]

        def batch_elements_kwargs(self) -> dict[str, int]:
            return {"min_batch_size": BATCH, "max_batch_size": BATCH}

    return ScorebusModelHandler()


_decode = msgspec.json.Decoder(Transaction).decode


def _row(raw: bytes) -> np.ndarray:
    e = _decode(raw)
    return np.array([getattr(e, c) for c in FEATURES], dtype=np.float32)


def _run(registry: Path, data: list[bytes]) -> tuple[int, float]:
    import apache_beam as beam
    from apache_beam.ml.inference.base import RunInference
    from apache_beam.options.pipeline_options import PipelineOptions

    started = time.perf_counter()
    options = PipelineOptions(["--runner=DirectRunner", "--direct_num_workers=1"])
    with beam.Pipeline(options=options) as p:
        counted = (
            p
            | beam.Create(data, reshuffle=False)
            | beam.Map(_row)
            | RunInference(_handler(registry))
            | beam.combiners.Count.Globally()
        )
        counted | beam.Map(_check, len(data))
    return len(data), time.perf_counter() - started


def _check(count: int, expected: int) -> None:
    if count != expected:
        raise RuntimeError(f"Beam scored {count} of {expected} events")


def run_peer(registry: Path, events: int, timeout_s: float = 300.0) -> dict[str, Any]:
    """Run this module in a subprocess; ``{"skipped": reason}`` where it cannot run."""
    if importlib.util.find_spec("apache_beam") is None:  # found, not imported here
        return {"skipped": "apache-beam is not installed (pip install -e '.[bench]')"}
    cmd = [sys.executable, "-m", "benchmarks.beam_peer", str(registry), str(events)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return {"skipped": f"did not finish within {timeout_s:.0f} s"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"skipped": f"exit {proc.returncode}: {tail}"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def main(argv: list[str]) -> None:
    registry, n = Path(argv[0]), int(argv[1])
    _, startup_s = _run(registry, payloads(1))
    events, seconds = _run(registry, payloads(n))
    print(
        json.dumps(
            {
                "events": events,
                "seconds": seconds,
                "eps": events / seconds,
                "startup_s": startup_s,
                "beam": __import__("apache_beam").__version__,
            }
        )
    )


if __name__ == "__main__":
    # Beam pickles the pipeline's functions: import them from the module by name, so
    # they are pickled by reference rather than by value from __main__.
    from benchmarks.beam_peer import main as peer_main

    peer_main(sys.argv[1:])
