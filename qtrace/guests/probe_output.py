"""Parser for the probe guest's serial protocol (``qtrace-probe/1``).

The probe guest (``qtrace/guests/probe/``) prints, on COM1, one ``ACC`` line for every
register or configuration access it makes to the device under test. A capture records
the same accesses from inside QEMU with gdb; comparing the two tells whether the trace
is complete and in order. This module turns the serial log into typed records so that
comparison is a list comparison. The protocol itself is documented in
``qtrace/guests/probe/README.md``; in short::

    # qtrace-probe/1 start                     first line of the guest's own output
    # <free text>                              information (some forms parsed, below)
    ACC <R|W> <mmio|pio|cfg> <bar|-> 0x<offset> <size> 0x<value>
    # acc BB:DD.F R|W cfg - 0x<offset> <size> 0x<value>   a bridge's config access
    DONE ok | DONE fail <reason>               last line

Everything before the start line is firmware output on the same UART (SeaBIOS) and is
ignored. ``op`` and ``space`` are given in the trace schema's vocabulary
(``read``/``write``, ``mmio``/``pio``/``pci-config``) so records compare directly with
:class:`qtrace.trace.Access`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from qtrace.errors import QtraceError

__all__ = [
    "PROTOCOL",
    "START_LINE",
    "ProbeAccess",
    "ProbeBar",
    "ProbeBridge",
    "ProbeCapability",
    "ProbeDone",
    "ProbeOp",
    "ProbeOutput",
    "ProbeOutputError",
    "ProbePciFunction",
    "ProbeSpace",
    "ProbeWindow",
    "parse_serial",
    "probe_verdict",
    "read_serial_log",
]

PROTOCOL = "qtrace-probe/1"
START_LINE = f"# {PROTOCOL} start"

ProbeOp = Literal["read", "write"]
"""Same values as the trace schema's access ``op``."""

ProbeSpace = Literal["mmio", "pio", "pci-config"]
"""Same values as the trace schema's access ``space``."""


class ProbeOutputError(QtraceError):
    """The serial log is not valid ``qtrace-probe/1`` output; names the line."""

    def __init__(self, line: int, reason: str, text: str = "") -> None:
        self.line = line
        self.reason = reason
        self.text = text
        where = f"serial line {line}" if line else "serial log"
        shown = f": {text!r}" if text else ""
        super().__init__(
            f"{where}: {reason}{shown}",
            hint="The probe guest writes this log; check it was built from the same source.",
        )


@dataclass(frozen=True)
class ProbeAccess:
    """One register or config access the guest made to the target device.

    ``bar`` is the BAR index for ``mmio``/``pio`` and ``None`` for ``pci-config``;
    ``offset`` is relative to that BAR (or the config-space offset); ``value`` is what
    was read or written, ``size`` is in bytes. ``lineno`` (1-based, in the serial text)
    is for messages only and does not take part in comparisons. ``bdf`` is ``None`` for
    the target's accesses (``ACC`` lines) and the bridge's ``BB:DD.F`` for a bridge's
    config access (``# acc`` lines, :attr:`ProbeOutput.bridge_accesses`).
    """

    op: ProbeOp
    space: ProbeSpace
    bar: int | None
    offset: int
    size: int
    value: int
    lineno: int = field(default=0, compare=False)
    bdf: str | None = None


@dataclass(frozen=True)
class ProbePciFunction:
    """A function found by the guest's bus-0 scan (``# pci`` line)."""

    bus: int
    dev: int
    fn: int
    vendor: int
    device: int
    class_code: int
    header_type: int
    is_target: bool

    @property
    def bdf(self) -> str:
        """``BB:DD.F`` as QEMU's ``addr=`` and the guest's ``target=`` spell it."""
        return f"{self.bus:02x}:{self.dev:02x}.{self.fn:x}"


@dataclass(frozen=True)
class ProbeBar:
    """A BAR of the target after sizing and programming (``# bar N <kind>`` line).

    ``kind`` is ``mem32``, ``mem64`` or ``io``; ``above_4g`` marks a 64-bit BAR the
    guest cannot reach without paging and could not move below 4 GiB (4 GiB or larger,
    or no room left in its window); it skips it.
    """

    index: int
    kind: Literal["mem32", "mem64", "io"]
    base: int
    size: int
    prefetchable: bool = False
    above_4g: bool = False


@dataclass(frozen=True)
class ProbeCapability:
    """One entry of the target's capability list (``# cap`` / ``# ecap`` line).

    ``offset`` is where it sits in config space, ``cap_id`` its ID (8 bits in the
    standard list, 16 in the extended one, which only ECAM reaches), ``name`` the
    guest's short name for the ID (``msix``, ``pcie``, ``vendor``, ``aer``, ...) and
    ``detail`` the rest of the line (for virtio's vendor capabilities e.g.
    ``virtio notify bar 4 offset 0x3000 length 0x1000 multiplier 4``).
    """

    offset: int
    cap_id: int
    name: str
    extended: bool = False
    detail: str = ""


@dataclass(frozen=True)
class ProbeWindow:
    """A range of a BAR the generic sequence reads (``# generic bar`` line).

    ``what`` is ``None`` for the first bytes of the BAR and otherwise names the structure
    a capability placed there (``virtio-common``, ``virtio-notify``, ``virtio-isr``,
    ``virtio-device``, ``msix-table``, ``msix-pba``). ``space`` is ``mmio`` or ``pio``.
    """

    bar: int
    space: Literal["mmio", "pio"]
    offset: int
    length: int
    what: str | None = None


@dataclass(frozen=True)
class ProbeBridge:
    """A PCI-to-PCI bridge the guest enumerated (``# bridge`` lines).

    The bus numbers are the ones the guest wrote. ``mem_window``/``io_window`` are the
    inclusive ``(base, limit)`` the bridge holds after the guest opened it for a target
    behind it, ``None`` when closed or (bridges not on the target's path) not set up by
    the guest; ``command`` is its command register read back then.
    """

    bdf: str
    primary: int
    secondary: int
    subordinate: int
    mem_window: tuple[int, int] | None = None
    io_window: tuple[int, int] | None = None
    command: int | None = None


@dataclass(frozen=True)
class ProbeDone:
    """The final line: ``ok`` or the first failure's reason (``timeout-<what>`` etc.)."""

    ok: bool
    reason: str | None = None


@dataclass(frozen=True)
class ProbeOutput:
    """Everything the guest reported after its start line.

    ``done`` is ``None`` when the guest never finished (hung, killed, crashed), and
    ``truncated`` is set when the log ends in the middle of a line, which then is not
    parsed. ``suppressed_accesses`` counts ACC lines the guest did not print (``quiet=1``
    load loops): those accesses happened but are not in ``accesses``. ``accesses`` are
    the target's only; the config accesses the guest made to bridges while it numbered
    buses and opened windows are ``bridge_accesses``, in program order.
    """

    accesses: tuple[ProbeAccess, ...] = ()
    info: tuple[str, ...] = ()
    done: ProbeDone | None = None
    devices: tuple[ProbePciFunction, ...] = ()
    bars: tuple[ProbeBar, ...] = ()
    capabilities: tuple[ProbeCapability, ...] = ()
    windows: tuple[ProbeWindow, ...] = ()
    bridges: tuple[ProbeBridge, ...] = ()
    bridge_accesses: tuple[ProbeAccess, ...] = ()
    timeouts: tuple[str, ...] = ()
    suppressed_accesses: int = 0
    truncated: bool = False

    @property
    def ok(self) -> bool:
        """True only if the guest printed ``DONE ok``."""
        return self.done is not None and self.done.ok

    @property
    def target(self) -> ProbePciFunction | None:
        """The scanned function marked as the target, if the scan saw it."""
        return next((d for d in self.devices if d.is_target), None)

    def bar(self, index: int) -> ProbeBar | None:
        """The BAR with this index, or ``None`` if it is unimplemented."""
        return next((b for b in self.bars if b.index == index), None)

    def capability(self, name: str, *, extended: bool = False) -> ProbeCapability | None:
        """The first capability the guest named ``name`` in the standard (or extended) list."""
        return next(
            (c for c in self.capabilities if c.name == name and c.extended == extended), None
        )


def read_serial_log(path: Path | str) -> ProbeOutput:
    """Parse a serial log file as written by QEMU's ``-serial file:``.

    Decoding uses ``errors="replace"`` because the firmware before the start line may
    write terminal control bytes that are not UTF-8.
    """
    return parse_serial(Path(path).read_text(encoding="utf-8", errors="replace"))


def probe_verdict(path: Path) -> str | None:
    """The probe's own verdict (``GuestPlan.serial_verdict``): ``None`` after ``DONE ok``,
    else what it reported.

    Raises:
        ProbeOutputError: the log is not ``qtrace-probe/1`` output.
    """
    output = read_serial_log(path)
    if output.ok:
        return None
    if output.done is None:
        return "the guest exited without its DONE line"
    return f"the guest reported: DONE fail {output.done.reason or ''}".strip()


def parse_serial(text: str) -> ProbeOutput:
    """Parse the guest's serial output.

    Args:
        text: the whole serial log, firmware output and CR/LF line ends included.

    Returns:
        The parsed output of the last run of the guest in the log (a reboot would
        start a second one; qtrace runs QEMU with ``-no-reboot``).

    Raises:
        ProbeOutputError: no start line, a malformed ``ACC``/``DONE`` line, or output
            after ``DONE``.
    """
    lines = text.replace("\r", "").split("\n")
    # split() leaves "" after a final newline; anything else there is a cut-off line.
    truncated = lines[-1] != ""
    lines = lines[:-1]
    start = None
    for i, line in enumerate(lines):
        if line == START_LINE:
            start = i
    if start is None:
        raise ProbeOutputError(0, f"no {START_LINE!r} line")

    state = _State(truncated=truncated)
    for i in range(start + 1, len(lines)):
        line = lines[i]
        lineno = i + 1
        if not line:
            continue
        if state.done is not None:
            raise ProbeOutputError(lineno, "output after DONE", line)
        if line.startswith("ACC "):
            state.accesses.append(_parse_acc(line, lineno))
        elif line.startswith("# "):
            _parse_info(line[2:], lineno, state)
        elif line.startswith("DONE"):
            state.done = _parse_done(line, lineno)
        else:
            raise ProbeOutputError(lineno, "not an ACC, '# ' or DONE line", line)
    return state.freeze()


# ---- used internally -------------------------------------------------------------------


@dataclass
class _State:
    """Mutable accumulator; :meth:`freeze` makes the public immutable result."""

    truncated: bool
    accesses: list[ProbeAccess] = field(default_factory=list)
    info: list[str] = field(default_factory=list)
    devices: list[ProbePciFunction] = field(default_factory=list)
    bars: list[ProbeBar] = field(default_factory=list)
    capabilities: list[ProbeCapability] = field(default_factory=list)
    windows: list[ProbeWindow] = field(default_factory=list)
    bridges: list[ProbeBridge] = field(default_factory=list)
    bridge_accesses: list[ProbeAccess] = field(default_factory=list)
    timeouts: list[str] = field(default_factory=list)
    suppressed: int = 0
    done: ProbeDone | None = None

    def freeze(self) -> ProbeOutput:
        return ProbeOutput(
            accesses=tuple(self.accesses),
            info=tuple(self.info),
            done=self.done,
            devices=tuple(self.devices),
            bars=tuple(self.bars),
            capabilities=tuple(self.capabilities),
            windows=tuple(self.windows),
            bridges=tuple(self.bridges),
            bridge_accesses=tuple(self.bridge_accesses),
            timeouts=tuple(self.timeouts),
            suppressed_accesses=self.suppressed,
            truncated=self.truncated,
        )


_OPS: dict[str, ProbeOp] = {"R": "read", "W": "write"}
_SPACES: dict[str, ProbeSpace] = {"mmio": "mmio", "pio": "pio", "cfg": "pci-config"}
_BAR_KINDS: dict[str, Literal["mem32", "mem64", "io"]] = {
    "mem32": "mem32",
    "mem64": "mem64",
    "io": "io",
}
_HEX = r"0x[0-9a-fA-F]+"
_ACC_RE = re.compile(
    rf"ACC (?P<op>[RW]) (?P<space>mmio|pio|cfg) (?P<bar>[0-5]|-) "
    rf"(?P<offset>{_HEX}) (?P<size>[1248]) (?P<value>{_HEX})"
)
_DONE_RE = re.compile(r"DONE (?:(?P<ok>ok)|fail (?P<reason>\S.*))")
_BDF = r"[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]"
_BRIDGE_ACC_RE = re.compile(rf"acc (?P<bdf>{_BDF}) (?P<acc>.+)")


def _parse_acc(line: str, lineno: int, bdf: str | None = None) -> ProbeAccess:
    m = _ACC_RE.fullmatch(line)
    if m is None:
        raise ProbeOutputError(lineno, "malformed ACC line", line)
    space = _SPACES[m["space"]]
    bar = None if m["bar"] == "-" else int(m["bar"])
    if (space == "pci-config") != (bar is None):
        raise ProbeOutputError(lineno, "cfg accesses and only they have bar '-'", line)
    size = int(m["size"])
    value = int(m["value"], 16)
    if value >> (8 * size):
        raise ProbeOutputError(lineno, f"value wider than {size} bytes", line)
    return ProbeAccess(
        op=_OPS[m["op"]],
        space=space,
        bar=bar,
        offset=int(m["offset"], 16),
        size=size,
        value=value,
        lineno=lineno,
        bdf=bdf,
    )


def _parse_done(line: str, lineno: int) -> ProbeDone:
    m = _DONE_RE.fullmatch(line)
    if m is None:
        raise ProbeOutputError(lineno, "malformed DONE line", line)
    if m["ok"]:
        return ProbeDone(ok=True)
    return ProbeDone(ok=False, reason=m["reason"])


def _on_pci(m: re.Match[str], state: _State) -> None:
    state.devices.append(
        ProbePciFunction(
            bus=int(m["bus"], 16),
            dev=int(m["dev"], 16),
            fn=int(m["fn"], 16),
            vendor=int(m["vendor"], 16),
            device=int(m["device"], 16),
            class_code=int(m["cls"], 16),
            header_type=int(m["hdr"], 16),
            is_target=m["target"] is not None,
        )
    )


def _on_bar(m: re.Match[str], state: _State) -> None:
    state.bars.append(
        ProbeBar(
            index=int(m["index"]),
            kind=_BAR_KINDS[m["kind"]],
            base=int(m["base"], 16),
            size=int(m["size"], 16),
            prefetchable=m["prefetch"] is not None,
            above_4g=m["above"] is not None,
        )
    )


def _on_capability(m: re.Match[str], state: _State) -> None:
    state.capabilities.append(
        ProbeCapability(
            offset=int(m["offset"], 16),
            cap_id=int(m["id"], 16),
            name=m["name"],
            extended=m["kind"] == "ecap",
            detail=m["detail"] or "",
        )
    )


def _on_window(m: re.Match[str], state: _State) -> None:
    state.windows.append(
        ProbeWindow(
            bar=int(m["bar"]),
            space="pio" if m["space"] == "pio" else "mmio",
            offset=int(m["offset"], 16) if m["offset"] else 0,
            length=int(m["length"], 16),
            what=m["what"],
        )
    )


def _on_bridge_buses(m: re.Match[str], state: _State) -> None:
    state.bridges.append(
        ProbeBridge(
            bdf=m["bdf"],
            primary=int(m["primary"], 16),
            secondary=int(m["secondary"], 16),
            subordinate=int(m["subordinate"], 16),
        )
    )


def _window(base: str | None, limit: str | None) -> tuple[int, int] | None:
    return None if base is None or limit is None else (int(base, 16), int(limit, 16))


def _on_bridge_window(m: re.Match[str], state: _State) -> None:
    for i, bridge in enumerate(state.bridges):
        if bridge.bdf == m["bdf"]:
            state.bridges[i] = replace(
                bridge,
                mem_window=_window(m["mem_base"], m["mem_limit"]),
                io_window=_window(m["io_base"], m["io_limit"]),
                command=int(m["command"], 16),
            )


def _on_timeout(m: re.Match[str], state: _State) -> None:
    state.timeouts.append(m["what"])


def _on_suppressed(m: re.Match[str], state: _State) -> None:
    state.suppressed += int(m["count"])


# Info lines with a fixed shape that tests want as data; the rest stay plain text.
_InfoHandler = Callable[[re.Match[str], _State], None]
_INFO_PATTERNS_AND_HANDLERS: tuple[tuple[re.Pattern[str], _InfoHandler], ...] = (
    (
        re.compile(
            r"pci (?P<bus>[0-9a-f]{2}):(?P<dev>[0-9a-f]{2})\.(?P<fn>[0-7]) "
            r"(?P<vendor>[0-9a-f]{4}):(?P<device>[0-9a-f]{4}) class (?P<cls>[0-9a-f]{6}) "
            r"hdr (?P<hdr>[0-9a-f]{2})(?P<target> target)?"
        ),
        _on_pci,
    ),
    (
        re.compile(
            rf"bar (?P<index>[0-5]) (?P<kind>mem32|mem64|io) base (?P<base>{_HEX})"
            rf"(?P<above> \(above 4 GiB\))? size (?P<size>{_HEX})(?P<prefetch> prefetch)?"
        ),
        _on_bar,
    ),
    (
        re.compile(
            rf"(?P<kind>cap|ecap) (?P<offset>{_HEX}) (?P<id>{_HEX}) (?P<name>[a-z0-9-]+)"
            r"(?: (?P<detail>.+))?"
        ),
        _on_capability,
    ),
    (
        re.compile(
            rf"generic bar (?P<bar>[0-5]) (?P<space>mmio|pio) (?P<length>{_HEX}) bytes"
            rf"(?: at (?P<offset>{_HEX}) (?P<what>\S+))?"
        ),
        _on_window,
    ),
    (
        re.compile(
            rf"bridge (?P<bdf>{_BDF}) bus (?P<primary>[0-9a-f]{{2}}) "
            r"secondary (?P<secondary>[0-9a-f]{2}) subordinate (?P<subordinate>[0-9a-f]{2})"
        ),
        _on_bridge_buses,
    ),
    (
        re.compile(
            rf"bridge (?P<bdf>{_BDF}) window "
            rf"mem (?:off|(?P<mem_base>{_HEX})-(?P<mem_limit>{_HEX})) "
            rf"io (?:off|(?P<io_base>{_HEX})-(?P<io_limit>{_HEX})) "
            rf"prefetch off command (?P<command>{_HEX})"
        ),
        _on_bridge_window,
    ),
    (re.compile(r"timeout (?P<what>\S+)"), _on_timeout),
    (re.compile(r"suppressed (?P<count>[0-9]+)"), _on_suppressed),
)


def _parse_info(body: str, lineno: int, state: _State) -> None:
    bridge_acc = _BRIDGE_ACC_RE.fullmatch(body)
    if bridge_acc is not None:
        # The same fields as an ACC line, about a bridge: malformed ones are rejected too.
        access = _parse_acc(f"ACC {bridge_acc['acc']}", lineno, bdf=bridge_acc["bdf"])
        if access.space != "pci-config":
            raise ProbeOutputError(lineno, "a bridge access must be a cfg access", f"# {body}")
        state.bridge_accesses.append(access)
        return
    state.info.append(body)
    for pattern, handler in _INFO_PATTERNS_AND_HANDLERS:
        m = pattern.fullmatch(body)
        if m is not None:
            handler(m, state)
            return
