"""The e1000's replay quirks: what the trace does not record, and what the host delivered.

Two things a trace replay cannot see directly. Causes QEMU's autonegotiation timer sets
(:class:`TimerCauses`): see there. And frames: a capture with a network backend
(``-netdev``) has QEMU receive frames on its main loop, outside any register access. The
trace records the receive's DMA (descriptor reads, the frame written into the buffers,
descriptor write-backs) and the interrupt line, but not the frame as the backend sent it.
The frame is in the DMA, though: QEMU writes a received frame's bytes into the buffers
and only there (the CRC it counts in the lengths is never written, observed in QEMU
10.2.2), so the buffer writes of one receive, in order, are the frame.
:class:`E1000ReplayQuirks` finds them (``host_input``) and hands the frame to the model
(``deliver``) at the point QEMU received it; the replay then compares the model's DMA and
line with QEMU's like an access's. Since every frame QEMU stored is replayed that way,
the receive-related volatile rules are not needed (``replays_host_frames``) and RXT0,
RXDMT0 and the receive counters are compared strictly. A frame QEMU dropped (a full ring:
RXO) has no DMA and cannot be replayed; its causes and counters then show as mismatches,
which is the honest outcome.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from qtrace.devices.e1000.model import E1000
from qtrace.refemu import PciDevice
from qtrace.refemu.provenance import Origin
from qtrace.trace import Access, Dma, Irq, Trace
from qtrace.verify.volatile import VolatileRule, rules_for

__all__ = ["E1000ReplayQuirks", "ReceivedFrames", "TimerCauses", "received_frames"]

_DESCRIPTOR_BYTES = 16
_STATUS_OFFSET = 12  # of a receive descriptor's status byte
_STA_EOP = 0x02
_ICR_OFFSET = 0xC0  # interrupt cause read (8254x SDM 13.4.17)
_ICS_OFFSET = 0xC8  # interrupt cause set (13.4.18)


class TimerCauses:
    """Interrupt causes QEMU's autonegotiation timer set unrecorded.

    Causes such as LSC are set by QEMU's autonegotiation timer at a moment the trace
    does not record; they show only when the guest next reads ICR, and they raise the
    line as soon as IMS enables them (e.g. an IMS write). If QEMU's next ICR read holds
    timer-set causes the model lacks and the model's mask enables them, the timer fired
    before this access: they are set in the model (as QEMU's timer did, through ICS).
    """

    def __init__(
        self,
        trace: Trace,
        model: PciDevice,
        host_frames: bool,
        volatile: tuple[VolatileRule, ...] = (),
    ) -> None:
        if not isinstance(model, E1000):
            raise TypeError(f"the e1000's replay quirks need its model, not {type(model).__name__}")
        self.nic = model
        self.timer_bits = 0
        for rule in rules_for(volatile, "ICR", 0, host_frames=host_frames):
            if rule.kind == "mask":
                self.timer_bits |= rule.ignore
        icr_reads = [
            a for a in trace.accesses
            if a.space == "mmio" and a.op == "read" and a.offset == _ICR_OFFSET and a.size == 4
        ]  # fmt: skip
        self._icr_read_seqs = [a.seq for a in icr_reads]
        self._icr_read_values = [a.value for a in icr_reads]

    def explains_raised_line(self, access: Access) -> bool:
        """See :class:`TimerCauses`; True when the missing causes were set in the model."""
        index = bisect.bisect_right(self._icr_read_seqs, access.seq)
        if not self.timer_bits or index >= len(self._icr_read_seqs):
            return False
        next_icr = self._icr_read_values[index]
        missing = next_icr & self.timer_bits & ~self.nic.reg("ICR")
        if not missing or not missing & self.nic.reg("IMS"):
            return False
        if self.nic.provenance is None:
            self.nic.mmio_write(_ICS_OFFSET, 4, missing)
            return True
        timer = Origin(
            None,
            "QEMU's autonegotiation timer",
            f"set {missing:#x} before this access, unrecorded: the ICR read at seq "
            f"{self._icr_read_seqs[index]} shows it",
        )
        with self.nic.provenance.acting(timer):
            self.nic.mmio_write(_ICS_OFFSET, 4, missing)
        return True


@dataclass(frozen=True)
class ReceivedFrames:
    """The frames the host delivered in one go, as QEMU wrote them into the buffers.

    ``frames`` are complete only where the DMA records are: a record capped by the
    collector (``truncated``) leaves the rest of its buffer as zeros, and the replay
    compares only the recorded part.
    """

    seq: int
    frames: tuple[bytes, ...]
    truncated: bool = False

    @property
    def count(self) -> int:
        """How many frames (the replay counts them)."""
        return len(self.frames)

    def __str__(self) -> str:
        cut = ", recorded in part" if self.truncated else ""
        if len(self.frames) == 1:
            return f"frame of {len(self.frames[0])} bytes from the host{cut}"
        total = sum(len(f) for f in self.frames)
        return f"{len(self.frames)} frames ({total} bytes) from the host{cut}"


def received_frames(events: list[Irq | Dma]) -> ReceivedFrames | None:
    """The frames these asynchronous events are QEMU receiving, or ``None``.

    Per descriptor QEMU reads it (16 bytes), writes the frame's part into its buffer,
    writes the descriptor back and then its status byte (DD, and EOP on a frame's last
    descriptor): the writes outside the descriptors read are the buffers, and an EOP
    status ends a frame. Several frames come in one go when a flush delivers what QEMU
    held back. Events without a buffer write are not a stored frame.
    """
    dma = [e for e in events if isinstance(e, Dma)]
    descriptors = {e.addr for e in dma if e.op == "read" and e.size == _DESCRIPTOR_BYTES}
    frames: list[bytes] = []
    current = bytearray()
    truncated = False
    first_seq: int | None = None
    for e in dma:
        if e.op != "write":
            continue
        inside = next((d for d in descriptors if d <= e.addr < d + _DESCRIPTOR_BYTES), None)
        if inside is None:
            current += bytes.fromhex(e.data or "").ljust(e.size, b"\0")
            truncated = truncated or e.truncated
            first_seq = e.seq if first_seq is None else first_seq
        elif e.addr == inside + _STATUS_OFFSET and e.size == 1 and _status(e) & _STA_EOP:
            frames.append(bytes(current))
            current = bytearray()
    if current:
        frames.append(bytes(current))
    if not frames or first_seq is None:
        return None
    return ReceivedFrames(first_seq, tuple(frames), truncated)


class E1000ReplayQuirks(TimerCauses):
    """:class:`TimerCauses`, plus the frames the host delivered.

    Frames are replayed when the trace recorded DMA (without it they cannot be seen); then
    the receive rules of ``volatile`` are left out, also for the timer causes.
    """

    def __init__(
        self,
        trace: Trace,
        model: PciDevice,
        host_frames: bool,
        volatile: tuple[VolatileRule, ...] = (),
    ) -> None:
        dma = "dma" in trace.header.arming or any(isinstance(r, Dma) for r in trace.records)
        self.replays_host_frames = host_frames and dma
        super().__init__(trace, model, host_frames and not self.replays_host_frames, volatile)

    def host_input(self, events: list[Irq | Dma]) -> ReceivedFrames | None:
        """See :func:`received_frames`; ``None`` when frames are not replayed."""
        return received_frames(events) if self.replays_host_frames else None

    def deliver(self, frames: ReceivedFrames) -> None:
        """The model takes the frames, in order, as QEMU's device did then."""
        for frame in frames.frames:
            self.nic.receive(frame)


def _status(write: Dma) -> int:
    """The status byte a one-byte descriptor write put there (0 when its bytes were not seen)."""
    return int(write.data or "00", 16)
