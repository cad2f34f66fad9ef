"""How fast does ``qtrace verify --trace`` replay a capture through the model?

    .venv/bin/python benchmarks/replay_speed.py [--trace reports/captures/e1000-tcg-linux]
        [--device e1000] [--rounds 5] [--repeat N]
    .venv/bin/python benchmarks/replay_speed.py --models   # every model's committed capture

The models must stay fast (issue 13: at least 100,000 accesses/s with ``--explain`` off),
so this replays one committed capture several times, the trace read once beforehand, and
prints accesses per second for the best and the median round, without and with the
explaining observer (``--explain``, which tracks every bit's origin and costs more). This
is a benchmark, not a test: nothing here asserts a time.

A probe capture is short (edu's: 83 accesses), so the cost of building the model and
attributing events would dominate: ``--repeat N`` replays the capture's records N times
over in one trace (renumbered; what the guest did once, done N times, which the model must
still agree with), and ``--models`` does so for each model's committed probe capture
(:data:`_MODEL_CAPTURES`), the e1000's Linux capture as it is.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path

from qtrace.trace import Access, Trace, read_trace
from qtrace.verify import replay, verify_device
from qtrace.verify.explain import Explainer

_CAPTURES = Path(__file__).parents[1] / "reports" / "captures"
_DEFAULT_TRACE = _CAPTURES / "e1000-tcg-linux"
_GOAL = 100_000
_MODEL_CAPTURES = (  # (capture, model, times its records are replayed over in one trace)
    ("e1000-tcg-linux", "e1000", 1),
    ("edu-tcg-probe", "edu", 200),
    ("virtio-rng-pci-tcg-probe", "virtio-rng-pci", 100),
)


def _repeated(trace: Trace, times: int) -> Trace:
    """``trace`` with its records ``times`` times over, ``seq`` renumbered to keep order;
    configuration-space accesses only the first time (firmware's bytes, adopted then, would
    not read again as they did before the guest first wrote them)."""
    if times <= 1:
        return trace
    span = max((getattr(r, "seq", 0) for r in trace.records), default=0) + 1
    records = [
        dataclasses.replace(r, seq=r.seq + round_ * span) if hasattr(r, "seq") else r
        for round_ in range(times)
        for r in trace.records
        if not (round_ and isinstance(r, Access) and r.space == "pci-config")
    ]
    return dataclasses.replace(trace, records=records)


def _rounds(
    trace_path: Path, device: str, rounds: int, explain: bool, repeat: int = 1
) -> tuple[int, list[float]]:
    trace = read_trace(trace_path / "trace.jsonl" if trace_path.is_dir() else trace_path)
    trace = _repeated(trace, repeat)
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
    parser.add_argument("--repeat", type=int, default=1, help="the records N times over")
    parser.add_argument("--models", action="store_true", help="every model's capture")
    args = parser.parse_args()
    runs = (
        [(_CAPTURES / name, device, times) for name, device, times in _MODEL_CAPTURES]
        if args.models
        else [(args.trace, args.device, args.repeat)]
    )
    for trace, device, times in runs:
        for explain in (False, True):
            if explain and device != "e1000":
                continue  # --explain narrates the e1000 only
            accesses, elapsed = _rounds(trace, device, args.rounds, explain, times)
            best, median = accesses / min(elapsed), accesses / statistics.median(elapsed)
            goal = f" (goal >= {_GOAL:,})" if not explain else ""
            print(
                f"{device} {trace.name} x{times}: explain {'on ' if explain else 'off'}: "
                f"{accesses:,} accesses, best {best:,.0f}/s, median {median:,.0f}/s "
                f"over {args.rounds} rounds{goal}"
            )


if __name__ == "__main__":
    main()
