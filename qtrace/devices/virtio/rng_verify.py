"""What ``qtrace verify virtio-rng-pci`` needs beyond the model: setup, random sequences,
coverage (``pack.toml``'s ``[model] verify`` names :data:`SUPPORT`).

The sequences drive the whole transport (:mod:`qtrace.devices.virtio.sequences`: common
configuration fields with arbitrary values, resets, feature negotiation, queue set-up,
MSI-X table and control, ISR reads, INTx disable, the PCI configuration access window,
odd access widths) and entropy requests: chains of device-writable buffers (some with a
device-readable part, some all device-readable, some through an indirect table), made
available in the planted ring and notified, then a sync on the used index (QEMU fills them
in a bottom half). Compared after each step: every read, the INTx line, the used ring,
the descriptor table and the MSI-X message slot; not the random bytes.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from qtrace.devices import pack_named
from qtrace.devices.virtio.common_cfg import COMMON_FIELDS, NO_VECTOR
from qtrace.devices.virtio.layout import CFG_COMMON, CFG_DEVICE, CFG_NOTIFY, CFG_PCI, MsixPlace
from qtrace.devices.virtio.rng import DEFAULT_VECTORS, FEATURE_RING_RESET, VirtioRngPci
from qtrace.devices.virtio.sequences import (
    INDIRECT,
    LIVE_QUEUE,
    PARKED_QUEUE,
    RAM,
    VERSION_1,
    WRITE,
    Driver,
    coverage_spec,
    field_name,
    held_bits,
)
from qtrace.devices.virtio.transport import FEATURE_EVENT_IDX, FEATURE_INDIRECT_DESC
from qtrace.errors import Unimplemented
from qtrace.verify.steps import DEFAULT_BARS, Step
from qtrace.verify.support import DeviceSupport

__all__ = ["COVERAGE", "SUPPORT", "generate", "keeps_generator_rules", "setup_steps"]

_MODEL = VirtioRngPci()
_LAYOUT = _MODEL.layout
_QTEST = pack_named("virtio-rng-pci").qtest
assert _QTEST is not None
_SLOT, _GSI = _QTEST.slot, _QTEST.gsi
_BARS = dict(_QTEST.bars) or dict(DEFAULT_BARS)
assert _LAYOUT.msix is not None
_MSIX: MsixPlace = _LAYOUT.msix
_COMMAND_KEPT = 0x0003  # IO | MEMORY
_OFFERED = (FEATURE_INDIRECT_DESC, FEATURE_EVENT_IDX, VERSION_1, FEATURE_RING_RESET)

COVERAGE = coverage_spec(_LAYOUT, DEFAULT_VECTORS)


def _common(name: str) -> tuple[int, int]:
    common = _LAYOUT.first(CFG_COMMON)
    assert common is not None
    field = next(f for f in COMMON_FIELDS if f.name == name)
    return common.bar, common.offset + field.offset


def setup_steps() -> list[Step]:
    """After the machine reset: the selects back to 0 (a device reset keeps them), the
    planted ring and the MSI-X slot zeroed (QEMU's RAM survives the machine reset), the PCI
    configuration access window cleared (length first, so clearing the data writes
    nothing), and QEMU's config_generation adopted by the model (nothing resets it)."""
    steps = [Step("write", "ram", RAM.ring, data=bytes(RAM.ring_bytes)),
             Step("write", "ram", RAM.msi_slot, data=bytes(16))]  # fmt: skip
    for name in ("device_feature_select", "driver_feature_select", "queue_select"):
        bar, offset = _common(name)
        steps.append(Step("write", "mmio", offset, 4 if "feature" in name else 2, 0, bar=bar))
    window = _LAYOUT.first(CFG_PCI)
    if window is not None:  # its fields survive a machine reset (observed): cleared
        steps += [Step("write", "config", window.cap_offset + at, 4, 0) for at in (12, 4, 8, 16)]
    bar, offset = _common("config_generation")
    steps.append(Step("adopt", "mmio", offset, 1, bar=bar))
    return steps


# -- actions -------------------------------------------------------------------------------------


def _features(rnd: random.Random) -> int:
    features = 0
    for bit in _OFFERED:
        if rnd.randrange(4) or (bit == VERSION_1 and rnd.randrange(8)):
            features |= bit
    if rnd.randrange(8) == 0:
        features |= 1 << rnd.randrange(64)  # a bit the device did not offer
    return features


def _vector(rnd: random.Random) -> int:
    return rnd.choice((0, 1, 0, 1, NO_VECTOR, 2, rnd.getrandbits(16)))


def _initialise(d: Driver) -> None:
    size = d.rnd.choice((8, 8, 4, 16, 1, 2, d.rnd.randint(1, 16)))
    d.initialise(_features(d.rnd), size, (_vector(d.rnd), _vector(d.rnd)))


def _chain(rnd: random.Random, indirect_ok: bool) -> list[tuple[int, int, int]]:
    """One request: 1-3 buffers, device-writable but for a device-readable head now and
    then, or all device-readable; sometimes behind an indirect descriptor."""
    count = rnd.choice((1, 1, 2, 3))
    buffers = []
    for position in range(count):
        addr = RAM.buffers + rnd.randrange(0, RAM.buffers_bytes - 0x100, 4)
        length = rnd.choice((1, 16, rnd.randint(1, 0x100), 64))
        readable = (position == 0 and count > 1 and rnd.randrange(3) == 0) or rnd.randrange(12) == 0
        buffers.append((addr, length, 0 if readable else WRITE))
    if indirect_ok and rnd.randrange(4) == 0:
        return [(0, 0, INDIRECT), *buffers]
    return buffers


def _request(d: Driver) -> None:
    if d.ready_queue() is None:
        if d.kind == PARKED_QUEUE:
            d.common_read("queue_enable")
            return
        _initialise(d)
        if d.ready_queue() is None:  # features refused, or the queue not enabled
            return
    indirect_ok = d.model.negotiated(FEATURE_INDIRECT_DESC) or d.rnd.randrange(20) == 0
    chains = [_chain(d.rnd, indirect_ok) for _ in range(d.rnd.choice((1, 1, 1, 2, 3)))]
    d.offer(chains, notify=d.rnd.randrange(8) > 0)
    if d.rnd.randrange(3) == 0:
        d.read_isr()


def _common_write(d: Driver) -> None:
    field = d.rnd.choice(COMMON_FIELDS)
    value = d.rnd.choice((0, 1, d.rnd.getrandbits(8 * field.width), (1 << (8 * field.width)) - 1))
    if field.name == "queue_select":
        value = d.rnd.choice((0, 0, 1, d.rnd.randrange(1024), value))
    d.common_write(field.name, value)
    d.common_read(field.name)


def _common_read(d: Driver) -> None:
    d.common_read(d.rnd.choice(COMMON_FIELDS).name)


def _status(d: Driver) -> None:
    d.common_write("device_status", d.rnd.choice((0, 0, d.rnd.getrandbits(8), 0x0F, 0x0B, 0x03)))
    d.common_read("device_status")


def _msix(d: Driver) -> None:
    rnd = d.rnd
    kind = rnd.randrange(4)
    if kind == 0:  # MSI-X Enable and Function Mask
        control = rnd.choice((0x8000, 0x8000, 0xC000, 0x0000, rnd.getrandbits(16)))
        d.emit(Step("write", "config", _MSIX.cap_offset + 2, 2, control))
        d.emit(Step("read", "config", _MSIX.cap_offset, 4))
        return
    if kind == 1:
        d.emit(Step("read", "mmio", _MSIX.pba_offset, rnd.choice((4, 4, 8, 1)), bar=_MSIX.pba_bar))
        return
    offset = 4 * rnd.randrange(4 * DEFAULT_VECTORS)
    value = rnd.choice((0, 1, rnd.getrandbits(32), rnd.getrandbits(16)))
    for written in (value, ~value & 0xFFFF_FFFF)[: rnd.choice((1, 2))]:  # now and then a pair
        written = d.hold(f"msix.table+{offset:#x}", written)
        d.emit(Step("write", "mmio", _MSIX.table_offset + offset, 4, written, bar=_MSIX.table_bar))
        d.emit(Step("read", "mmio", _MSIX.table_offset + offset, 4, bar=_MSIX.table_bar))
    size = 4 if rnd.randrange(6) else rnd.choice((1, 2, 8))  # narrow reads are refused: 0
    at = offset - offset % size
    d.emit(Step("read", "mmio", _MSIX.table_offset + at, size, bar=_MSIX.table_bar))


def _isr(d: Driver) -> None:
    d.read_isr()


def _command(d: Driver) -> None:
    """INTx disable, and (parked queue only) bus mastering off: QEMU 10.2.2 then clears
    DRIVER_OK; whether an initialised queue works again afterwards depends on what the
    driver does next in ways no rule of the specification covers (observed), so with the
    queue live bus mastering stays on."""
    master_off = d.kind == PARKED_QUEUE and d.rnd.randrange(3) == 0
    value = _COMMAND_KEPT | (0 if master_off else 0x4) | (0x400 if d.rnd.randrange(3) == 0 else 0)
    d.emit(Step("write", "config", 0x04, 2, value))
    d.emit(Step("read", "config", 0x04, 4))


def _window(d: Driver) -> None:
    """The PCI configuration access capability: a window onto a BAR (4.1.4.9)."""
    cap = _LAYOUT.first(CFG_PCI)
    assert cap is not None
    rnd = d.rnd
    field = rnd.choice(COMMON_FIELDS)
    bar, offset = _common(field.name)
    length = rnd.choice((field.width, field.width, 4, 1, 2))
    d.emit(Step("write", "config", cap.cap_offset + 4, 1, rnd.choice((bar, bar, bar, 1, 0, 7))))
    d.emit(Step("write", "config", cap.cap_offset + 8, 4, offset))
    d.emit(Step("write", "config", cap.cap_offset + 12, 4, length))
    if field.name in (
        "device_feature_select",
        "queue_select",
        "driver_feature_select",
    ) and rnd.randrange(2):
        value = rnd.randrange(4) if field.name != "queue_select" else rnd.randrange(3)
        d.emit(Step("write", "config", cap.cap_offset + 16, 4, value))
    d.emit(Step("read", "config", cap.cap_offset + 16, 4))


def _odd(d: Driver) -> None:
    """Widths a driver must not use: QEMU's answers are compared all the same."""
    rnd = d.rnd
    common = _LAYOUT.first(CFG_COMMON)
    assert common is not None
    offset = rnd.choice((0x20, 0x28, 0x30, 0x00, 0x08, rnd.randrange(0, 0x40), 0x40, 0x100))
    size = rnd.choice((8, 1, 2, 4))
    offset -= offset % size
    name = field_name(_LAYOUT, common.bar, common.offset + offset)
    if rnd.randrange(2) or name is None or any(h.register == name for h in held_bits()):
        d.emit(Step("read", "mmio", common.offset + offset, size, bar=common.bar))
        return
    if name in ("common.device_status", "common.queue_enable", "common.queue_size"):
        d.emit(Step("read", "mmio", common.offset + offset, size, bar=common.bar))
        return
    d.emit(
        Step(
            "write", "mmio", common.offset + offset, size, rnd.getrandbits(8 * size), bar=common.bar
        )
    )
    d.emit(Step("read", "mmio", common.offset + offset, size, bar=common.bar))


def _elsewhere(d: Driver) -> None:
    """The device configuration (none: all ones), notifications of other queues."""
    rnd = d.rnd
    if rnd.randrange(2):
        device = _LAYOUT.first(CFG_DEVICE)
        assert device is not None
        d.emit(
            Step(
                "read",
                "mmio",
                device.offset + 4 * rnd.randrange(4),
                rnd.choice((1, 2, 4)),
                bar=device.bar,
            )
        )
        return
    notify = _LAYOUT.first(CFG_NOTIFY)
    assert notify is not None
    d.notify(rnd.randrange(1, 4))


_ACTIONS = {
    "request": (_request, 22), "common write": (_common_write, 22),
    "common read": (_common_read, 8), "init": (_initialise, 6), "status": (_status, 5),
    "msix": (_msix, 10), "isr": (_isr, 5), "command": (_command, 3), "window": (_window, 5),
    "odd": (_odd, 4), "elsewhere": (_elsewhere, 3),
}  # fmt: skip
_NAMES = tuple(_ACTIONS)
_WEIGHTS = tuple(weight for _, weight in _ACTIONS.values())


def _driver(rnd: random.Random, kind: str) -> Driver:
    return Driver(rnd, kind, VirtioRngPci(), _SLOT, _GSI, _BARS, setup_steps)


def generate(rnd: random.Random) -> list[Step]:
    """One random sequence: its kind (queue live or parked), then 6 to 30 actions, each
    written while it runs on a model (so requests fit the queue the device has)."""
    d = _driver(rnd, rnd.choice((LIVE_QUEUE, PARKED_QUEUE)))
    if d.kind == LIVE_QUEUE and rnd.randrange(3):
        _initialise(d)
    for _ in range(rnd.randint(6, 30)):
        [name] = rnd.choices(_NAMES, weights=_WEIGHTS)
        _ACTIONS[name][0](d)
    return d.steps


def keeps_generator_rules(steps: Sequence[Step]) -> bool:
    """Whether ``steps`` hold the held bits of one kind of sequence and, run on a model, make
    the device touch only planted RAM: the sequences the generator could have made (the
    shrinker tries only those)."""
    return any(_keeps(steps, kind) for kind in (LIVE_QUEUE, PARKED_QUEUE))


def _keeps(steps: Sequence[Step], kind: str) -> bool:
    d = _driver(random.Random(0), kind)
    outside: list[int] = []
    d.model.pci.dma_listeners.append(
        lambda op, addr, data: None if RAM.planted(addr, len(data)) else outside.append(addr)
    )
    for step in steps:
        covers_command = step.space == "config" and step.offset <= 0x04 < step.offset + step.size
        master = (step.value << 8 * step.offset) >> 8 * 0x04 & 0x4
        if kind == LIVE_QUEUE and step.op == "write" and covers_command and not master:
            return False  # bus mastering stays on with the queue live
        if step.op == "write" and step.space == "mmio" and step.bar is not None:
            name = d.model.bar_register_name(step.bar, step.offset)
            if d.hold(name, step.value) != step.value or d.forbidden(step):
                return False
        try:
            d.emit(step)
        except (ValueError, Unimplemented):  # an access the model refuses
            continue
        if outside:
            return False
    return True


SUPPORT = DeviceSupport(
    setup_steps=setup_steps,
    generate=generate,
    sequence_valid=keeps_generator_rules,
    sequence_watch=RAM.watch,
    coverage=COVERAGE,
)
