"""The linux guest's serial lines and its verdict.

``linux/init`` prints, on the serial console, lines that start with :data:`PREFIX`; the
kernel's own messages and the workload tools' output (arping) are interleaved and ignored::

    qtrace-linux: start kernel=<release> device=<sysfs path> modalias=<modalias>
    qtrace-linux: load <sysfs path> modalias=<modalias> modules=<m1>,<m2>,...
    qtrace-linux: no-module <sysfs path> modalias=<modalias>
    qtrace-linux: bound <sysfs path> driver=<driver> module=<module>
    qtrace-linux: workload <name> <key>=<value>...
    qtrace-linux: done class=<class> driver=<module> <evidence>=<n>
    qtrace-linux: FAIL <why>

``load`` gives modprobe's load order for a modalias (dependencies first), ``bound`` the
driver sysfs then shows on that node. The verdict is the workload's own evidence: a
``done`` line whose class is in ``linux/workloads`` and whose evidence counter (that
class's, from the same table) is above 0, by a module the guest saw bind.

Pure but for :func:`linux_verdict`, which reads the serial log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "LINUX_DONE_LINE",
    "PREFIX",
    "WORKLOADS_PATH",
    "LinuxBinding",
    "LinuxDone",
    "LinuxLoad",
    "LinuxOutput",
    "Workload",
    "linux_verdict",
    "parse_linux_serial",
    "read_workloads",
]

PREFIX = "qtrace-linux: "
LINUX_DONE_LINE = f"{PREFIX}done"
"""How the serial log's success line starts (failures print ``qtrace-linux: FAIL <why>``)."""

WORKLOADS_PATH = Path(__file__).resolve().parent / "linux" / "workloads"


@dataclass(frozen=True)
class Workload:
    """One row of ``linux/workloads``: a device class and how the guest exercises it."""

    device_class: str
    detect: str
    workload: str
    evidence: str
    parameters: dict[str, int] = field(default_factory=dict)


def read_workloads(path: Path = WORKLOADS_PATH) -> dict[str, Workload]:
    """The workload table the guest runs from, by class (the guest reads the same file)."""
    rows: dict[str, Workload] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) < 4:
            raise ValueError(f"{path}: a row needs class, detect, workload, evidence: {line!r}")
        params = dict(param.split("=", 1) for param in fields[4:])
        rows[fields[0]] = Workload(
            fields[0], fields[1], fields[2], fields[3], {k: int(v) for k, v in params.items()}
        )
    return rows


@dataclass(frozen=True)
class LinuxLoad:
    """A ``load`` line: what modprobe loads for one modalias, dependencies first."""

    node: str
    modalias: str
    modules: tuple[str, ...]


@dataclass(frozen=True)
class LinuxBinding:
    """A ``bound`` line: the driver on a sysfs node once its modules were loaded."""

    node: str
    driver: str
    module: str


@dataclass(frozen=True)
class LinuxDone:
    """The ``done`` line's fields (``class``, ``driver`` and the evidence counter)."""

    fields: dict[str, str]

    @property
    def device_class(self) -> str:
        return self.fields.get("class", "")

    @property
    def driver(self) -> str:
        return self.fields.get("driver", "")


@dataclass
class LinuxOutput:
    """Everything the guest said, in order of kind."""

    start: dict[str, str] = field(default_factory=dict)
    loads: list[LinuxLoad] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    """Modaliases under the device that modules.alias names no module for."""
    bindings: list[LinuxBinding] = field(default_factory=list)
    workload: dict[str, str] = field(default_factory=dict)
    done: LinuxDone | None = None
    failure: str | None = None

    def verdict(self, workloads: dict[str, Workload]) -> str | None:
        """``None`` when the guest proved its workload ran, else why not."""
        if self.failure is not None:
            return f"the guest failed: {self.failure}"
        if self.done is None:
            return "the guest exited without its 'qtrace-linux: done' line"
        row = workloads.get(self.done.device_class)
        if row is None:
            return f"the guest's done line names no known class: {self.done.fields}"
        value = self.done.fields.get(row.evidence, "")
        if not value.isdigit() or int(value) == 0:
            return f"the {row.device_class} workload has no evidence: {row.evidence}={value!r}"
        if self.done.driver not in {binding.module for binding in self.bindings}:
            return f"the done line's driver {self.done.driver!r} was never seen to bind"
        return None


def _fields(words: list[str]) -> dict[str, str]:
    return dict(word.split("=", 1) for word in words if "=" in word)


def parse_linux_serial(text: str) -> LinuxOutput:
    """The guest's lines in ``text`` (a serial log; anything else in it is skipped)."""
    out = LinuxOutput()
    for raw in text.splitlines():
        at = raw.find(PREFIX)
        if at < 0:
            continue
        kind, _, rest = raw[at + len(PREFIX) :].strip().partition(" ")
        words = rest.split()
        if kind == "FAIL":
            out.failure = rest.strip() or "(no reason given)"
        elif kind == "start":
            out.start = _fields(words)
        elif kind == "load" and words:
            found = _fields(words[1:])
            modules = tuple(m for m in found.get("modules", "").split(",") if m)
            out.loads.append(LinuxLoad(words[0], found.get("modalias", ""), modules))
        elif kind == "no-module":
            out.unmatched.append(_fields(words[1:]).get("modalias", ""))
        elif kind == "bound" and words:
            found = _fields(words[1:])
            out.bindings.append(
                LinuxBinding(words[0], found.get("driver", ""), found.get("module", ""))
            )
        elif kind == "workload" and words:
            out.workload = {"name": words[0], **_fields(words[1:])}
        elif kind == "done":
            out.done = LinuxDone(_fields(words))
    return out


def linux_verdict(serial_log: Path) -> str | None:
    """The capture's verdict on a linux guest run (``GuestPlan.serial_verdict``)."""
    text = serial_log.read_text(encoding="utf-8", errors="replace")
    return parse_linux_serial(text).verdict(read_workloads())
