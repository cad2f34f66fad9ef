"""Writes ``qtrace-trace/1`` records from inside gdb, one flushed line each.

The host's ``qtrace.trace.schema`` defines the same records; both hold SCHEMA_VERSION and
a unit test checks they agree. Keys whose value is None are left out.
"""

import json
import time

# Records that happen at a moment get ``t``: seconds since the trace was opened.
TIMED = ("access", "exit", "irq", "dma", "async")

SCHEMA_VERSION = "qtrace-trace/1"


class TraceOut:
    """Appends records to the trace file and hands out sequence numbers."""

    def __init__(self, path):
        self.path = path
        self._file = open(path, "a", encoding="utf-8")
        self._seq = 0
        self._opened = time.monotonic()
        self.counts = {"access": 0, "exit": 0, "irq": 0, "dma": 0, "stack": 0}

    def next_seq(self):
        self._seq += 1
        return self._seq

    def write(self, record):
        kind = record["type"]
        if kind in TIMED and "t" not in record:
            record["t"] = round(time.monotonic() - self._opened, 6)
        line = json.dumps({k: v for k, v in record.items() if v is not None}, separators=(",", ":"))
        self._file.write(line + "\n")
        self._file.flush()
        if kind in self.counts:
            self.counts[kind] += 1

    def close(self):
        if not self._file.closed:
            self._file.close()
