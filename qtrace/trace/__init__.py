"""The trace file format ``qtrace-trace/1``: record types, reader and writer."""

from qtrace.trace.codec import (
    Trace,
    TraceWriter,
    decode_line,
    device_properties,
    iter_records,
    read_trace,
    record_from_json,
    record_to_json,
    repair_partial_tail,
)
from qtrace.trace.kinds import Accel, AccelChoice, CaptureStatus, Guest, Machine
from qtrace.trace.schema import (
    SCHEMA_VERSION,
    Access,
    Dma,
    End,
    Exit,
    Frame,
    Header,
    Irq,
    Record,
    Stack,
)

__all__ = [
    "SCHEMA_VERSION",
    "Accel",
    "AccelChoice",
    "CaptureStatus",
    "Guest",
    "Machine",
    "Access",
    "Dma",
    "End",
    "Exit",
    "Frame",
    "Header",
    "Irq",
    "Record",
    "Stack",
    "Trace",
    "TraceWriter",
    "decode_line",
    "device_properties",
    "iter_records",
    "read_trace",
    "record_from_json",
    "record_to_json",
    "repair_partial_tail",
]
