"""The collector configuration as the gdb side reads it: ``collector.json``, checked on load.

The host writes it (``qtrace.launch.collector_config.CollectorConfig``, where every default
lives); this side only checks that what arrived is the protocol it speaks, with every key it
reads, of the right type, and nothing it would silently ignore. A unit test on the host loads
both modules and checks that they agree key for key. Standard library only, no ``gdb``: the
test imports this file with the host's Python.
"""

import json

COLLECTOR_PROTOCOL = "qtrace-collector/2"

# key -> the JSON types it may have (None: JSON null).
CONFIG_KEYS = {
    "protocol": (str,),
    "trace_path": (str,),
    "source_root": (str,),
    "header": (dict,),
    "device_path": (str,),
    "record_pci_config": (bool,),
    "record_irq": (bool,),
    "record_dma": (bool,),
    "record_async": (bool, list),  # true/false, or the list of async kinds to record
    "dma_cap_bytes": (int,),
    "exits": (list,),
    "arm_on": (str, type(None)),
    "quiet_ports": (list,),
    "max_hits": (int, type(None)),
    "fast_stacks": (bool,),
    "collector": (str,),  # "breakpoint", or "fast": discovery only (the host sets tracepoints)
}
COLLECTORS = ("breakpoint", "fast")

# The kinds of ``async`` records, as a ``record_async`` list names them:
# qtrace.trace.kinds.ASYNC_KINDS on the host (a unit test checks the two are equal).
ASYNC_KINDS = ("ioeventfd", "fd-handler", "bh", "timer", "irqfd")

# The statuses an ``end`` record may carry: qtrace.trace.kinds.CaptureStatus on the host
# (gdb's Python cannot import qtrace); a unit test checks the two lists are equal.
END_STATUSES = ("ok", "interrupted", "timeout", "guest-hang", "error")


class ConfigError(ValueError):
    """``collector.json`` is not what this collector speaks; the message says what differs."""


def check_config(data):
    """Return ``data`` when it is a valid configuration of :data:`COLLECTOR_PROTOCOL`."""
    if not isinstance(data, dict):
        raise ConfigError("collector.json must hold a JSON object")
    if data.get("protocol") != COLLECTOR_PROTOCOL:
        raise ConfigError(
            "collector.json speaks %r; this collector speaks %r (host and gdbscripts differ)"
            % (data.get("protocol"), COLLECTOR_PROTOCOL)
        )
    missing = sorted(set(CONFIG_KEYS) - set(data))
    unknown = sorted(set(data) - set(CONFIG_KEYS))
    if missing or unknown:
        raise ConfigError("collector.json: missing keys %s, unknown keys %s" % (missing, unknown))
    for key, types in CONFIG_KEYS.items():
        value = data[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise ConfigError(
                "collector.json: %s is %r, expected %s"
                % (key, value, "/".join(t.__name__ for t in types))
            )
    if data["collector"] not in COLLECTORS:
        raise ConfigError(
            "collector.json: collector %r; expected one of %s"
            % (data["collector"], ", ".join(COLLECTORS))
        )
    if isinstance(data["record_async"], list):
        unknown = sorted(set(data["record_async"]) - set(ASYNC_KINDS))
        if unknown:
            raise ConfigError(
                "collector.json: record_async names %s; the kinds are %s"
                % (unknown, ", ".join(ASYNC_KINDS))
            )
    return data


def load_config(path):
    """Read and check the host's ``collector.json``."""
    with open(path, encoding="utf-8") as handle:
        return check_config(json.load(handle))


def check_status(status):
    """Return ``status`` when an ``end`` record may carry it; a typo on either side would
    otherwise write a trace the host's reader refuses."""
    if status not in END_STATUSES:
        raise ConfigError("end status %r is not one of %s" % (status, ", ".join(END_STATUSES)))
    return status
