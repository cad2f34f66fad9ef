"""One device pack: everything qtrace knows about one device, read from its folder.

A pack is a folder ``<name>/`` holding ``pack.toml`` (format ``qtrace-device/1``: identity,
what QEMU needs to start the device, which guest workloads drive it, the layer rules for the
device's own stack frames) and, optionally, ``registers.toml`` (its ONE register map) and a
Python reference model. ``qtrace/devices/README.md`` describes the format. Loading a pack
validates it, so a mistake in a pack is reported with the file it is in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.abc import Traversable
from typing import Any

from qtrace.devices.registers import read_toml
from qtrace.devices.rules import FrameRule, parse_frame_rules
from qtrace.errors import ReportError
from qtrace.trace.kinds import ASYNC_KINDS

__all__ = ["DEVICE_FORMAT", "GENERIC_PROBE_SEQUENCE", "DevicePack", "QtestSetup", "load_pack"]

DEVICE_FORMAT = "qtrace-device/1"
GENERIC_PROBE_SEQUENCE = "generic"
"""The probe guest's sequence for a device without one of its own: config space, BAR reads."""


@dataclass(frozen=True)
class QtestSetup:
    """How ``qtrace verify --live`` starts the device under qtest (``[model.qtest]``).

    Attributes:
        slot: PCI device number on bus 0.
        gsi: The interrupt input the device's INTx reaches (what qtest intercepts); it
            follows from the slot's INTx swizzle and the machine's PIRQ routing.
        properties: ``-device`` properties besides ``addr`` (e.g. an empty ``romfile``).
        irq_intercept: The QOM path whose GPIO inputs qtest intercepts (``ioapic``).
        bars: Where the live test places each BAR (index, address); empty: the memory
            BAR 0 and the I/O BAR 1 where the e1000's firmware puts them.
        netdev: The device is a NIC the test hands frames to: QEMU gets a stream netdev
            whose other end is the test (``qtrace.verify.netdev``).
    """

    slot: int
    gsi: int
    properties: tuple[tuple[str, str], ...] = ()
    irq_intercept: str = "ioapic"
    bars: tuple[tuple[int, int], ...] = ()
    netdev: bool = False


@dataclass(frozen=True)
class DevicePack:
    """What one pack says about its device.

    Attributes:
        name: the pack's name (its folder), also the register map's device label.
        qom_types: the QEMU type names (``-device`` names) the pack covers; the first is
            the pack's own name.
        summary: one line naming the hardware.
        pci_ids: ``(vendor, device)`` IDs of the functions it covers.
        qemu_properties: ``-device`` properties QEMU needs to start the device.
        start_args: QEMU arguments it needs besides them (``{out}``: the run directory), for
            what no generic rule of ``start.toml`` gives.
        start_skip_rules: generic rules not to apply to it (one that would give the wrong
            backend).
        start_slot: the PCI device number on bus 0 it must have, if QEMU insists on one
            (captures otherwise place devices at 00:05.0).
        start_backend: the ``start.toml`` ``[[backend]]`` process it needs beside QEMU, for a
            device no generic rule gives one (``{socket}`` in ``start_args`` is its socket).
        start_backend_args: arguments added to that process's command line.
        probe_sequence: which of the probe guest's register sequences drives it.
        probe_args: extra ``key=value`` words for the probe's command line (what the
            sequence needs to know of the capture, e.g. ``rx=20`` frames its backend sends).
        linux_async: the kinds of asynchronous work (``qtrace.trace.kinds.ASYNC_KINDS``) a
            capture with the linux guest records for it; none by default, since their hooks
            stop QEMU on every timer or bottom half of the whole machine (the e1000 asks for
            ``timer``: its interrupt mitigation and autonegotiation are timers).
        model: ``module:Class`` of the pack's reference model, if it has one.
        model_verify: ``module:object`` of what ``verify`` needs beyond the model (fixed
            scenarios, random sequences, volatile rules, replay quirks), if any.
        model_compares: One line saying what the model checks of the device (``verify
            --list`` shows it beside what verify derives from the support).
        qtest: How ``verify --live`` starts the device, if the pack says.
        frame_rules: layer rules for the device's own stack frames, in order.
        registers_file: the pack's ``registers.toml``, if it has one.
    """

    name: str
    qom_types: tuple[str, ...]
    summary: str = ""
    pci_ids: tuple[tuple[int, int], ...] = ()
    qemu_properties: tuple[tuple[str, str], ...] = ()
    start_args: tuple[str, ...] = ()
    start_skip_rules: tuple[str, ...] = ()
    start_slot: int | None = None
    start_backend: str | None = None
    start_backend_args: tuple[str, ...] = ()
    probe_sequence: str = GENERIC_PROBE_SEQUENCE
    probe_args: tuple[str, ...] = ()
    linux_async: tuple[str, ...] = ()
    model: str | None = None
    model_verify: str | None = None
    model_compares: str = ""
    qtest: QtestSetup | None = None
    frame_rules: tuple[FrameRule, ...] = ()
    registers_file: Traversable | None = field(default=None, compare=False, repr=False)


def _str_tuple(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ReportError(f"{where} must be a list of strings")
    return tuple(value)


def _async_kinds(value: Any, where: str) -> tuple[str, ...]:
    kinds = _str_tuple(value, where)
    unknown = sorted(set(kinds) - set(ASYNC_KINDS))
    if unknown:
        raise ReportError(f"{where} names {unknown}; the kinds are {', '.join(ASYNC_KINDS)}")
    return kinds


def _optional_name(value: Any, where: str) -> str | None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ReportError(f"{where} must be a name")
    return value


def load_pack(folder: Traversable) -> DevicePack:
    """Read and validate the pack in ``folder`` (which holds ``pack.toml``).

    Raises:
        ReportError: the pack file is missing a required key or has a wrong one.
    """
    where = f"{folder}/pack.toml"
    data = read_toml(folder.joinpath("pack.toml"), "device pack")
    if data.get("format") != DEVICE_FORMAT:
        raise ReportError(f"{where} must declare format = {DEVICE_FORMAT!r}")
    name = data.get("name")
    if not isinstance(name, str) or name != folder.name:
        raise ReportError(f"{where}: name must be the folder's name {folder.name!r}, got {name!r}")
    qom_types = _str_tuple(data.get("qom_types", [name]), f"{where}: qom_types")
    if not qom_types or qom_types[0] != name:
        raise ReportError(f"{where}: qom_types must start with the pack's name {name!r}")
    try:
        pci_ids = tuple((int(v), int(d)) for v, d in data.get("pci_ids", []))
    except (TypeError, ValueError) as exc:
        raise ReportError(f"{where}: pci_ids must be [[vendor, device], ...]") from exc
    guests = data.get("guests", {})
    start = data.get("start", {})
    model = data.get("model", {})
    registers = folder.joinpath("registers.toml")
    qtest = model.get("qtest")
    try:
        setup = (
            None
            if qtest is None
            else QtestSetup(
                slot=int(qtest["slot"]),
                gsi=int(qtest["gsi"]),
                properties=tuple((str(k), str(v)) for k, v in qtest.get("properties", {}).items()),
                irq_intercept=str(qtest.get("irq_intercept", "ioapic")),
                bars=tuple((int(k), int(v)) for k, v in qtest.get("bars", {}).items()),
                netdev=bool(qtest.get("netdev", False)),
            )
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ReportError(
            f"{where}: [model.qtest] needs integer slot and gsi, and integer bars ({exc})"
        ) from exc
    slot = start.get("slot")
    if slot is not None and (not isinstance(slot, int) or not 0 <= slot <= 31):
        raise ReportError(f"{where}: [start] slot must be a PCI device number 0-31, got {slot!r}")
    return DevicePack(
        name=name,
        qom_types=qom_types,
        summary=str(data.get("summary", "")),
        pci_ids=pci_ids,
        qemu_properties=tuple((str(k), str(v)) for k, v in start.get("properties", {}).items()),
        start_args=_str_tuple(start.get("args", []), f"{where}: [start] args"),
        start_skip_rules=_str_tuple(start.get("skip_rules", []), f"{where}: [start] skip_rules"),
        start_slot=slot,
        start_backend=_optional_name(start.get("backend"), f"{where}: [start] backend"),
        start_backend_args=_str_tuple(
            start.get("backend_args", []), f"{where}: [start] backend_args"
        ),
        probe_sequence=str(guests.get("probe_sequence", GENERIC_PROBE_SEQUENCE)),
        probe_args=_str_tuple(guests.get("probe_args", []), f"{where}: [guests] probe_args"),
        linux_async=_async_kinds(guests.get("linux_async", []), f"{where}: [guests] linux_async"),
        model=model.get("class"),
        model_verify=model.get("verify"),
        model_compares=str(model.get("compares", "")),
        qtest=setup,
        frame_rules=tuple(parse_frame_rules(data.get("rule", []), where)),
        registers_file=registers if registers.is_file() else None,
    )
