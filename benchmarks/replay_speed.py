"""How fast does ``qtrace verify --trace`` replay a capture through the model?

    .venv/bin/python benchmarks/replay_speed.py [--trace reports/captures/e1000-tcg-linux]
        [--device e1000] [--rounds 5]

The models must stay fast (issue 13: at least 100,000 accesses/s with ``--explain`` off),
so this replays one committed capture several times, the trace read once beforehand, and
prints accesses per second for the best and the median round, without and with the
explaining observer (``--explain``, which tracks every bit's origin and costs more). This
is a benchmark, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from qtrace.trace import read_trace
from qtrace.verify import replay, verify_device
from qtrace.verify.explain import Explainer

_DEFAULT_TRACE = Path(__file__).parents[1] / "reports" / "captures" / "e1000-tcg-linux"
_GOAL = 100_000


def _rounds(trace_path: Path, device: str, rounds: int, explain: bool) -> tuple[int, list[float]]:
    trace = read_trace(trace_path / "trace.jsonl" if trace_path.is_dir() else trace_path)
    target = verify_device(device)
    times = []
    accesses = 0
    for _ in range(rounds):
        observer = Explainer(target) if explain else None
        started = time.perf_counter()
        result = replay(trace, target, observer=observer)
        times.append(time.perf_counter() - started)
        accesses = result.accesses_replayed
        if not result.ok:
            raise SystemExit(f"the replay disagreed: {result.mismatches[:1]}")
    return accesses, times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trace", type=Path, default=_DEFAULT_TRACE, help="capture or trace")
    parser.add_argument("--device", default="e1000", help="the model to replay against")
    parser.add_argument("--rounds", type=int, default=5, help="replays per mode")
    args = parser.parse_args()
    for explain in (False, True):
        accesses, times = _rounds(args.trace, args.device, args.rounds, explain)
        best, median = accesses / min(times), accesses / statistics.median(times)
        goal = f" (goal >= {_GOAL:,})" if not explain else ""
        print(
            f"explain {'on ' if explain else 'off'}: {accesses:,} accesses, best {best:,.0f}/s, "
            f"median {median:,.0f}/s over {args.rounds} rounds{goal}"
        )


if __name__ == "__main__":
    main()
