"""The INTx hook (gdbscripts/qtrace_gdb/irq.py): it breaks where QEMU stores a changed level
(pci_set_irq_state), records only a change that pci_set_irq made, for the captured device,
and keys the stack from pci_set_irq's frame so that frames[0] stays pci_set_irq. Host
Python, with a stand-in ``gdb`` module and a stand-in session."""

from __future__ import annotations

import struct
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.gdb_side import forget, import_with_stand_in_gdb

HANDLER = (0x1000, 0x1100)  # pci_irq_handler's code
SET_IRQ = (0x2000, 0x2040)  # pci_set_irq's code
DEVICE, OTHER = 0xD0, 0xE0


NAMES = ("qtrace_gdb", "qtrace_gdb.base", "qtrace_gdb.regs", "qtrace_gdb.irq")


@pytest.fixture
def irq(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    module, _ = import_with_stand_in_gdb(monkeypatch, NAMES)
    ranges = {"pci_irq_handler": HANDLER, "pci_set_irq": SET_IRQ}
    monkeypatch.setattr(module, "find_function", lambda name, source=None: name)
    monkeypatch.setattr(
        module,
        "function_block",
        lambda name: types.SimpleNamespace(
            start=ranges.get(name, (0, 0))[0], end=ranges.get(name, (0, 0))[1]
        ),
    )
    monkeypatch.setattr(module, "parameters", lambda block: ["dev", "irq_num", "level"])
    monkeypatch.setattr(module, "entry_location", lambda symbol: "-function " + symbol)
    yield module
    forget(NAMES)


@dataclass
class Frame:
    args: dict[str, int]
    older_frame: Frame | None = None

    def read_var(self, name: str) -> int:
        return self.args[name]

    def older(self) -> Frame | None:
        return self.older_frame


@dataclass
class Session:
    events: list[tuple[dict[str, Any], Any, Any]] = field(default_factory=list)
    keys: list[tuple[list[int], int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.stacks = types.SimpleNamespace(key_at=self._key_at)

    def _key_at(self, pcs: list[int], rbp: int) -> tuple[tuple[int, ...], int]:
        self.keys.append((list(pcs), rbp))
        return tuple(pcs), rbp

    def record_event(self, record: dict[str, Any], frame: Any, key: Any = None) -> bool:
        self.events.append((record, frame, key))
        return False


class Filter:
    def matches(self, pci_dev: int) -> bool:
        return pci_dev == DEVICE


def _hit(
    monkeypatch: pytest.MonkeyPatch,
    irq: types.ModuleType,
    into_handler: int,
    into_set_irq: int,
    device: int = DEVICE,
    level: int = 1,
) -> tuple[Session, Frame]:
    """One stop in pci_set_irq_state whose frame-pointer chain is state (rbp 0x100) ->
    handler (0x200, returning to ``into_handler``) -> caller (0x300, ``into_set_irq``)."""
    stack = {
        0x100: struct.pack("<QQ", 0x200, into_handler),
        0x200: struct.pack("<QQ", 0x300, into_set_irq),
    }
    words = [0] * 27
    words[irq.RBP] = 0x100
    monkeypatch.setattr(irq, "registers", lambda: words)
    monkeypatch.setattr(irq, "memory", lambda address, length: stack[address][:length])
    caller = Frame({})
    newest = Frame({"dev": device, "level": level}, Frame({}, caller))
    monkeypatch.setattr(sys.modules["gdb"], "newest_frame", lambda: newest, raising=False)
    session = Session()
    hook = irq.IntxBreakpoint(session, Filter())
    assert hook.location == "-function pci_set_irq_state"
    assert hook.on_hit() is False
    return session, caller


def test_a_change_by_pci_set_irq_is_recorded_with_the_stack_from_pci_set_irq(
    monkeypatch: pytest.MonkeyPatch, irq: types.ModuleType
) -> None:
    session, caller = _hit(monkeypatch, irq, 0x1010, 0x2020, level=0)
    assert session.events == [
        ({"type": "irq", "level": 0, "line": "INTx"}, caller, ((0x2020,), 0x300))
    ]
    # The key starts at the return address into pci_set_irq and follows its frame's chain.
    assert session.keys == [([0x2020], 0x300)]


def test_a_change_by_another_path_or_device_is_not_recorded(
    monkeypatch: pytest.MonkeyPatch, irq: types.ModuleType
) -> None:
    # pci_device_deassert_intx (or a qemu_irq) calling pci_irq_handler: not pci_set_irq.
    assert _hit(monkeypatch, irq, 0x1010, 0x5000)[0].events == []
    # pci_set_irq_state called by the migration loader, not by pci_irq_handler.
    assert _hit(monkeypatch, irq, 0x5000, 0x2020)[0].events == []
    assert _hit(monkeypatch, irq, 0x1010, 0x2020, device=OTHER)[0].events == []
