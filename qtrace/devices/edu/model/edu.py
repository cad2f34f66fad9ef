"""The edu device model: identification, liveness, factorial, interrupts, DMA, MSI/INTx.

Written from QEMU's edu document (``docs/specs/edu.rst``, its facts only) and, where it
says nothing, from what QEMU 10.2.2 was seen to do under qtest (each such rule says so).
Registers are defined in the pack's ``registers.toml``; this module gives the ones with
behaviour their hooks.

Access sizes (document: "only size == 4 accesses are allowed for addresses < 0x80, size ==
4 or size == 8 for the rest"). What happens to the others, observed: a 1- or 2-byte access
never reaches the device (QEMU's memory core refuses it: a read returns 0, a write is
dropped); an 8-byte access below 0x80 reaches it and is refused there (reads all ones,
writes ignored). Offsets with no register read all ones and ignore writes. Accesses that
are not naturally aligned are not modelled (``ValueError``).

Interrupts (document: "An IRQ is generated when written to the interrupt raise register
... has to be written to the interrupt acknowledge register to lower it"; INTx by default,
MSI when the driver enables it). Observed: every raise that leaves the interrupt status
non-zero signals again (with MSI: one message per raise, a raise of 0 with nothing pending
sends none); an acknowledge that leaves it zero deasserts INTx (with MSI: nothing);
enabling MSI deasserts INTx (PCI 3.0, 6.8.1.3) and re-asserts nothing when it is disabled.

Asynchrony: QEMU computes the factorial on a thread of its own and runs the DMA from a
virtual-clock timer (:mod:`qtrace.devices.edu.model.edu_dma`). The model keeps both
pending until its host lets them happen: :meth:`Edu.settle` is the thread finishing (and,
with ``timers=True``, every timer firing: the trace replay, which has no clock), and
:meth:`Edu.advance` is the virtual clock moving (the live test's ``clock_step``).

Explaining (``qtrace verify edu --trace FILE --explain``): :meth:`Edu.enable_provenance`
watches the registers by their BAR 0 offsets (:data:`STATE`) and the hooks narrate what only
the model knows: what a write started, the factorial thread's and the DMA timer's work (each
acting as its own origin, naming the access that started it), and through which path an
interrupt went (an MSI message or INTx).

Reset: the model's :meth:`Edu.reset` is power-on. QEMU 10.2.2's edu keeps its registers
and buffer over a machine reset (observed: liveness, interrupt status and the DMA registers
survive ``system_reset``), which is why the live test clears them at the start of each run.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext

from qtrace.devices.edu.model.edu_dma import DEFAULT_DMA_MASK, DmaEngine
from qtrace.devices.edu.model.edu_regs import (
    DMA_CMD_IRQ,
    EDU_REGISTERS,
    INTR_DMA,
    INTR_FACTORIAL,
    STATUS_COMPUTING,
    STATUS_IRQFACT,
)
from qtrace.refemu.bus import CallRegion
from qtrace.refemu.intx import IntxPin
from qtrace.refemu.irq import IrqLine
from qtrace.refemu.msi import Msi
from qtrace.refemu.pci import COMMAND_INTX_DISABLE, BarDef, PciFunction, PciIdentity
from qtrace.refemu.provenance import Origin, Provenance
from qtrace.refemu.regmap import Kind, RegisterMap

__all__ = ["BAR0", "EDU_IDENTITY", "MSI_OFFSET", "STATE", "Edu", "factorial32"]

logger = logging.getLogger(__name__)

# Identity: 1234:11e8 from the document; revision 0x10, class 0x00ff00, subsystem 1af4:1100,
# INTA, and the writable COMMAND bits (IO, MEMORY, MASTER, SERR#, INTx disable) as QEMU
# 10.2.2 presents them (observed; the latency timer stays 0, the cache line size is writable).
EDU_IDENTITY = PciIdentity(
    vendor_id=0x1234,
    device_id=0x11E8,
    class_code=0x00FF00,
    revision=0x10,
    subsystem_vendor_id=0x1AF4,
    subsystem_id=0x1100,
    interrupt_pin=1,
    command_wmask=0x0507,
    latency_writable=False,
)
BAR0 = BarDef(0, 1 << 20)  # "I/O memory, 1 MB in size"
MSI_OFFSET = 0x40  # the only capability (observed), one vector, 64-bit addresses
_BIG_ACCESS_FROM = 0x80  # 8-byte accesses are allowed from here on
_MASK32 = 0xFFFF_FFFF
_FACTORIAL_ZERO_FROM = 34  # 34! has 32 factors of two: from here on n! is 0 modulo 2^32
_DMA_REGISTERS = frozenset({"DMA_SRC", "DMA_DST", "DMA_COUNT", "DMA_CMD"})


def factorial32(n: int) -> int:
    """``n!`` modulo 2^32, as a 32-bit register holds it."""
    if n >= _FACTORIAL_ZERO_FROM:
        return 0
    value = 1
    for factor in range(2, n + 1):
        value = value * factor & _MASK32
    return value


def _all_ones(size: int) -> int:
    return (1 << (8 * size)) - 1


class Edu:
    """QEMU's educational PCI device.

    Args:
        name: The PCI function's name (its windows are mapped under it).
        dma_mask: The DMA address mask (``-device edu,dma_mask=``; 28 bits by default).

    Attributes:
        irq: The INTx line (low while MSI is enabled).
        pci: The PCI function: configuration space with the MSI capability, BAR 0.
        now_ns: The model's virtual clock (moved by :meth:`advance`).
        unimplemented_features: Counts of what the guest did that the model does not model.
    """

    mmio_registers = EDU_REGISTERS
    io_registers = RegisterMap(())

    @classmethod
    def from_properties(cls, properties: Mapping[str, str] | None, name: str = "edu") -> Edu:
        """The model of an edu QEMU was given these ``-device`` properties (``dma_mask``)."""
        mask = (properties or {}).get("dma_mask")
        return cls(name=name, dma_mask=DEFAULT_DMA_MASK if mask is None else int(mask, 0))

    def __init__(self, name: str = "edu", dma_mask: int = DEFAULT_DMA_MASK) -> None:
        self.irq = IrqLine(f"{name}/INTx")
        self.msi = Msi(MSI_OFFSET)
        self.pci = PciFunction(
            name,
            EDU_IDENTITY,
            [(BAR0, CallRegion(self.mmio_read, self.mmio_write))],
            capabilities=[self.msi.capability()],
            device_specific_writable=True,
        )
        self.pci.blocked_read_fill = 0x00  # observed: a blocked DMA read fills zeros
        self.intx = IntxPin(self.pci, self.irq)
        self.msi.bind(self.pci, on_enable=lambda: self.intx.set(False))
        self.dma = DmaEngine(self.pci, dma_mask, self._dma_done, self.note_unimplemented)
        self.unimplemented_features: Counter[str] = Counter()
        self.now_ns = 0
        self.liveness = self.factorial = self.status = self.intr_status = 0
        self.factorial_pending = False
        self.provenance: Provenance | None = None  # set by enable_provenance (--explain)
        self._factorial_by: Origin | None = None  # the write that started the factorial
        self.reset()

    # -- reset ---------------------------------------------------------------------------

    def reset(self) -> None:
        """Power-on: registers 0, buffer zeros, nothing pending, configuration reset."""
        self.pci.reset()
        self.msi.reset()
        self.intx.reset()
        self.dma.reset()
        self.liveness = self.factorial = self.status = self.intr_status = 0
        self.factorial_pending = False

    # -- BAR 0 -------------------------------------------------------------------------------

    def mmio_read(self, offset: int, size: int) -> int:
        """A guest read of ``size`` bytes at ``offset`` in BAR 0."""
        self._check_alignment(offset, size)
        if size < 4:
            return 0  # refused by QEMU's memory core before the device
        reg = EDU_REGISTERS.at(offset)
        if (size == 8 and offset < _BIG_ACCESS_FROM) or reg is None or reg.offset != offset:
            return _all_ones(size)
        hook = STATE.get(reg.name)
        if hook is not None:
            value = hook(self)
        elif reg.kind is Kind.RO:
            value = reg.reset
        else:  # write-only
            value = _MASK32
        return value & _all_ones(size)

    def mmio_write(self, offset: int, size: int, value: int) -> None:
        """A guest write of ``size`` bytes at ``offset`` in BAR 0."""
        self._check_alignment(offset, size)
        reg = EDU_REGISTERS.at(offset)
        if size < 4 or (size == 8 and offset < _BIG_ACCESS_FROM) or reg is None:
            return
        if reg.offset != offset:
            return
        value &= _all_ones(size)
        if reg.name in _DMA_REGISTERS:
            self.dma.write(reg.name, value, self.now_ns)
            return
        hook = _WRITE_HOOKS.get(reg.name)
        if hook is not None:
            hook(self, value)

    def io_read(self, offset: int, size: int) -> int:
        """edu has no I/O BAR."""
        raise ValueError("edu has no I/O BAR")

    def io_write(self, offset: int, size: int, value: int) -> None:
        """edu has no I/O BAR."""
        raise ValueError("edu has no I/O BAR")

    # -- asynchrony: the factorial thread and the DMA timer -----------------------------------

    def settle(self, *, timers: bool = False) -> bool:
        """Let QEMU's off-vCPU work finish: the factorial thread, and with ``timers`` the
        DMA timer too (at once: for a replay, which has no clock). True if anything ran."""
        ran = False
        if self.factorial_pending:
            self._finish_factorial()
            ran = True
        if timers and self.dma.deadline_ns is not None:
            self._run_dma()
            ran = True
        return ran

    def advance(self, ns: int) -> None:
        """QEMU's virtual clock moved ``ns`` forward: the DMA timer fires when due."""
        self.now_ns += ns
        if self.dma.due(self.now_ns):
            self._run_dma()

    @property
    def irq_level(self) -> bool:
        """True while the INTx line is asserted."""
        return self.irq.level

    def note_unimplemented(self, feature: str) -> None:
        """Count a guest-requested behaviour the model does not model."""
        self.unimplemented_features[feature] += 1
        logger.debug("edu model: %s is not modelled", feature)

    # -- explaining (qtrace verify --explain) -------------------------------------------------

    def enable_provenance(self, provenance: Provenance) -> None:
        """Watch the registers (by BAR 0 offset) in ``provenance``; the hooks narrate from
        now on (:mod:`qtrace.refemu.provenance`)."""
        self.provenance = provenance
        self.dma.provenance = provenance
        offsets = {EDU_REGISTERS.named(name).offset: read for name, read in STATE.items()}
        provenance.watch(
            "mmio",
            lambda: {offset: read(self) for offset, read in offsets.items()},
            EDU_REGISTERS.name_at,
        )

    def line_reason(self) -> str:
        """Why INTx has its level: the interrupt status, MSI, COMMAND's INTx disable."""
        text = f"INTR_STATUS {self.intr_status:#x}"
        if self.msi.enabled:
            return text + "; MSI is enabled, so INTx stays low"
        text += " is non-zero: INTx asserted" if self.intx.asserted else ": INTx deasserted"
        if self.pci.command & COMMAND_INTX_DISABLE:
            text += "; COMMAND.INTX_DISABLE is set, so the line stays low"
        return text

    def _doing(self, text: Callable[[], str]) -> AbstractContextManager[None]:
        """While explaining, changes in the block carry ``text()``; otherwise nothing."""
        return nullcontext() if self.provenance is None else self.provenance.detail(text())

    def _acting(self, what: str, detail: Callable[[], str]) -> AbstractContextManager[None]:
        """While explaining, the block is ``what``'s doing (no access: a thread, a timer)."""
        if self.provenance is None:
            return nullcontext()
        return self.provenance.acting(Origin(None, what, detail()))

    def _wrote(self, name: str) -> None:
        """While explaining: this write determined all of ``name``, changed or not."""
        if self.provenance is not None:
            self.provenance.sync()
            offset = EDU_REGISTERS.named(name).offset
            self.provenance.set_origin("mmio", offset, (1 << 64) - 1, self.provenance.origin)

    # -- internals -----------------------------------------------------------------------------

    @staticmethod
    def _check_alignment(offset: int, size: int) -> None:
        if size not in (1, 2, 4, 8) or offset % size:
            raise ValueError(f"a {size}-byte edu access at {offset:#x} is not modelled")

    def _finish_factorial(self) -> None:
        n = self.factorial
        started = self._factorial_by
        with self._acting(
            "the factorial thread",
            lambda: f"{n}! (modulo 2^32) for {started}" if started else f"{n}! (modulo 2^32)",
        ):
            self.factorial_pending = False
            self.factorial = factorial32(n)
            self.status &= ~STATUS_COMPUTING
            if self.status & STATUS_IRQFACT:
                with self._doing(lambda: "IRQFACT is set: interrupt 0x1"):
                    self._raise(INTR_FACTORIAL)

    def _run_dma(self) -> None:
        with self._acting("the DMA timer", self.dma.describe):
            self.dma.run()

    def _raise(self, value: int) -> None:
        self.intr_status |= value
        if not self.intr_status:
            if self.provenance is not None:
                self.provenance.note("the interrupt status stays 0: nothing is signalled")
            return
        if self.msi.enabled:
            with self._doing(lambda: "MSI is enabled: an MSI message"):
                self.msi.notify()
        else:
            with self._doing(lambda: "MSI is off: INTx"):
                self.intx.set(True)

    def _acknowledge(self, value: int) -> None:
        self.intr_status &= ~value
        if not self.intr_status and not self.msi.enabled:
            self.intx.set(False)

    def _dma_done(self, cmd: int) -> None:
        if cmd & DMA_CMD_IRQ:
            with self._doing(lambda: "DMA_CMD has IRQ: interrupt 0x100"):
                self._raise(INTR_DMA)

    def _write_liveness(self, value: int) -> None:
        if self.provenance is None:
            self.liveness = ~value & _MASK32
            return
        with self.provenance.detail("LIVENESS holds the bitwise inversion of the value written"):
            self.liveness = ~value & _MASK32
            self._wrote("LIVENESS")

    def _write_factorial(self, value: int) -> None:
        if self.status & STATUS_COMPUTING:
            if self.provenance is not None:
                self.provenance.note("ignored: a factorial is being computed (COMPUTING set)")
            return
        self.factorial = value
        self.status |= STATUS_COMPUTING
        self.factorial_pending = True
        if self.provenance is not None:
            self._wrote("FACTORIAL")
            self._factorial_by = self.provenance.origin
            self.provenance.note(f"the factorial of {value} starts on the device's thread")

    def _write_status(self, value: int) -> None:
        self.status = (self.status & STATUS_COMPUTING) | (value & STATUS_IRQFACT)


STATE: dict[str, Callable[[Edu], int]] = {
    "LIVENESS": lambda dev: dev.liveness,
    "FACTORIAL": lambda dev: dev.factorial,
    "STATUS": lambda dev: dev.status,
    "INTR_STATUS": lambda dev: dev.intr_status,
    "DMA_SRC": lambda dev: dev.dma.src,
    "DMA_DST": lambda dev: dev.dma.dst,
    "DMA_COUNT": lambda dev: dev.dma.count,
    "DMA_CMD": lambda dev: dev.dma.cmd,
}
"""The registers that hold state, by name: what a read returns and explaining watches."""
_WRITE_HOOKS: dict[str, Callable[[Edu, int], None]] = {
    "LIVENESS": Edu._write_liveness,
    "FACTORIAL": Edu._write_factorial,
    "STATUS": Edu._write_status,
    "INTR_RAISE": Edu._raise,
    "INTR_ACK": Edu._acknowledge,
}
