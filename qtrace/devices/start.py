"""What a device needs to start: its property list, read against generic rules and its pack.

Many PCI devices refuse to start bare: a block device needs a drive, a sound card an audio
backend, ivshmem a memory backend. Which backend a device takes is in the property list
the running QEMU prints for ``-device NAME,help`` (``drive=<str>``,
``memdev=<link<memory-backend>>``), so one generic rule per kind of backend serves every
device that has the property, in every QEMU version, with no list of devices. The rules are
data (``start.toml`` beside this module); what a property list cannot say (nvme's serial
number) is in the device's pack (``[start]``). The same file lists the devices no rule can
start here (host hardware, a peer process), with the reason.

Some backends are not QEMU objects but processes: a vhost-user device's virtqueues are served
by a process on a unix socket, an ivshmem-doorbell device needs an ivshmem server. Those are
``[[backend]]`` entries of the same file (what to run, its socket, how long to wait for it);
a rule or a pack names the backend it needs and adds arguments for it (the virtio features
and configuration space of one kind of vhost-user device), and the capture runs it beside
QEMU (:mod:`qtrace.launch.backends`). The processes qtrace ships are :mod:`qtrace.backends`.

Everything here is pure: the capture runs the query in its container and passes the text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import cache
from importlib import resources
from importlib.abc import Traversable
from typing import Any

from qtrace.devices.pack import DevicePack
from qtrace.devices.registers import read_toml
from qtrace.errors import ReportError

__all__ = [
    "START_FORMAT",
    "BackendRun",
    "BackendSpec",
    "DeviceProperty",
    "DeviceStart",
    "RunFile",
    "StartRule",
    "StartRules",
    "Unstartable",
    "device_start",
    "load_start_rules",
    "parse_device_properties",
    "parse_start_rules",
    "start_rules",
    "unstartable_reason",
]

START_FORMAT = "qtrace-start/1"
OUT_PLACEHOLDER = "{out}"
"""Stands for the run directory as QEMU sees it (the container's mount) in rule and pack args."""
SOCKET_PLACEHOLDER = "{socket}"
"""Stands for the socket of the backend process a rule or a pack names, in its args."""
DEFAULT_READY_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class DeviceProperty:
    """One line of ``-device NAME,help``: ``drive=<str> - Node name or ID ...``.

    Attributes:
        name: the property (``drive``).
        type: its type as QEMU prints it, without the outer ``<>`` (``str``,
            ``link<memory-backend>``).
        description: the text after `` - ``, if any.
    """

    name: str
    type: str
    description: str = ""


def _bracketed(text: str, start: int) -> int | None:
    """The index just past the ``>`` that closes the ``<`` at ``start`` (types nest:
    ``<link<memory-backend>>``), or ``None`` when it is not closed."""
    depth = 0
    for index in range(start, len(text)):
        if text[index] == "<":
            depth += 1
        elif text[index] == ">":
            depth -= 1
            if depth == 0:
                return index + 1
    return None


def parse_device_properties(text: str) -> tuple[DeviceProperty, ...]:
    """The properties in QEMU's ``-device NAME,help`` output (7.2 to 10.2 print the same form).

    Lines that are not ``  name=<type>[ - description]`` (the ``NAME options:`` header, an
    error such as ``Device 'x' not found``) are skipped, so an unknown device has none.
    """
    found: list[DeviceProperty] = []
    for line in text.splitlines():
        if not line.startswith(" "):
            continue
        name, eq, rest = line.strip().partition("=")
        if not eq or not name or " " in name or not rest.startswith("<"):
            continue
        end = _bracketed(rest, 0)
        if end is None:
            continue
        description = rest[end:].strip()
        description = description[1:].strip() if description.startswith("-") else description
        found.append(DeviceProperty(name, rest[1 : end - 1], description))
    return tuple(found)


@dataclass(frozen=True)
class RunFile:
    """A file a rule's backend reads, created (sparse) in the run directory before QEMU."""

    name: str
    size_bytes: int


@dataclass(frozen=True)
class StartRule:
    """One generic rule of ``start.toml``: a kind of property -> the backend that serves it.

    Attributes:
        name: what the rule is called (a pack's ``skip_rules`` names it).
        property: the property name it matches, or ``None`` for any name.
        type: the property type it matches, or ``None`` for any type.
        value: what each matching property is set to; ``None`` leaves it alone (the rule
            only adds ``args``).
        also: other ``-device`` properties set with it, where the device has them.
        args: QEMU arguments added once (``{out}``: the run directory in the container).
        files: files created in the run directory for the backend.
        backend: the ``[[backend]]`` process the device needs, if any (``{socket}`` in
            ``args`` is its socket).
        backend_args: arguments added to that process's command line.
        why: what QEMU does without it.
    """

    name: str
    property: str | None = None
    type: str | None = None
    value: str | None = None
    also: tuple[tuple[str, str], ...] = ()
    args: tuple[str, ...] = ()
    files: tuple[RunFile, ...] = ()
    backend: str | None = None
    backend_args: tuple[str, ...] = ()
    why: str = ""

    def matches(self, prop: DeviceProperty) -> bool:
        """Does ``prop`` have the name and the type this rule asks for? The type may be a
        shell-style pattern (``child<vhost-user*>``)."""
        return (self.property is None or prop.name == self.property) and (
            self.type is None or fnmatchcase(prop.type, self.type)
        )


@dataclass(frozen=True)
class BackendSpec:
    """A ``[[backend]]`` of ``start.toml``: a process some devices need beside QEMU.

    Attributes:
        name: what rules and packs call it.
        command: what to run in the capture container (``{out}``: the run directory,
            ``{socket}``: :attr:`socket`); the arguments of the rules that need it follow.
            qtrace's own processes (:mod:`qtrace.backends`) are ``python3 -m
            qtrace_backends.<module>``, run where that package is mounted.
        socket: the unix socket it listens on; it is ready when the path exists, and QEMU
            starts only then.
        ready_timeout_s: how long the capture waits for the socket.
        serves: what the process does in QEMU's place, said in the capture's evidence and the
            device matrix (completes "the device's ...").
        why: why the devices need it.
    """

    name: str
    command: tuple[str, ...]
    socket: str
    ready_timeout_s: float = DEFAULT_READY_TIMEOUT_S
    serves: str = ""
    why: str = ""


@dataclass(frozen=True)
class BackendRun:
    """A backend process as one capture runs it: everything placed, nothing left to choose.

    Attributes:
        name: the ``[[backend]]`` it comes from.
        argv: its command line in the container.
        socket: the socket whose appearance says it is ready.
        log: the file in the run directory its output goes to.
        ready_timeout_s: how long to wait for the socket.
        serves: what it does in QEMU's place.
    """

    name: str
    argv: tuple[str, ...]
    socket: str
    log: str
    ready_timeout_s: float = DEFAULT_READY_TIMEOUT_S
    serves: str = ""


@dataclass(frozen=True)
class Unstartable:
    """Devices no rule can start in a capture container, and why.

    Attributes:
        devices: their ``-device`` names.
        reason: what they need that a capture cannot give.
        machines: the machines the entry holds for; empty: all.
        topologies: the topologies it holds for (``root-bus``, ``root-port``); empty: all.
    """

    devices: tuple[str, ...]
    reason: str
    machines: tuple[str, ...] = ()
    topologies: tuple[str, ...] = ()

    def holds(self, device: str, machine: str, topology: str) -> bool:
        """Does the entry say ``device`` cannot start on ``machine`` in ``topology``?"""
        return (
            device in self.devices
            and (not self.machines or machine in self.machines)
            and (not self.topologies or topology in self.topologies)
        )


@dataclass(frozen=True)
class StartRules:
    """The contents of ``start.toml``: the generic rules in order, the unstartable devices,
    the backend processes."""

    rules: tuple[StartRule, ...] = ()
    unstartable: tuple[Unstartable, ...] = ()
    backends: tuple[BackendSpec, ...] = ()

    def backend(self, name: str) -> BackendSpec:
        """The ``[[backend]]`` called ``name``; ``KeyError`` when there is none."""
        for spec in self.backends:
            if spec.name == name:
                return spec
        raise KeyError(name)


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ReportError(f"{where} must be a list of strings")
    return tuple(value)


def _string_map(value: Any, where: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
        raise ReportError(f"{where} must be a table of strings")
    return tuple((str(k), v) for k, v in value.items())


def _optional_str(entry: Mapping[str, Any], key: str, where: str) -> str | None:
    value = entry.get(key)
    if value is not None and not isinstance(value, str):
        raise ReportError(f"{where}: {key} must be a string")
    return value


def _rule(entry: Mapping[str, Any], where: str) -> StartRule:
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise ReportError(f"{where}: every [[rule]] needs a name")
    where = f"{where}: rule {name!r}"
    prop, kind = _optional_str(entry, "property", where), _optional_str(entry, "type", where)
    if prop is None and kind is None:
        raise ReportError(f"{where} must match a property, a type or both")
    try:
        files = tuple(RunFile(str(f["name"]), int(f["size_bytes"])) for f in entry.get("files", []))
    except (KeyError, TypeError, ValueError) as exc:
        raise ReportError(f"{where}: files must be [{{name, size_bytes}}, ...] ({exc})") from exc
    if any("/" in f.name or f.name in ("", ".", "..") or f.size_bytes < 0 for f in files):
        raise ReportError(f"{where}: a file must be a plain name in the run directory")
    rule = StartRule(
        name=name,
        property=prop,
        type=kind,
        value=_optional_str(entry, "value", where),
        also=_string_map(entry.get("also", {}), f"{where}: also"),
        args=_strings(entry.get("args", []), f"{where}: args"),
        files=files,
        backend=_optional_str(entry, "backend", where),
        backend_args=_strings(entry.get("backend_args", []), f"{where}: backend_args"),
        why=str(entry.get("why", "")),
    )
    _check_socket_use(rule.args, rule.backend, rule.backend_args, where)
    return rule


def _check_socket_use(
    args: Sequence[str], backend: str | None, backend_args: Sequence[str], where: str
) -> None:
    """``{socket}`` and backend arguments mean something only with a backend named."""
    if backend is None and (backend_args or any(SOCKET_PLACEHOLDER in arg for arg in args)):
        raise ReportError(f"{where}: {SOCKET_PLACEHOLDER} and backend_args need a backend")


def _backend(entry: Mapping[str, Any], where: str) -> BackendSpec:
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise ReportError(f"{where}: every [[backend]] needs a name")
    where = f"{where}: backend {name!r}"
    command = _strings(entry.get("command"), f"{where}: command")
    socket = _optional_str(entry, "socket", where)
    if not command or not socket:
        raise ReportError(f"{where} needs a command and a socket")
    try:
        ready_timeout_s = float(entry.get("ready_timeout_s", DEFAULT_READY_TIMEOUT_S))
    except (TypeError, ValueError) as exc:
        raise ReportError(f"{where}: ready_timeout_s must be a number") from exc
    return BackendSpec(
        name=name,
        command=command,
        socket=socket,
        ready_timeout_s=ready_timeout_s,
        serves=" ".join(str(entry.get("serves", "")).split()),
        why=str(entry.get("why", "")),
    )


def parse_start_rules(data: Mapping[str, Any], where: str = "start.toml") -> StartRules:
    """Validate the parsed ``start.toml`` (format ``qtrace-start/1``).

    Raises:
        ReportError: a wrong format, a rule without a name or a match, a bad field.
    """
    if data.get("format") != START_FORMAT:
        raise ReportError(f"{where} must declare format = {START_FORMAT!r}")
    rules = tuple(_rule(entry, where) for entry in data.get("rule", []))
    names = [rule.name for rule in rules]
    if len(set(names)) != len(names):
        raise ReportError(f"{where}: two rules share a name ({', '.join(sorted(names))})")
    backends = tuple(_backend(entry, where) for entry in data.get("backend", []))
    known = {spec.name for spec in backends}
    if len(known) != len(backends):
        raise ReportError(f"{where}: two backends share a name")
    for rule in rules:
        if rule.backend is not None and rule.backend not in known:
            raise ReportError(f"{where}: rule {rule.name!r} names no [[backend]] {rule.backend!r}")
    unstartable = []
    for entry in data.get("unstartable", []):
        reason = entry.get("reason")
        if not isinstance(reason, str) or not reason:
            raise ReportError(f"{where}: every [[unstartable]] needs a reason")
        unstartable.append(
            Unstartable(
                devices=_strings(entry.get("devices"), f"{where}: unstartable devices"),
                reason=" ".join(reason.split()),
                machines=_strings(entry.get("machines", []), f"{where}: unstartable machines"),
                topologies=_strings(
                    entry.get("topologies", []), f"{where}: unstartable topologies"
                ),
            )
        )
    return StartRules(rules, tuple(unstartable), backends)


def load_start_rules(path: Traversable) -> StartRules:
    """Read and validate a rules file (``start.toml`` or a test's own)."""
    return parse_start_rules(read_toml(path, "start rules"), str(path))


@cache
def start_rules() -> StartRules:
    """qtrace's own rules (``qtrace/devices/start.toml``), read once."""
    return load_start_rules(resources.files("qtrace.devices").joinpath("start.toml"))


@dataclass(frozen=True)
class DeviceStart:
    """What a device gets to start, beyond the ``[start] properties`` of its pack (which
    :func:`qtrace.devices.qemu_device_option` adds itself, for qtest too).

    Attributes:
        properties: ``-device`` properties the generic rules set, in rule order.
        args: QEMU arguments, the pack's ``[start] args`` then the rules', placed before the
            device's ``-device`` (a link property needs its object to exist already).
        files: files to create in the run directory before QEMU starts.
        rules: the names of the rules applied (why the arguments are there).
        backends: the processes to start before QEMU (and stop after it), in the order
            first needed.
    """

    properties: tuple[tuple[str, str], ...] = ()
    args: tuple[str, ...] = ()
    files: tuple[RunFile, ...] = ()
    rules: tuple[str, ...] = ()
    backends: tuple[BackendRun, ...] = ()


def _with_out(args: Iterable[str], out_dir: str, socket: str | None = None) -> tuple[str, ...]:
    placed = (arg.replace(OUT_PLACEHOLDER, out_dir) for arg in args)
    if socket is None:
        return tuple(placed)
    return tuple(arg.replace(SOCKET_PLACEHOLDER, socket) for arg in placed)


class _Backends:
    """The backend processes one device needs, gathered while its rules are applied."""

    def __init__(self, rules: StartRules, out_dir: str) -> None:
        self._rules = rules
        self._out_dir = out_dir
        self._args: dict[str, list[str]] = {}

    def socket(self, name: str | None) -> str | None:
        if name is None:
            return None
        return _with_out((self._rules.backend(name).socket,), self._out_dir)[0]

    def need(self, name: str | None, args: Sequence[str]) -> None:
        if name is not None:
            self._args.setdefault(name, []).extend(_with_out(args, self._out_dir))

    def runs(self) -> tuple[BackendRun, ...]:
        runs = []
        for name, extra in self._args.items():
            spec = self._rules.backend(name)
            socket = self.socket(name) or ""
            runs.append(
                BackendRun(
                    name=name,
                    argv=(*_with_out(spec.command, self._out_dir, socket), *extra),
                    socket=socket,
                    log=f"backend-{name}.log",
                    ready_timeout_s=spec.ready_timeout_s,
                    serves=spec.serves,
                )
            )
        return tuple(runs)


def device_start(
    pack: DevicePack,
    properties: Sequence[DeviceProperty],
    out_dir: str,
    rules: StartRules | None = None,
) -> DeviceStart:
    """Choose what the device needs: each rule that matches one of its ``properties`` and that
    the pack leaves to the rules (it sets none of the rule's properties itself and does not
    name the rule in ``[start] skip_rules``).

    Args:
        pack: the device's pack (or the generic defaults of a device without one).
        properties: the device's property list (:func:`parse_device_properties`); empty when
            it is unknown, and then only the pack's own ``[start] args`` apply.
        out_dir: the run directory as QEMU sees it (replaces ``{out}``).
        rules: the rules to apply; qtrace's own (:func:`start_rules`) by default.
    """
    rules = start_rules() if rules is None else rules
    names = {prop.name for prop in properties}
    set_by_pack = {key for key, _ in pack.qemu_properties}
    chosen: dict[str, str] = {}
    backends = _Backends(rules, out_dir)
    try:
        backends.need(pack.start_backend, pack.start_backend_args)
        args: list[str] = list(
            _with_out(pack.start_args, out_dir, backends.socket(pack.start_backend))
        )
    except KeyError as exc:
        raise ReportError(
            f"device pack {pack.name!r}: [start] backend names no [[backend]] {exc}"
        ) from exc
    files: list[RunFile] = []
    applied: list[str] = []
    for rule in rules.rules:
        if rule.name in pack.start_skip_rules:
            continue
        matched = [p.name for p in properties if rule.matches(p) and p.name not in chosen]
        if not matched:
            continue
        also = [(key, value) for key, value in rule.also if key in names]
        touched = (matched if rule.value is not None else []) + [key for key, _ in also]
        if set_by_pack.intersection(touched):
            continue
        if rule.value is not None:
            chosen.update(dict.fromkeys(matched, rule.value))
        chosen.update(also)
        args += _with_out(rule.args, out_dir, backends.socket(rule.backend))
        backends.need(rule.backend, rule.backend_args)
        files += rule.files
        applied.append(rule.name)
    return DeviceStart(
        tuple(chosen.items()), tuple(args), tuple(files), tuple(applied), backends.runs()
    )


def unstartable_reason(
    device: str, machine: str, topology: str = "root-bus", rules: StartRules | None = None
) -> str | None:
    """Why ``device`` cannot start on ``machine`` in ``topology`` in a capture container, if
    ``start.toml`` says so (the refusal hint and the device matrix name it); else ``None``.

    The reason completes "DEVICE cannot start in a capture: it ..."."""
    rules = start_rules() if rules is None else rules
    for entry in rules.unstartable:
        if entry.holds(device, machine, topology):
            return entry.reason
    return None
