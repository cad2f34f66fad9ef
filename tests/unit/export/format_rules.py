"""Each export format's own rules, written from its specification, as problem lists.

* Chrome JSON trace event format (the "Trace Event Format" document Perfetto and Chromium
  implement): the object form with ``traceEvents``; per event the keys its phase needs; B/E
  pairs matched per thread; complete events' ``dur`` >= 0 and properly nested per thread;
  timestamps non-decreasing per thread in file order; flow events (s/t/f) paired by
  (cat, name, id), start before finish, each bound to a slice enclosing it on its thread.
* Brendan Gregg's folded stacks: ``frame;frame;... count`` lines, positive integer counts.
* speedscope: its published JSON schema (``tests/fixtures/speedscope-file-format-schema.json``,
  copied from the speedscope 1.25.0 npm package) by a small draft-07 validator for the
  keywords that schema uses, plus the rules the schema cannot say (indices in range, one
  weight per sample).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

SPEEDSCOPE_SCHEMA = (
    Path(__file__).resolve().parents[2] / "fixtures" / "speedscope-file-format-schema.json"
)

_PHASES = set("BEXiIsCbnetfMPOND(),R") | {"T", "p", "S", "F"}
_METADATA = {
    "process_name",
    "process_labels",
    "process_sort_index",
    "thread_name",
    "thread_sort_index",
}


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def chrome_trace_problems(obj: object) -> list[str]:
    """What in ``obj`` breaks the Chrome JSON trace event format's rules ([] if nothing)."""
    if not isinstance(obj, dict) or not isinstance(obj.get("traceEvents"), list):
        return ["not the object form: no traceEvents list"]
    problems: list[str] = []
    if obj.get("displayTimeUnit", "ms") not in ("ms", "ns"):
        problems.append(f"displayTimeUnit {obj['displayTimeUnit']!r}")
    last_ts: dict[tuple[int, int], float] = {}
    open_b: dict[tuple[int, int], list[str]] = defaultdict(list)
    slices: dict[tuple[int, int], list[tuple[float, float]]] = defaultdict(list)
    flows: dict[tuple[object, ...], list[dict[str, Any]]] = defaultdict(list)
    for n, ev in enumerate(obj["traceEvents"]):
        where = f"event {n} ({ev.get('name')!r}, ph {ev.get('ph')!r})"
        ph = ev.get("ph")
        if ph not in _PHASES:
            problems.append(f"{where}: unknown phase")
            continue
        if not isinstance(ev.get("name"), str):
            problems.append(f"{where}: no name")
        if not isinstance(ev.get("pid"), int) or not isinstance(ev.get("tid"), int):
            problems.append(f"{where}: pid/tid are not integers")
            continue
        track = (ev["pid"], ev["tid"])
        if "args" in ev and not isinstance(ev["args"], dict):
            problems.append(f"{where}: args is not an object")
        if ph == "M":
            if ev["name"] not in _METADATA:
                problems.append(f"{where}: unknown metadata event")
            elif ev["name"].endswith("_name") and not isinstance(ev["args"].get("name"), str):
                problems.append(f"{where}: metadata without args.name")
            continue
        if not _number(ev.get("ts")):
            problems.append(f"{where}: ts is not a number")
            continue
        ts = float(ev["ts"])
        if ts < last_ts.get(track, float("-inf")):
            problems.append(f"{where}: ts {ts} goes back on track {track}")
        last_ts[track] = ts
        if ph == "X":
            if not _number(ev.get("dur")) or ev["dur"] < 0:
                problems.append(f"{where}: complete event without dur >= 0")
            else:
                slices[track].append((ts, ts + float(ev["dur"])))
        elif ph == "B":
            open_b[track].append(ev["name"])
        elif ph == "E":
            if not open_b[track]:
                problems.append(f"{where}: E without a B")
            else:
                begun = open_b[track].pop()
                if ev.get("name") not in (None, begun):
                    problems.append(f"{where}: E closes {begun!r}")
        elif ph in ("i", "I"):
            if ev.get("s", "t") not in ("g", "p", "t"):
                problems.append(f"{where}: instant scope {ev['s']!r}")
        elif ph in ("s", "t", "f"):
            if "id" not in ev:
                problems.append(f"{where}: flow event without id")
            if ev.get("bp") not in (None, "e"):
                problems.append(f"{where}: flow binding point {ev['bp']!r}")
            flows[(ev.get("cat"), ev["name"], ev.get("id"))].append({**ev, "_n": n})
    for track, names in open_b.items():
        if names:
            problems.append(f"track {track}: B without E: {names}")
    for track, spans in slices.items():
        problems += [f"track {track}: {p}" for p in _nesting_problems(spans)]
    for key, events in flows.items():
        phases = [e["ph"] for e in events]
        if phases.count("s") != 1 or phases.count("f") != 1:
            problems.append(f"flow {key}: phases {phases} (one s and one f expected)")
            continue
        start = next(e for e in events if e["ph"] == "s")
        finish = next(e for e in events if e["ph"] == "f")
        if finish["ts"] < start["ts"]:
            problems.append(f"flow {key}: finishes before it starts")
        for e in events:
            spans = slices.get((e["pid"], e["tid"]), [])
            if not any(begin <= e["ts"] <= end for begin, end in spans):
                problems.append(f"flow {key}: its {e['ph']} event is in no slice of its track")
    return problems


def _nesting_problems(spans: list[tuple[float, float]]) -> list[str]:
    """Complete events on one thread must nest: none may start inside another and end after."""
    problems: list[str] = []
    stack: list[tuple[float, float]] = []
    for begin, end in sorted(spans, key=lambda s: (s[0], -s[1])):
        while stack and begin >= stack[-1][1]:
            stack.pop()
        if stack and end > stack[-1][1]:
            problems.append(f"slice {begin}-{end} overlaps {stack[-1][0]}-{stack[-1][1]}")
        stack.append((begin, end))
    return problems


_FOLDED_LINE = re.compile(r"^(?P<stack>[^;\n]+(?:;[^;\n]+)*) (?P<count>[1-9][0-9]*)$")


def folded_problems(text: str) -> list[str]:
    """What in ``text`` breaks the folded format (one ``stack count`` line per stack)."""
    problems: list[str] = []
    seen: set[str] = set()
    if text and not text.endswith("\n"):
        problems.append("the last line has no newline")
    for n, line in enumerate(text.splitlines(), 1):
        match = _FOLDED_LINE.match(line)
        if match is None:
            problems.append(f"line {n}: not 'frame;...;frame count': {line[:80]!r}")
            continue
        if match["stack"] in seen:
            problems.append(f"line {n}: the same stack twice")
        seen.add(match["stack"])
    return problems


def parse_folded(text: str) -> dict[tuple[str, ...], int]:
    """Stack (outermost first) -> count."""
    out: dict[tuple[str, ...], int] = {}
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        out[tuple(stack.split(";"))] = int(count)
    return out


def _schema_problems(
    value: Any, schema: dict[str, Any], root: dict[str, Any], at: str
) -> list[str]:
    if "$ref" in schema:
        ref = schema["$ref"].removeprefix("#/definitions/")
        return _schema_problems(value, root["definitions"][ref], root, at)
    if "anyOf" in schema:
        if all(_schema_problems(value, s, root, at) for s in schema["anyOf"]):
            return [f"{at}: matches none of anyOf"]
        return []
    problems: list[str] = []
    kind = schema.get("type")
    checks = {
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str),
        "number": _number,
    }
    if kind is not None and not checks[kind](value):
        return [f"{at}: not a {kind}"]
    if "const" in schema and value != schema["const"]:
        problems.append(f"{at}: {value!r} is not {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{at}: {value!r} not in {schema['enum']}")
    if isinstance(value, dict):
        for name in schema.get("required", []):
            if name not in value:
                problems.append(f"{at}: lacks {name}")
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                problems += _schema_problems(value[name], sub, root, f"{at}.{name}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            problems += _schema_problems(item, schema["items"], root, f"{at}[{i}]")
    return problems


def speedscope_problems(obj: object) -> list[str]:
    """What in ``obj`` breaks speedscope's file format ([] if nothing)."""
    schema = json.loads(SPEEDSCOPE_SCHEMA.read_text(encoding="utf-8"))
    problems = _schema_problems(obj, schema, schema, "$")
    if problems or not isinstance(obj, dict):
        return problems
    frames = obj["shared"]["frames"]
    for p, profile in enumerate(obj["profiles"]):
        if profile["type"] != "sampled":
            continue
        if len(profile["samples"]) != len(profile["weights"]):
            problems.append(
                f"profile {p}: {len(profile['samples'])} samples, {len(profile['weights'])} weights"
            )
        for s, sample in enumerate(profile["samples"]):
            if any(not isinstance(i, int) or not 0 <= i < len(frames) for i in sample):
                problems.append(f"profile {p} sample {s}: a frame index out of range")
        if any(w <= 0 for w in profile["weights"]):
            problems.append(f"profile {p}: a weight <= 0")
        if profile["endValue"] - profile["startValue"] != sum(profile["weights"]):
            problems.append(f"profile {p}: endValue - startValue is not the weights' sum")
    if not 0 <= obj.get("activeProfileIndex", 0) < len(obj["profiles"]):
        problems.append("activeProfileIndex out of range")
    return problems
