"""What ``verify`` needs of one device, found through its pack; verify names no device.

Why: the replay and the live differential test are the same machinery for every PCI
device. What differs is data in the pack's ``pack.toml`` (``[model] class``, and
``[model.qtest]``: slot, interrupt input, ``-device`` properties) and code in the pack's
Python (``[model] verify``, a :class:`DeviceSupport`: fixed scenarios, random sequences,
volatile rules, replay quirks). :func:`verify_device` puts the two together, and refuses a
device without a model with an error naming those that have one.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from qtrace.devices import QtestSetup, load_object, model_class, model_packs, pack_for
from qtrace.errors import UsageError
from qtrace.refemu import AsyncDevice, PciDevice, PciDeviceModel
from qtrace.trace import Access, Trace
from qtrace.verify.coverage import CoverageSpec
from qtrace.verify.steps import Scenario, Step
from qtrace.verify.volatile import VolatileRule

__all__ = [
    "DeviceSupport",
    "ReplayQuirks",
    "VerifyDevice",
    "describe_comparisons",
    "devices_with_model",
    "verify_device",
]


class ReplayQuirks(Protocol):
    """A device's knowledge of what the trace does not record, consulted by the replay."""

    def explains_raised_line(self, access: Access) -> bool:
        """QEMU's line rose after ``access``, the model's did not: did something the trace
        does not record (a device timer) cause it? If so, bring the model along (its line
        now follows QEMU's) and return True: the change is counted as asynchronous."""
        ...


ReplayQuirksFactory = Callable[[Trace, PciDevice, bool], ReplayQuirks]
"""Builds a replay's quirks from (trace, model, whether the host could deliver frames)."""


@dataclass(frozen=True)
class DeviceSupport:
    """The Python half of a pack's verify knowledge (the object ``[model] verify`` names).

    Attributes:
        volatile: Rules for time- and host-dependent bits (:mod:`qtrace.verify.volatile`).
        scenarios: The fixed scenarios of ``verify --live``.
        setup_steps: Steps after the generic PCI setup that bring the device to a known
            state both sides agree on (state a machine reset does not reset).
        generate: Makes one random step sequence, every choice from the ``random.Random``
            it is given (sequence ``i`` of seed ``s`` gets ``Random(f"{s}:{i}")``).
        sequence_valid: Whether a step sequence is one ``generate`` could have made (holds
            what it holds); the shrinker tries only such sequences. ``None``: any.
        sequences: Builds a hypothesis strategy of random step sequences instead (older
            packs; used when there is no ``generate``; hypothesis is then imported).
        sequence_watch: RAM ranges (address, length) compared after each random step.
        interrupt_delay_ns: The longest delay QEMU may put on raising the line
            (interrupt moderation); 0 for a device that raises it at once.
        replay_quirks: Builds the replay's :class:`ReplayQuirks`, if the device has any.
        coverage: The registers the random sequences write, their read-back partners and
            held bits (:mod:`qtrace.verify.coverage`); ``None``: coverage not measured.
    """

    volatile: tuple[VolatileRule, ...] = ()
    scenarios: tuple[Scenario, ...] = ()
    setup_steps: Callable[[], list[Step]] = list
    generate: Callable[[random.Random], list[Step]] | None = None
    sequence_valid: Callable[[Sequence[Step]], bool] | None = None
    sequences: Callable[[], Any] | None = None
    sequence_watch: tuple[tuple[int, int], ...] = ()
    interrupt_delay_ns: int = 0
    replay_quirks: ReplayQuirksFactory | None = field(default=None)
    coverage: CoverageSpec | None = None


@dataclass(frozen=True)
class VerifyDevice:
    """One device as verify sees it: its pack's name, model, support and qtest setup, and
    the pack's one line on what the model checks."""

    name: str
    qom_types: tuple[str, ...]
    model: PciDeviceModel
    support: DeviceSupport
    qtest: QtestSetup | None
    compares: str = ""


def devices_with_model() -> list[str]:
    """The names of the devices that have a reference model (for ``verify --list``)."""
    return [pack.name for pack in model_packs()]


def verify_device(device: str) -> VerifyDevice:
    """The verify view of ``device`` (a QOM type its pack covers).

    Raises:
        UsageError: No pack, or a pack without a reference model; the message names the
            devices that have one.
        ReportError: The pack names a model or support that cannot be loaded.
    """
    pack = pack_for(device)
    model = model_class(device)
    if pack is None or model is None:
        known = ", ".join(devices_with_model()) or "none"
        raise UsageError(
            f"no reference model for {device!r}; devices with one: {known}",
            hint="`qtrace verify --list` shows them.",
        )
    support: object = DeviceSupport()
    if pack.model_verify is not None:
        support = load_object(pack.model_verify, f"{pack.name}/pack.toml [model] verify")
    if not isinstance(support, DeviceSupport):
        raise UsageError(
            f"{pack.name}/pack.toml [model] verify names {type(support).__name__}, "
            "not a qtrace.verify.support.DeviceSupport"
        )
    return VerifyDevice(
        pack.name,
        pack.qom_types,
        cast(PciDeviceModel, model),
        support,
        pack.qtest,
        pack.model_compares,
    )


def describe_comparisons(device: VerifyDevice) -> dict[str, Any]:
    """What ``verify`` compares for ``device``, replayed and live (``verify --list``).

    Derived from the model and its support, so it cannot drift from what runs; the pack's
    own line (``[model] compares``) comes first."""
    model = device.model()
    support = device.support
    timed = isinstance(model, AsyncDevice)
    replay = ["every read of the trace (configuration space and the BARs the model maps)"]
    replay.append("DMA and the interrupt line (INTx, MSI) where the capture recorded them")
    if support.volatile:
        replay.append(f"{len(support.volatile)} volatile rules for time- or host-set bits")
    if support.replay_quirks is not None:
        replay.append("what the trace does not record, as the device's replay quirks say "
                      "(for a NIC: the frames the host delivered, from their DMA)")  # fmt: skip
    if timed:
        replay.append("work QEMU does off the vCPU (threads, timers, bottom halves) when the "
                      "trace shows it done")  # fmt: skip
    live: list[str] = []
    if device.qtest is not None:
        if support.scenarios:
            live.append(f"{len(support.scenarios)} fixed scenarios")
        if support.coverage is not None:
            bits = sum(r.width_bits for r in support.coverage.registers)
            live.append(
                f"random sequences over {len(support.coverage.registers)} registers "
                f"({bits} bits), with bit coverage"
            )
        elif support.generate is not None or support.sequences is not None:
            live.append("random sequences")
        live.append(f"every read, and the interrupt line (GSI {device.qtest.gsi}) after each step")
        if support.sequence_watch:
            total = sum(length for _, length in support.sequence_watch)
            live.append(f"{total} bytes of guest RAM the device writes (DMA, MSI messages)")
        live.append("after each step the RAM the model wrote by DMA; all planted RAM at the end")
        if device.qtest.netdev:
            live.append(
                "frames from a network backend that is the test (a unix-socket stream): "
                "what QEMU takes or holds back, and the frames it sends"
            )
        if timed:
            live.append("virtual-clock steps and sync steps for its asynchronous work")
    return {
        "device": device.name,
        "covers": list(device.qom_types),
        "summary": device.compares,
        "replay": replay,
        "live": live,
    }
