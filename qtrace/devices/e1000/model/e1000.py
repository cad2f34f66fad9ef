"""The e1000 (Intel 82540EM) device model: registers, interrupts, EEPROM, PHY, rings.

Why: the point of the model is to be an independent reading of the datasheet to check
QEMU against, so its behaviour is driven by the register table in
the e1000 device pack (``qtrace/devices/e1000/registers.toml``, read through
:mod:`qtrace.devices.e1000.model.e1000_regs`); only registers with side effects have hooks here.

Interrupts (SDM 13.4.17-13.4.21): ICR holds pending causes and is cleared by a read
(writing 1s also clears bits); ICS sets causes; IMS sets and IMC clears mask bits; the
INTx line is asserted while ``ICR & IMS`` is not zero. The SDM's CTRL.RST is a software
reset (MAC registers to reset values, RAL0/RAH0 reloaded from the EEPROM) and CTRL.PHY_RST
resets the PHY; QEMU 10.2.2 does neither (observed), and the model follows QEMU: RST
self-clears, PHY_RST is stored. :meth:`E1000.software_reset` is the SDM's reset, for
scripts that want it.

Sub-dword accesses: the SDM requires 32-bit register accesses and leaves narrower ones
undefined. QEMU 10.2.2's e1000 implements 4-byte accesses only, and its memory core
(``access_with_adjusted_size``) widens a 1- or 2-byte access to 4 bytes without aligning
it: the device sees a 4-byte access at the byte's own address, whose register is the one
containing it. So a narrow write replaces the whole register with the zero-extended value
(a byte written to RCTL clears RCTL[31:8]; a byte written at CTRL+1 lands in CTRL[7:0]),
and a narrow read returns the register's low bytes (with the read's side effects, such as
ICR's clear). The model does the same. Accesses that are not naturally aligned (2 bytes
at an odd offset) are refused by QEMU's memory core before they reach the device; the
model refuses them too (``ValueError``).
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext

from qtrace.devices.e1000.model.e1000_eeprom import EEPROM_WORDS, MicrowireEeprom, build_image
from qtrace.devices.e1000.model.e1000_phy import PHY_ADDRESS, PHY_REGISTERS, Phy
from qtrace.devices.e1000.model.e1000_stats import bump
from qtrace.devices.e1000.model.e1000_regs import (
    CONFIG_ROM_BAR,
    CTRL_RST,
    EERD_DONE,
    EERD_START,
    CAUSE_FIELDS,
    ICR_BITS,
    IO_REGISTERS,
    MAC_REGISTERS,
    MDIC_ERROR,
    MDIC_IE,
    MDIC_READY,
    RAH_AV,
    RCTL_EN,
    TCTL_EN,
    UNIMPLEMENTED,
    bit,
)
from qtrace.devices.e1000.model.e1000_rings import (
    accepts,
    describe_rx,
    oversized,
    describe_tx,
    run_rx,
    run_tx,
    rx_free,
    tx_causes,
)
from qtrace.refemu.irq import IrqLine
from qtrace.refemu.pci import (
    COMMAND_INTX_DISABLE,
    COMMAND_MASTER,
    BarDef,
    PciFunction,
    PciIdentity,
)
from qtrace.refemu.provenance import Origin, Provenance
from qtrace.refemu.regmap import Kind, Reg, RegisterMap, Unimplemented

__all__ = ["BAR0", "BAR1", "DEFAULT_MAC", "E1000", "E1000_IDENTITY", "parse_mac"]

logger = logging.getLogger(__name__)

DEFAULT_MAC = bytes.fromhex("525400123456")  # QEMU's default NIC address

# PCI identity. Ids, class and interrupt pin: SDM 4.1. Revision 3 and the subsystem ids
# 1af4:1100 (QEMU's default for every PCI device it makes) are what QEMU presents; they
# are not the datasheet's defaults.
E1000_IDENTITY = PciIdentity(
    vendor_id=0x8086,
    device_id=0x100E,
    class_code=0x020000,
    revision=0x03,
    subsystem_vendor_id=0x1AF4,
    subsystem_id=0x1100,
    interrupt_pin=1,
    cache_line_size=0x00,  # 0 at power-on under qtest (firmware writes 0x10 in captures)
    latency_writable=False,  # observed in QEMU 10.2.2: the latency timer reads 0 after 0xFF
    # Observed in QEMU 10.2.2 (writing 0xFFFF to COMMAND reads back 0x0507): IO, MEMORY,
    # MASTER, SERR# enable and INTx disable are writable.
    command_wmask=0x0507,
)
BAR0 = BarDef(0, 128 * 1024)  # memory-mapped registers
BAR1 = BarDef(1, 64, io=True)  # IOADDR/IODATA

_MASK32 = 0xFFFF_FFFF
_EECD_PINS = bit("EECD", "SK") | bit("EECD", "CS") | bit("EECD", "DI")
_EECD_REQ = bit("EECD", "EE_REQ")
_EECD_WRITABLE = _EECD_PINS | bit("EECD", "FWE") | _EECD_REQ
_EECD_DO = bit("EECD", "DO")
_EECD_GNT = bit("EECD", "EE_GNT")
_EECD_PRES = bit("EECD", "EE_PRES")
_MDIC_READY = MDIC_READY
_MDIC_IE = MDIC_IE
_MDIC_ERROR = MDIC_ERROR
_MDIC_OP_WRITE, _MDIC_OP_READ = 1, 2
_STATUS_LU = bit("STATUS", "LU")
_PHY_STATUS_LINK = 1 << 2
_PHY_STATUS_AN_DONE = 1 << 5
_MS_NS = 1_000_000
RX_HOLD_MS = 1000
"""Observed in QEMU 10.2.2 (qtest, issue 13): after any RCTL write the device takes no
frame for 1000 ms of virtual time (a timer deadline in whole ms); frames that arrive
meanwhile wait, and are delivered when the timer fires. The SDM has no such delay."""


_ICR_OFFSET = MAC_REGISTERS.named("ICR").offset


def _size_mask(size: int) -> int:
    return (1 << (8 * size)) - 1


def _phy_name(number: int) -> str:
    reg = PHY_REGISTERS.get(number)
    return f"PHY register {number:#04x}" + (f" ({reg.name})" if reg is not None else "")


def _causes(bits: int) -> str:
    return ", ".join(f.name for f in CAUSE_FIELDS if bits & f.mask) or f"{bits:#x}"


def parse_mac(text: str) -> bytes:
    """``"52:54:00:12:34:56"`` (or with dashes) as six bytes."""
    raw = bytes.fromhex(text.replace(":", "").replace("-", ""))
    if len(raw) != 6:
        raise ValueError(f"{text!r} is not a MAC address")
    return raw


class _Window:
    """Adapts a pair of device methods to the bus's Region protocol."""

    def __init__(
        self, read: Callable[[int, int], int], write: Callable[[int, int, int], None]
    ) -> None:
        self.read = read
        self.write = write


class E1000:
    """An 82540EM.

    Args:
        name: The PCI function's name (its windows are mapped under it).
        mac: Ethernet address stored in the EEPROM (default QEMU's 52:54:00:12:34:56).
        tx_sink: Called with every transmitted frame (no CRC).
        eeprom_overrides: Extra EEPROM words, ``word -> value``.
        option_rom: Whether QEMU was given an option ROM. With one (QEMU's default
            ``efi-e1000.rom``) the ROM BAR's size comes from a host file, so the model
            reports the ROM BAR as unimplemented; without (``romfile=``) the register is
            read-only 0, as PCI 3.0 (6.2.5.2) has it for a device with no expansion ROM
            and as QEMU 10.2.2 answers (observed: sizing writes read back 0).

    Attributes:
        irq: The INTx line; ``irq.level`` is ``(ICR & IMS) != 0``.
        pci: The PCI function (configuration space, BARs, DMA).
        transmitted: Every frame transmitted since creation.
        unimplemented_features: Counts of features the guest used that the model skips.
    """

    mmio_registers = MAC_REGISTERS
    io_registers = IO_REGISTERS

    @classmethod
    def from_properties(cls, properties: Mapping[str, str] | None, name: str = "e1000") -> E1000:
        """The model of an e1000 QEMU was given these ``-device`` properties.

        ``mac=`` sets the address; an empty ``romfile=`` means no option ROM (any other
        value, or none, keeps QEMU's default ROM). Other properties do not change what the
        guest sees. ``None`` (not recorded): QEMU's defaults.
        """
        props = properties or {}
        mac = parse_mac(props["mac"]) if "mac" in props else DEFAULT_MAC
        return cls(name=name, mac=mac, option_rom=props.get("romfile") != "")

    def __init__(
        self,
        name: str = "e1000",
        mac: bytes = DEFAULT_MAC,
        tx_sink: Callable[[bytes], None] | None = None,
        eeprom_overrides: dict[int, int] | None = None,
        option_rom: bool = True,
    ) -> None:
        self.mac = bytes(mac)
        self.eeprom_words = build_image(self.mac, eeprom_overrides)
        self.eeprom = MicrowireEeprom(self.eeprom_words)
        self.phy = Phy()
        self.irq = IrqLine(f"{name}/INTx")
        self.tx_sink = tx_sink
        self.transmitted: list[bytes] = []
        self.unimplemented_features: Counter[str] = Counter()
        self.regs: dict[int, int] = {}
        self.io_regs: dict[int, int] = {}
        self._tx_pending = bytearray()
        self.mmio = _Window(self.mmio_read, self.mmio_write)
        self.io = _Window(self.io_read, self.io_write)
        config_unimpl = {
            off: (n, why) for space, off, n, why in UNIMPLEMENTED if space == "pci-config"
        }
        if not option_rom:
            del config_unimpl[CONFIG_ROM_BAR]
        self.pci = PciFunction(
            name, E1000_IDENTITY, [(BAR0, self.mmio), (BAR1, self.io)], config_unimpl
        )
        self.pci.config_listeners.append(self._config_written)
        self._rx_queue: deque[bytes] = deque()
        self._rx_unread: deque[bytes] = deque()
        self._now_ns = 0
        self._rx_hold_until_ns: int | None = None
        self.provenance: Provenance | None = None  # set by enable_provenance (--explain)
        self._eeprom_out: dict[int, int] = {}  # the EEPROM's DO, tracked while explaining
        self._eeprom_said = ""
        self.reset()

    # -- reset ---------------------------------------------------------------------------

    def reset(self) -> None:
        """Power-on reset: registers, EEPROM interface, PHY and PCI configuration."""
        self.phy.reset()
        self.pci.reset()
        self.software_reset()

    def software_reset(self) -> None:
        """What CTRL.RST does: MAC registers to reset values, RAL0/RAH0 from the EEPROM."""
        self.regs = {reg.offset: reg.reset for reg in MAC_REGISTERS if reg.kind is not Kind.UNIMPL}
        self.io_regs = {reg.offset: reg.reset for reg in IO_REGISTERS}
        words = self.eeprom_words
        self.set_reg("RAL[0]", words[0] | words[1] << 16)
        self.set_reg("RAH[0]", words[2] | RAH_AV)
        self.eeprom.reset()
        if self.provenance is not None:
            self._track(self.provenance)
        self._tx_pending.clear()
        self._update_irq()

    # -- raw register storage (no side effects) --------------------------------------------

    def reg(self, name: str) -> int:
        """Stored value of MAC register ``name``, without read side effects."""
        return self.regs[MAC_REGISTERS.named(name).offset]

    def set_reg(self, name: str, value: int) -> None:
        """Store ``value`` in register ``name`` without write side effects."""
        self.regs[MAC_REGISTERS.named(name).offset] = value & _MASK32

    # -- BAR0: memory-mapped registers -------------------------------------------------------

    def mmio_read(self, offset: int, size: int) -> int:
        """A guest read of ``size`` bytes at ``offset`` in BAR0."""
        reg = self._lookup(MAC_REGISTERS, "mmio", offset, size)
        hook = _READ_HOOKS.get(reg.name)
        value = hook(self) if hook is not None else self._read_by_kind(reg)
        return value & _size_mask(size)  # a narrow read: the register's low bytes (QEMU)

    def mmio_write(self, offset: int, size: int, value: int) -> None:
        """A guest write of ``size`` bytes at ``offset`` in BAR0."""
        reg = self._lookup(MAC_REGISTERS, "mmio", offset, size)
        value &= _size_mask(size)  # a narrow write replaces the whole register (QEMU)
        hook = _WRITE_HOOKS.get(reg.name)
        if hook is not None:
            hook(self, value)
        elif reg.kind is Kind.RW:
            self._store(reg, value)
        else:
            logger.debug("write to read-only %s ignored", reg.name)

    # -- BAR1: IOADDR / IODATA -------------------------------------------------------------

    def io_read(self, offset: int, size: int) -> int:
        """A guest read in the I/O BAR.

        The SDM's IOADDR/IODATA window onto BAR0 is not what QEMU 10.2.2 does: every
        read of the I/O BAR answers 0 and writes are ignored (observed in capture and
        under qtest), so the model does the same.
        """
        if size not in (1, 2, 4) or offset < 0 or offset + size > BAR1.size_bytes:
            raise ValueError(f"pio access of {size} bytes at {offset:#x} is outside the I/O BAR")
        return 0

    def io_write(self, offset: int, size: int, value: int) -> None:
        """A guest write in the I/O BAR: ignored, as QEMU 10.2.2 does (see :meth:`io_read`)."""
        if size not in (1, 2, 4) or offset < 0 or offset + size > BAR1.size_bytes:
            raise ValueError(f"pio access of {size} bytes at {offset:#x} is outside the I/O BAR")
        logger.debug("I/O BAR write at %#x ignored", offset)

    # -- host side: the wire and the link -----------------------------------------------------

    def receive(self, frame: bytes) -> bool:
        """The device takes ``frame`` (no CRC) from the wire now; True if it reached the ring.

        Frames are refused while RCTL.EN is clear or when the address filters reject them,
        and dropped (RXO, MPC) when the ring lacks free descriptors for all of the frame.
        This is the device alone; :meth:`offer` is a frame from QEMU's network backend,
        which waits while the device cannot take frames.
        """
        if not self.reg("RCTL") & RCTL_EN or not accepts(self, frame):
            if self.provenance is not None:
                self.provenance.note(f"frame of {len(frame)} bytes refused by the receive filter")
            return False
        if oversized(self.reg("RCTL"), len(frame)):
            bump(self, "ROC")
            if self.provenance is not None:
                self.provenance.note(f"frame of {len(frame)} bytes too long without RCTL.LPE")
            return False
        with self._doing(lambda: f"a frame of {len(frame)} bytes from the wire"):
            outcome = run_rx(self, frame)
            if self.provenance is not None:
                for line in describe_rx(frame, outcome):
                    self.provenance.note(line)
            self._raise_causes(outcome.causes)
        return outcome.stored

    def offer(self, frame: bytes) -> None:
        """A frame from QEMU's network backend (``-netdev``), which the device takes now or
        which waits (observed in QEMU 10.2.2, qtest, issue 13; the SDM has a disabled
        receiver or a full ring drop frames instead).

        QEMU's network layer hands a frame over when the device says it can take one
        (:meth:`can_receive`); otherwise the frame is *queued* and the backend reads no
        more (later frames stay *unread* in its socket). The queue is handed over again at
        the device's flush points (an RDT write that leaves a free descriptor, a COMMAND
        write with bus mastering on, the end of the RCTL hold): each queued frame goes to
        the device's receive as it stands, so a frame queued while the receiver was off is
        then dropped, and one that finds too few descriptors is dropped with RXO and MPC;
        one that meets the RCTL hold waits on. Once the queue is empty the backend reads
        what waits in its socket, all of it, each frame taken or queued as above.
        """
        if self._rx_queue:
            self._rx_unread.append(bytes(frame))
        else:
            self._rx_arrive(bytes(frame))

    @property
    def frames_waiting(self) -> tuple[int, int]:
        """Frames queued for the device, and frames unread behind them (see :meth:`offer`)."""
        return len(self._rx_queue), len(self._rx_unread)

    def can_receive(self) -> bool:
        """Whether the device takes a new frame now (observed in QEMU 10.2.2): the receiver
        enabled, the link up, bus mastering on, a free descriptor, no RCTL hold."""
        return bool(
            self.reg("RCTL") & RCTL_EN
            and self.reg("STATUS") & _STATUS_LU
            and self.pci.config_read_raw(0x04, 2) & COMMAND_MASTER
            and rx_free(self)
            and self._rx_hold_until_ns is None
        )

    def _rx_arrive(self, frame: bytes) -> None:
        """The backend read ``frame``: taken if the device can, else queued."""
        if not self._rx_queue and self.can_receive():
            self._rx_take(frame)
        else:
            self._rx_queue.append(frame)

    def _rx_take(self, frame: bytes) -> bool:
        """The device's receive as QEMU's network layer calls it; False: the frame waits."""
        if not self.reg("RCTL") & RCTL_EN:
            if self.provenance is not None:
                self.provenance.note(f"queued frame of {len(frame)} bytes dropped: receiver off")
            return True
        if self._rx_hold_until_ns is not None:
            return False
        self.receive(frame)
        return True

    def _rx_flush(self) -> None:
        """A flush point: the queue to the device, then what waits unread (see :meth:`offer`)."""
        while self._rx_queue:
            if not self._rx_take(self._rx_queue[0]):
                return
            self._rx_queue.popleft()
        while self._rx_unread:
            self._rx_arrive(self._rx_unread.popleft())

    # -- virtual time (the RCTL hold is QEMU's only timer the model has) ----------------------

    def advance(self, ns: int) -> None:
        """Virtual time moved ``ns`` forward: an RCTL hold that came due ends."""
        self._now_ns += ns
        if self._rx_hold_until_ns is not None and self._now_ns >= self._rx_hold_until_ns:
            self._end_rx_hold()

    def settle(self, *, timers: bool = False) -> bool:
        """With ``timers`` (a host without a clock): end an RCTL hold now. True only when
        frames waited on it: a hold that ends with none waiting does nothing a trace could
        show, and a replay must not take QEMU's own work of that moment for it (seen: a
        Linux capture's autonegotiation timer raised LSC while an RCTL hold was pending,
        and the replay compared that interrupt with the model's hold ending)."""
        if timers and self._rx_hold_until_ns is not None:
            waiting = bool(self._rx_queue or self._rx_unread)
            self._end_rx_hold()
            return waiting
        return False

    def _end_rx_hold(self) -> None:
        self._rx_hold_until_ns = None
        with self._doing(lambda: f"the RCTL hold ({RX_HOLD_MS} ms) is over"):
            self._rx_flush()

    def set_link(self, up: bool) -> None:
        """Plug or unplug the cable: STATUS.LU, the PHY's link bits, and an LSC cause."""
        with self._doing(lambda: f"the link went {'up' if up else 'down'} (host side)"):
            status = self.reg("STATUS")
            self.set_reg("STATUS", status | _STATUS_LU if up else status & ~_STATUS_LU)
            bits = _PHY_STATUS_LINK | _PHY_STATUS_AN_DONE
            self.phy.regs[1] = self.phy.regs[1] | bits if up else self.phy.regs[1] & ~bits
            self._raise_causes(1 << ICR_BITS["LSC"])

    # -- explaining (qtrace verify --explain) -------------------------------------------------

    def enable_provenance(self, provenance: Provenance) -> None:
        """Track registers, PHY registers and the EEPROM's output in ``provenance``.

        From then on the hooks narrate what they do (descriptors, frames, PHY and EEPROM
        transactions), reads say which bits they compute, and :meth:`line_reason` says
        why the line moved (:mod:`qtrace.refemu.provenance`).
        """
        self.provenance = provenance
        self._track(provenance)

    def _track(self, provenance: Provenance) -> None:
        self.regs = provenance.track("mmio", self.regs, MAC_REGISTERS.name_at)
        self.phy.regs = provenance.track("phy", self.phy.regs, _phy_name)
        self._eeprom_out = provenance.track(
            "eeprom", {0: int(self.eeprom.do)}, lambda _offset: "the EEPROM's output (DO)"
        )
        self._eeprom_said = self.eeprom.describe()
        mac = Origin(None, "reset", f"loaded from EEPROM words 0-2 (MAC {self.mac.hex(':')})")
        provenance.set_origin("mmio", MAC_REGISTERS.named("RAL[0]").offset, _MASK32, mac)
        provenance.set_origin("mmio", MAC_REGISTERS.named("RAH[0]").offset, 0xFFFF, mac)
        valid = Origin(None, "reset", "AV set: the address loaded from the EEPROM is valid")
        provenance.set_origin("mmio", MAC_REGISTERS.named("RAH[0]").offset, RAH_AV, valid)

    def line_reason(self) -> str:
        """Why INTx has its level: ``ICR & IMS``, or COMMAND's INTx disable."""
        icr, ims = self.reg("ICR"), self.reg("IMS")
        pending = icr & ims
        text = f"ICR {icr:#x} & IMS {ims:#x} = {pending:#x}"
        if pending:
            text += f" ({_causes(pending)})"
        if self.pci.config_read_raw(0x04, 2) & COMMAND_INTX_DISABLE:
            text += "; COMMAND.INTX_DISABLE is set, so the line stays low"
        return text

    def _doing(self, text: Callable[[], str]) -> AbstractContextManager[None]:
        """While explaining, changes in the block carry ``text()``; otherwise nothing."""
        return nullcontext() if self.provenance is None else self.provenance.detail(text())

    # -- DMA and bookkeeping used by the ring code -------------------------------------------

    def dma_read(self, addr: int, size_bytes: int) -> bytes:
        """Read guest memory through the PCI function (needs bus mastering)."""
        return self.pci.dma_read(addr, size_bytes)

    def dma_write(self, addr: int, data: bytes) -> None:
        """Write guest memory through the PCI function (needs bus mastering)."""
        self.pci.dma_write(addr, data)

    def note_unimplemented(self, feature: str) -> None:
        """Count a guest-requested feature the model does not model."""
        self.unimplemented_features[feature] += 1
        logger.debug("e1000 model: %s is not modelled", feature)

    @property
    def ioaddr(self) -> int:
        """The BAR0 offset IOADDR selects for IODATA accesses through the I/O BAR."""
        return self.io_regs[0x00]

    @property
    def irq_level(self) -> bool:
        """True while the INTx line is asserted."""
        return self.irq.level

    # -- internals ------------------------------------------------------------------------------

    def _lookup(self, table: RegisterMap, space: str, offset: int, size: int) -> Reg:
        if size not in (1, 2, 4) or offset % size:
            raise ValueError(
                f"{space} access of {size} bytes at {offset:#x} is not naturally aligned "
                "(QEMU's memory core refuses it before the device sees it)"
            )
        reg = table.at(offset)
        if reg is None:
            raise Unimplemented(
                space, offset, table.name_at(offset), "reserved: no register at this offset"
            )
        if reg.kind is Kind.UNIMPL:
            raise Unimplemented(space, offset, reg.name, reg.note)
        return reg

    def _store(self, reg: Reg, value: int) -> None:
        old = self.regs[reg.offset]
        self.regs[reg.offset] = (old & ~reg.wmask) | (value & reg.wmask)
        if self.provenance is not None:
            self._wrote(reg.name, reg.wmask)

    def _wrote(self, name: str, mask: int) -> None:
        """While explaining: this write determined ``mask``'s bits of ``name``, changed or
        not (a store of the value written, not a merge like ICR's or IMS's)."""
        if self.provenance is not None:
            offset = MAC_REGISTERS.named(name).offset
            self.provenance.set_origin("mmio", offset, mask, self.provenance.origin)

    def _read_by_kind(self, reg: Reg) -> int:
        value = self.regs[reg.offset]
        if reg.kind in (Kind.WO, Kind.ZERO):
            return 0
        if reg.kind is Kind.RC:
            self.regs[reg.offset] = 0
        elif reg.kind is Kind.RC_HIGH:
            self.regs[reg.offset] = 0
            self.regs[reg.offset - 4] = 0
        return value

    def _raise_causes(self, causes: int) -> None:
        if causes:
            self.set_reg("ICR", self.reg("ICR") | causes)
            self._update_irq()

    def _config_written(self, offset: int, size: int) -> None:
        if offset <= 0x05 and offset + size > 0x04:  # COMMAND: INTx disable gates the line
            self._update_irq()
            if self.pci.config_read_raw(0x04, 2) & COMMAND_MASTER:
                self._rx_flush()

    def _update_irq(self) -> None:
        intx_disabled = bool(self.pci.config_read_raw(0x04, 2) & COMMAND_INTX_DISABLE)
        self.irq.set(bool(self.reg("ICR") & self.reg("IMS")) and not intx_disabled)

    def _transmit(self) -> None:
        if not self.reg("TCTL") & TCTL_EN:
            if self.provenance is not None:
                self.provenance.note("TCTL.EN is clear: no transmit pass")
            return
        start = self.reg("TDH")
        with self._doing(lambda: f"transmit pass from TDH {start} to TDT {self.reg('TDT')}"):
            run = run_tx(self, self._tx_pending)
            if self.provenance is not None:
                for line in describe_tx(run):
                    self.provenance.note(line)
        for frame in run.frames:
            self.transmitted.append(frame)
            if self.tx_sink is not None:
                self.tx_sink(frame)
        with self._doing(lambda: f"transmit pass from TDH {start}: {tx_causes(run)}"):
            self._raise_causes(run.causes)

    # -- hooks: registers with side effects ---------------------------------------------------

    def _write_ctrl(self, value: int) -> None:
        # Observed in QEMU 10.2.2: RST only self-clears; no register returns to its
        # reset value and RAL0/RAH0 are not reloaded (the SDM's full reset is not done).
        # Observed too: PHY_RST is stored and resets no PHY register.
        self.set_reg("CTRL", value & ~CTRL_RST)
        self._wrote("CTRL", _MASK32)
        if value & CTRL_RST and self.provenance is not None:
            self.provenance.note("RST self-clears and resets nothing (observed in QEMU 10.2.2)")

    def _read_eecd(self) -> int:
        # Observed in QEMU 10.2.2: EE_GNT reads 1 whether or not EE_REQ is set.
        stored = self.reg("EECD")
        if self.provenance is not None:
            self.provenance.computes(
                _EECD_GNT | _EECD_PRES,
                "always 1: an EEPROM is present, and access is granted whatever EE_REQ is "
                "(observed in QEMU 10.2.2)",
            )
            self.provenance.computes(
                _EECD_DO, f"the EEPROM's output: {self.eeprom.describe()}", ("eeprom", 0, 3)
            )
        return stored | _EECD_GNT | _EECD_PRES | (_EECD_DO if self.eeprom.do else 0)

    def _write_eecd(self, value: int) -> None:
        self.set_reg("EECD", value & _EECD_WRITABLE)
        self.eeprom.pins(sk=bool(value & 1), cs=bool(value & 2), di=bool(value & 4))
        if self.provenance is not None:
            self._wrote("EECD", _EECD_WRITABLE)
            self._narrate_eeprom(self.provenance)

    def _narrate_eeprom(self, provenance: Provenance) -> None:
        """Say what the pins did to the EEPROM; its output now has this write's origin."""
        said = self.eeprom.describe()
        if said == self._eeprom_said:
            return
        self._eeprom_said = said
        provenance.note(f"EEPROM: {said}")
        with provenance.detail(f"EEPROM: {said}"):
            self._eeprom_out[0] = int(self.eeprom.do)
            provenance.set_origin("eeprom", 0, 1, provenance.origin)

    def _read_eerd(self) -> int:
        # QEMU 10.2.2 stores all 32 bits written. Without START a read returns them as
        # written (no DONE, no data). With START the read completes at once: START clear,
        # DONE set, and the word at the address (everything above bit 7, so stray high
        # bits make an address past the EEPROM, which completes with no data).
        stored = self.reg("EERD")
        if not stored & EERD_START:
            return stored
        rest = stored & ~EERD_START
        address = rest >> 8
        data = self.eeprom_words[address] if address < EEPROM_WORDS else 0
        if self.provenance is not None:
            word = (
                f"EEPROM word {address:#x} = {data:#06x}"
                if address < EEPROM_WORDS
                else f"address {address:#x} is past the {EEPROM_WORDS}-word EEPROM: no data"
            )
            self.provenance.computes(
                EERD_START | EERD_DONE | 0xFFFF << 16,
                f"START was written: the read completes at once (START clear, DONE set); {word}",
            )
        return rest | EERD_DONE | data << 16

    def _write_eerd(self, value: int) -> None:
        self.set_reg("EERD", value)
        self._wrote("EERD", _MASK32)

    def _write_mdic(self, value: int) -> None:
        op = (value >> 26) & 0x3
        phy_address, number = (value >> 21) & 0x1F, (value >> 16) & 0x1F
        if phy_address != PHY_ADDRESS:
            # Observed in QEMU 10.2.2: a transaction to another PHY address leaves the
            # previous MDIC contents and only adds ERROR (and READY); IE raises no MDAC
            # (qtest, issue 13: every opcode at PHY addresses 2 and 7).
            with self._doing(lambda: f"no PHY at address {phy_address}: ERROR and READY added"):
                self.set_reg("MDIC", self.reg("MDIC") | _MDIC_ERROR | _MDIC_READY)
            return
        # Observed in QEMU 10.2.2 (qtest, issue 13): MDIC keeps all 32 bits written, bit 31
        # and a written ERROR included, and adds READY. A read (opcode 1xb: 11b reads like
        # 10b) replaces the data with the PHY register's, or adds ERROR when the PHY has no
        # such register (the data stays as written). A write adds ERROR when the register
        # does not exist or is read-only. Opcode 00b does nothing (no ERROR).
        stored = value | _MDIC_READY
        name = _phy_name(number)
        what = "opcode 00b: no transaction (no ERROR)"
        if op & _MDIC_OP_READ:
            result = self.phy.read(phy_address, number)
            stored = stored | _MDIC_ERROR if result.error else (stored & ~0xFFFF) | result.data
            what = (
                f"PHY read of register {number:#04x}: the PHY has none, ERROR set"
                if result.error
                else f"PHY read: DATA = {name} = {result.data:#06x} ({self._phy_origin(number)})"
            )
        elif op == _MDIC_OP_WRITE:
            with self._doing(lambda: f"PHY write of {value & 0xFFFF:#06x} to {name}"):
                error = self.phy.write(phy_address, number, value & 0xFFFF).error
            if error:
                stored |= _MDIC_ERROR
            what = f"PHY write to {name}" + (
                ": absent or read-only, ERROR set" if error else " done"
            )
        with self._doing(lambda: f"{what}; READY set"):
            self.set_reg("MDIC", stored)
            self._wrote("MDIC", _MASK32)
        if value & _MDIC_IE:
            with self._doing(lambda: "IE was set: the completed MDI/O access raises MDAC"):
                self._raise_causes(1 << ICR_BITS["MDAC"])

    def _phy_origin(self, number: int) -> str:
        """Where a PHY register's value came from (explaining only)."""
        if self.provenance is None:
            return ""
        latest = self.provenance.latest("phy", number, 0xFFFF)
        return "its reset value" if latest.seq is None else f"last written by {latest}"

    def _read_icr(self) -> int:
        value = self.reg("ICR")
        self.set_reg("ICR", 0)
        self._update_irq()
        return value

    def _write_icr(self, value: int) -> None:
        self.set_reg("ICR", self.reg("ICR") & ~value)
        self._update_irq()

    def _write_ics(self, value: int) -> None:
        self._raise_causes(value)

    def _read_ics(self) -> int:
        if self.provenance is not None:
            self.provenance.computes(
                _MASK32,
                "ICS reads return ICR's pending causes, not cleared",
                ("mmio", _ICR_OFFSET, 0),
            )
        return self.reg("ICR")

    def _write_ims(self, value: int) -> None:
        self.set_reg("IMS", self.reg("IMS") | value)  # all 32 bits kept (observed)
        self._update_irq()

    def _write_imc(self, value: int) -> None:
        self.set_reg("IMS", self.reg("IMS") & ~value)
        self._update_irq()

    def _write_tctl(self, value: int) -> None:
        self._store(MAC_REGISTERS.named("TCTL"), value)
        self._transmit()

    def _write_rctl(self, value: int) -> None:
        self.set_reg("RCTL", value)
        self._wrote("RCTL", _MASK32)
        # Observed in QEMU 10.2.2: every RCTL write holds receive for RX_HOLD_MS (a timer
        # deadline in whole ms of virtual time).
        self._rx_hold_until_ns = (self._now_ns // _MS_NS + RX_HOLD_MS) * _MS_NS
        if self.provenance is not None:
            self.provenance.note(f"receive held for {RX_HOLD_MS} ms (observed in QEMU 10.2.2)")

    def _write_rdt(self, value: int) -> None:
        self.set_reg("RDT", value & 0xFFFF)
        self._wrote("RDT", _MASK32)
        if rx_free(self):  # observed: an RDT write that leaves no free descriptor flushes not
            self._rx_flush()

    def _write_tdt(self, value: int) -> None:
        self.set_reg("TDT", value & 0xFFFF)
        self._wrote("TDT", _MASK32)
        self._transmit()


_READ_HOOKS: dict[str, Callable[[E1000], int]] = {
    "EECD": E1000._read_eecd,
    "EERD": E1000._read_eerd,
    "ICR": E1000._read_icr,
    "ICS": E1000._read_ics,
}
_WRITE_HOOKS: dict[str, Callable[[E1000, int], None]] = {
    "CTRL": E1000._write_ctrl,
    "EECD": E1000._write_eecd,
    "EERD": E1000._write_eerd,
    "MDIC": E1000._write_mdic,
    "ICR": E1000._write_icr,
    "ICS": E1000._write_ics,
    "IMS": E1000._write_ims,
    "IMC": E1000._write_imc,
    "TCTL": E1000._write_tctl,
    "TDT": E1000._write_tdt,
    "RCTL": E1000._write_rctl,
    "RDT": E1000._write_rdt,
}
