"""Writes ``qtrace-trace/1`` records from inside gdb, one flushed line each.

The host's ``qtrace.trace.schema`` defines the same records; both hold SCHEMA_VERSION and
a unit test checks they agree. Keys whose value is None are left out.

The records written at every hit (accesses) can be written from a template instead
(:meth:`TraceOut.write_shaped`): most of their fields are the same for every hit of one
stack on one thread, so that part is encoded once, by the same encoder (the line is byte
for byte the one :meth:`TraceOut.write` would give), and a hit only formats its numbers
into it. Building and encoding the record was the largest Python cost of a hit.
Standard library only, no ``gdb``.
"""

import json
import time

# Records that happen at a moment get ``t``: seconds since the trace was opened.
TIMED = ("access", "exit", "irq", "dma", "async")

SCHEMA_VERSION = "qtrace-trace/1"
# One encoder for every record (json.dumps with separators builds a new one per call).
_ENCODER = json.JSONEncoder(separators=(",", ":"))
_HOLE = "@@qtrace-hole-%d@@"  # stands for a varying field while a template is made


class TraceOut:
    """Appends records to the trace file and hands out sequence numbers."""

    def __init__(self, path):
        self.path = path
        self._file = open(path, "a", encoding="utf-8")
        self._seq = 0
        self._opened = time.monotonic()
        self.counts = {"access": 0, "exit": 0, "irq": 0, "dma": 0, "stack": 0}
        self._templates = {}  # (shape, which values are None) -> line template or None

    def next_seq(self):
        self._seq += 1
        return self._seq

    def write(self, record):
        kind = record["type"]
        if kind in TIMED and "t" not in record:
            record["t"] = round(time.monotonic() - self._opened, 6)
        self._put(kind, _ENCODER.encode({k: v for k, v in record.items() if v is not None}))

    def write_shaped(self, kind, shape, build, values):
        """Write the record ``build(values)`` gives, a ``kind`` record whose other fields
        are the same for every call with this ``shape`` (any hashable key). ``values`` are
        ints or None (None: the field is left out); ``t`` is added as :meth:`write` adds it.
        """
        numbers = [v for v in values if v is not None]
        key = (shape, tuple([v is None for v in values]))
        template = self._templates.get(key, False)
        if template is False:
            template = self._templates[key] = _template(kind, build, values)
        if template is None:  # a field its holes cannot stand in for: encode the record
            return self.write(build(values))
        numbers.append(round(time.monotonic() - self._opened, 6))
        self._put(kind, template % tuple(numbers))
        return None

    def _put(self, kind, line):
        self._file.write(line + "\n")
        self._file.flush()
        if kind in self.counts:
            self.counts[kind] += 1

    def close(self):
        if not self._file.closed:
            self._file.close()


def _template(kind, build, values):
    """The JSON line of ``build``'s record with ``%d`` for each value that is not None and
    ``%r`` for ``t`` (a float: json writes ``float.__repr__`` too), or None when the record
    is not one a template can give (a value that is no int, a hole that did not come out
    once and as itself)."""
    if kind not in TIMED or any(v is not None and type(v) is not int for v in values):
        return None
    holes = [None if v is None else _HOLE % i for i, v in enumerate(values)]
    record = build(holes)
    if record.get("type") != kind or "t" in record:
        return None
    record["t"] = _HOLE % len(values)
    line = _ENCODER.encode({k: v for k, v in record.items() if v is not None})
    template = line.replace("%", "%%")
    for index, hole in enumerate(holes + [record["t"]]):
        if hole is None:
            continue
        quoted = '"%s"' % hole
        if template.count(quoted) != 1 or line.count(hole) != 1:
            return None
        template = template.replace(quoted, "%r" if index == len(values) else "%d")
    return template
