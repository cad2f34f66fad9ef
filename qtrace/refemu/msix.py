"""MSI-X (PCI 3.0, 6.8.2): the capability, the vector table and the pending-bit array.

Why a class of its own: every virtio-pci device signals through MSI-X, and so do many other
PCI devices; the table and PBA live in a BAR of the device's choice. The rules followed:

* the capability's Message Control holds the table size minus one (read-only), Function
  Mask (bit 14) and MSI-X Enable (bit 15); the Table and PBA dwords give offset and BIR;
* a table entry is Message Address (low, high), Message Data and Vector Control, whose
  bit 0 masks the vector; every vector is masked at reset (6.8.2.9);
* a message for a masked vector (its own mask, or the function mask) is not sent: its
  pending bit is set instead, and the message is sent, and the bit cleared, as soon as the
  vector is unmasked while MSI-X is enabled (6.8.2.10); the PBA is read-only;
* while MSI-X is enabled the function must not use INTx (6.8.2), so enabling it
  deasserts the pin.

Accesses (6.8.2: software uses dword or, for the table, qword accesses), as QEMU 10.2.2
takes them (observed): a dword at a dword offset; a qword as two dwords, low first; a 1- or
2-byte access is refused (reads 0, writes dropped). Vector Control keeps all 32 bits
written, though only bit 0 means anything (the others are reserved).
"""

from __future__ import annotations

from qtrace.refemu.capability import Capability, EnabledByControl

__all__ = ["MSIX_CAP_ID", "Msix"]

MSIX_CAP_ID = 0x11
ENTRY_BYTES = 16
_CONTROL = 2
_FUNCTION_MASK = 1 << 14
_ENABLE = 1 << 15
_VECTOR_MASKED = 1 << 0


def _dwords(what: str, offset: int, size: int, limit: int) -> tuple[int, ...]:
    """The dword offsets an access touches: none for a refused narrow one."""
    if size not in (1, 2, 4, 8) or offset % size or offset < 0 or offset + size > limit:
        raise ValueError(f"MSI-X {what}: {size}-byte access at {offset:#x} is not modelled")
    if size < 4:
        return ()
    return (offset, offset + 4) if size == 8 else (offset,)


class _Table:
    """The vector table as a region of its BAR."""

    def __init__(self, msix: Msix) -> None:
        self.msix = msix

    def read(self, offset: int, size: int) -> int:
        value = 0
        for index, at in enumerate(_dwords("table", offset, size, len(self.msix.table))):
            value |= int.from_bytes(self.msix.table[at : at + 4], "little") << (32 * index)
        return value

    def write(self, offset: int, size: int, value: int) -> None:
        for index, at in enumerate(_dwords("table", offset, size, len(self.msix.table))):
            self.msix.write_entry_dword(at, value >> (32 * index) & 0xFFFF_FFFF)


class _Pba:
    """The pending-bit array as a region of its BAR (read-only)."""

    def __init__(self, msix: Msix) -> None:
        self.msix = msix

    def read(self, offset: int, size: int) -> int:
        value = 0
        for index, at in enumerate(_dwords("PBA", offset, size, self.msix.pba_bytes)):
            value |= (self.msix.pending >> (8 * at) & 0xFFFF_FFFF) << (32 * index)
        return value

    def write(self, offset: int, size: int, value: int) -> None:
        _dwords("PBA", offset, size, self.msix.pba_bytes)  # read-only: ignored


class Msix(EnabledByControl):
    """An MSI-X capability at ``offset`` with ``vectors`` table entries.

    Args:
        offset: Where the capability sits in configuration space.
        vectors: Table size (1-2048).
        table_bar, table_offset: Where the table is (BIR and offset, 8-byte aligned).
        pba_bar, pba_offset: Where the pending-bit array is.

    Attributes:
        table: The table's bytes (``vectors`` entries of 16 bytes).
        pending: The pending bits, vector n at bit n.
        table_region, pba_region: The two regions, for the device's BAR map.
    """

    enable_bit = _ENABLE

    def __init__(
        self,
        offset: int,
        vectors: int,
        table_bar: int,
        table_offset: int,
        pba_bar: int,
        pba_offset: int,
    ) -> None:
        if not 1 <= vectors <= 2048:
            raise ValueError(f"an MSI-X table has 1 to 2048 entries, not {vectors}")
        super().__init__()
        self.offset = offset
        self.control_at = offset + _CONTROL
        self.vectors = vectors
        self.table_bar, self.table_offset = table_bar, table_offset
        self.pba_bar, self.pba_offset = pba_bar, pba_offset
        self.table = bytearray(ENTRY_BYTES * vectors)
        self.pending = 0
        self.table_region = _Table(self)
        self.pba_region = _Pba(self)
        self.reset()

    @property
    def table_bytes(self) -> int:
        return ENTRY_BYTES * self.vectors

    @property
    def pba_bytes(self) -> int:
        """The PBA's size: whole qwords of pending bits (6.8.2.10)."""
        return 8 * ((self.vectors + 63) // 64)

    def capability(self) -> Capability:
        """The structure's power-on bytes and writable bits (Function Mask, Enable)."""
        body = (
            (self.vectors - 1).to_bytes(2, "little")
            + (self.table_offset | self.table_bar).to_bytes(4, "little")
            + (self.pba_offset | self.pba_bar).to_bytes(4, "little")
        )
        wmask = (_FUNCTION_MASK | _ENABLE).to_bytes(2, "little")
        return Capability(MSIX_CAP_ID, self.offset, body, wmask)

    def reset(self) -> None:
        """Every vector masked, nothing pending, address and data 0 (6.8.2.9)."""
        self.table[:] = bytes(len(self.table))
        for vector in range(self.vectors):
            self._put_entry(vector, 12, _VECTOR_MASKED)
        self.pending = 0
        self._was_enabled = False

    # -- state ---------------------------------------------------------------------------

    def masked(self, vector: int) -> bool:
        """The vector is masked by its own bit or by the function mask."""
        return bool(self.control & _FUNCTION_MASK) or bool(self._entry(vector, 12) & _VECTOR_MASKED)

    def message(self, vector: int) -> tuple[int, int]:
        """(address, data) of table entry ``vector``."""
        return self._entry(vector, 0) | self._entry(vector, 4) << 32, self._entry(vector, 8)

    # -- signalling -------------------------------------------------------------------------

    def notify(self, vector: int) -> bool:
        """Signal ``vector``: send its message, or set its pending bit while it is masked.
        False when MSI-X is disabled or the vector does not exist (nothing happened)."""
        if not self.enabled or not 0 <= vector < self.vectors:
            return False
        if self.masked(vector):
            self.pending |= 1 << vector
        else:
            self._send(vector)
        return True

    def write_entry_dword(self, offset: int, value: int) -> None:
        """A guest write to the table; unmasking a vector sends what is pending."""
        vector, field = divmod(offset, ENTRY_BYTES)
        self._put_entry(vector, field, value)
        if field == 12:
            self._deliver_pending()

    # -- internals ---------------------------------------------------------------------------

    def _send(self, vector: int) -> None:
        self.pending &= ~(1 << vector)
        if self._function is not None:
            address, data = self.message(vector)
            self._function.msi_write(address, data)

    def _deliver_pending(self) -> None:
        if not self.enabled:
            return
        for vector in range(self.vectors):
            if self.pending >> vector & 1 and not self.masked(vector):
                self._send(vector)

    def _entry(self, vector: int, field: int) -> int:
        at = vector * ENTRY_BYTES + field
        return int.from_bytes(self.table[at : at + 4], "little")

    def _put_entry(self, vector: int, field: int, value: int) -> None:
        at = vector * ENTRY_BYTES + field
        self.table[at : at + 4] = (value & 0xFFFF_FFFF).to_bytes(4, "little")

    def _control_written(self) -> None:
        self._deliver_pending()  # the function mask may have been lifted
