"""The edu model against QEMU's edu document and what QEMU 10.2.2 was seen to do."""

from __future__ import annotations

import pytest

from qtrace.devices.edu.model import BUFFER_START, Edu, factorial32, offset_of
from qtrace.refemu import RefMachine

BAR = 0xFEA0_0000
MS = 1_000_000
RAM = 0x0100_0000


def _edu() -> tuple[RefMachine, Edu]:
    machine = RefMachine()
    edu = machine.plug(5, Edu())
    machine.assign_bars(edu.pci, {0: BAR})
    return machine, edu


def _reg(name: str) -> int:
    return BAR + offset_of(name)


def test_identity_config_and_the_msi_capability_as_observed() -> None:
    machine, _ = _edu()
    assert machine.config_read(5, 0x00, 4) == 0x11E8_1234
    assert machine.config_read(5, 0x08, 4) == 0x00FF_0010  # class 00ff00, revision 0x10
    assert machine.config_read(5, 0x2C, 4) == 0x1100_1AF4
    assert machine.config_read(5, 0x34, 1) == 0x40
    assert machine.config_read(5, 0x40, 4) == 0x0080_0005  # MSI, 64-bit, one vector
    machine.config_write(5, 0x10, 4, 0xFFFF_FFFF)
    assert machine.config_read(5, 0x10, 4) == 0xFFF0_0000  # 1 MiB


def test_identification_and_liveness() -> None:
    machine, _ = _edu()
    assert machine.read(_reg("ID"), 4) == 0x0100_00ED
    assert machine.read(_reg("LIVENESS"), 4) == 0
    machine.write(_reg("LIVENESS"), 4, 0x7174_7263)
    assert machine.read(_reg("LIVENESS"), 4) == 0x8E8B_8D9C


def test_access_sizes_the_document_rules_out() -> None:
    machine, _ = _edu()
    machine.write(_reg("LIVENESS"), 2, 0xABCD)  # refused by the memory core
    assert machine.read(_reg("LIVENESS"), 4) == 0
    assert machine.read(_reg("ID"), 1) == 0 and machine.read(_reg("ID"), 2) == 0
    assert machine.read(_reg("ID"), 8) == 2**64 - 1  # 8 bytes below 0x80: refused
    assert machine.read(BAR + 0x84, 4) == 0xFFFF_FFFF  # no register there
    assert machine.read(_reg("INTR_RAISE"), 4) == 0xFFFF_FFFF  # write-only
    with pytest.raises(ValueError, match="not modelled"):
        machine.read(BAR + 0x82, 4)


def test_factorial_runs_when_the_thread_does_and_wraps_at_32_bits() -> None:
    machine, edu = _edu()
    machine.write(_reg("STATUS"), 4, 0xFFFF_FFFF)
    assert machine.read(_reg("STATUS"), 4) == 0x80  # only IRQFACT is writable
    machine.write(_reg("FACTORIAL"), 4, 10)
    assert machine.read(_reg("STATUS"), 4) == 0x81  # computing ...
    machine.write(_reg("FACTORIAL"), 4, 5)  # ... so this write is ignored
    assert machine.read(_reg("FACTORIAL"), 4) == 10 and not edu.irq_level
    assert edu.settle()
    assert machine.read(_reg("FACTORIAL"), 4) == 3628800
    assert machine.read(_reg("STATUS"), 4) == 0x80
    assert machine.read(_reg("INTR_STATUS"), 4) == 0x1 and edu.irq_level
    assert (factorial32(0), factorial32(13), factorial32(33), factorial32(34)) == (
        1, 0x7328CC00, 0x8000_0000, 0,
    )  # fmt: skip


def test_raise_and_acknowledge_drive_intx() -> None:
    machine, edu = _edu()
    machine.write(_reg("INTR_RAISE"), 4, 0x5)
    assert machine.read(_reg("INTR_STATUS"), 4) == 0x5 and edu.irq_level
    machine.write(_reg("INTR_ACK"), 4, 0x1)
    assert edu.irq_level
    machine.write(_reg("INTR_ACK"), 4, 0x4)
    assert not edu.irq_level and machine.read(_reg("INTR_STATUS"), 4) == 0


def test_msi_sends_one_message_per_raise_and_silences_intx() -> None:
    machine, edu = _edu()
    machine.write(_reg("INTR_RAISE"), 4, 0x8)
    assert edu.irq_level
    for offset, size, value in ((0x44, 4, 0x0020_0000), (0x48, 4, 0), (0x4C, 2, 0x4321)):
        machine.config_write(5, offset, size, value)
    machine.config_write(5, 0x42, 2, 0x0001)
    assert not edu.irq_level  # enabling MSI deasserts INTx (observed)
    messages: list[tuple[int, int]] = []
    edu.pci.msi_listeners.append(lambda address, data: messages.append((address, data)))
    machine.write(_reg("INTR_RAISE"), 4, 0x1)
    machine.write(_reg("INTR_RAISE"), 4, 0x2)  # status already non-zero: signals again
    machine.write(_reg("INTR_ACK"), 4, 0xFFFF_FFFF)
    machine.write(_reg("INTR_RAISE"), 4, 0)  # nothing pending: no message
    assert messages == [(0x0020_0000, 0x4321)] * 2
    assert machine.memory.read_int(0x0020_0000, 4) == 0x4321


def _dma(machine: RefMachine, src: int, dst: int, count: int, cmd: int) -> None:
    for name, value in (("DMA_SRC", src), ("DMA_DST", dst), ("DMA_COUNT", count)):
        machine.write(_reg(name), 8, value)
    machine.write(_reg("DMA_CMD"), 8, cmd)


def test_dma_runs_from_the_timer_100_ms_after_the_command_in_whole_ms() -> None:
    machine, edu = _edu()
    machine.memory.write(RAM, bytes(range(64)))
    edu.advance(MS // 2)  # the command comes half-way through a millisecond
    _dma(machine, RAM, BUFFER_START, 64, 0x5)
    machine.write(_reg("DMA_SRC"), 4, 0x1234)  # ignored while the transfer runs
    assert machine.read(_reg("DMA_SRC"), 8) == RAM
    edu.advance(100 * MS - MS // 2 - 1)
    assert machine.read(_reg("DMA_CMD"), 4) == 0x5 and not edu.irq_level
    edu.advance(1)  # due at 100 ms: the millisecond the command came in, plus 100
    assert machine.read(_reg("DMA_CMD"), 4) == 0x4
    assert machine.read(_reg("INTR_STATUS"), 4) == 0x100 and edu.irq_level
    _dma(machine, BUFFER_START + 8, 0xF << 28 | RAM + 0x100, 8, 0x3)  # RAM side masked
    edu.settle(timers=True)
    assert machine.memory.read(RAM + 0x100, 8) == bytes(range(8, 16))


def test_dma_commands_without_start_are_ignored_and_start_alone_clears() -> None:
    machine, edu = _edu()
    machine.write(_reg("DMA_CMD"), 4, 0x6)
    assert machine.read(_reg("DMA_CMD"), 8) == 0
    _dma(machine, RAM, BUFFER_START, 0, 0xFFFF_0001)
    machine.write(_reg("DMA_SRC"), 4, 0xAABB_CCDD)
    edu.settle(timers=True)
    assert machine.read(_reg("DMA_CMD"), 8) == 0xFFFF_0000
    machine.write(_reg("DMA_SRC"), 8, 0x1122_3344_5566_7788)
    machine.write(_reg("DMA_SRC"), 4, 0xAABB_CCDD)  # a 4-byte write zero-extends
    assert machine.read(_reg("DMA_SRC"), 8) == 0xAABB_CCDD


def test_a_blocked_dma_read_fills_zeros_and_still_completes() -> None:
    machine, edu = _edu()
    machine.memory.write(RAM, b"\x77" * 8)
    _dma(machine, RAM, BUFFER_START, 8, 0x1)
    machine.config_write(5, 0x04, 2, 0x0002)  # bus mastering off
    edu.settle(timers=True)
    assert edu.dma.buffer[:8] == bytes(8) and machine.read(_reg("DMA_CMD"), 4) == 0


def test_a_transfer_outside_the_buffer_is_not_modelled() -> None:
    machine, edu = _edu()
    _dma(machine, RAM, BUFFER_START + 4090, 16, 0x1)
    edu.settle(timers=True)
    assert sum(edu.unimplemented_features.values()) == 1
