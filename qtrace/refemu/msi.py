"""The MSI capability (PCI 3.0, 6.8.1) of a function with one vector.

Why a class of its own: edu signals through MSI when the guest enables it, and any later
model with MSI needs the same bytes and rules. Layout (64-bit address, no per-vector
masking): Message Control at +2 (bit 0 enable, bits 3:1 vectors capable, 6:4 vectors
enabled, bit 7 64-bit capable), Message Address at +4 (bits 1:0 reserved 0), Message Upper
Address at +8, Message Data at +0xC. While MSI is enabled the function must not use its INTx
(6.8.1.3), so enabling it deasserts the pin.

Observed in QEMU 10.2.2 (edu, one vector): Multiple Message Enable takes any value while
MSI is disabled, and a write that leaves MSI enabled cuts it down to Multiple Message
Capable (writing 0x0070 reads back 0x00f0, then 0x0071 reads 0x0081; the spec only says
software must not enable more than requested); the address keeps bits 31:2, the upper
address all 32, the data 16 bits; a message is a dword write of the data, by bus master
(none while bus mastering is off).
"""

from __future__ import annotations

from qtrace.refemu.capability import Capability, EnabledByControl

__all__ = ["MSI_CAP_ID", "Msi"]

MSI_CAP_ID = 0x05
_CONTROL, _ADDRESS, _UPPER, _DATA = 2, 4, 8, 0xC
_ENABLE = 1 << 0
_ENABLED_VECTORS = 0x7 << 4  # Multiple Message Enable
_ADDRESS_64 = 1 << 7


class Msi(EnabledByControl):
    """A one-vector, 64-bit MSI capability at ``offset`` of configuration space.

    ``bind`` it to its function (after the function exists); ``on_enable`` runs when the
    guest sets the enable bit (the device then stops using INTx).
    """

    enable_bit = _ENABLE

    def __init__(self, offset: int) -> None:
        super().__init__()
        self.offset = offset
        self.control_at = offset + _CONTROL

    def capability(self) -> Capability:
        """The structure's power-on bytes and writable bits."""
        body = _ADDRESS_64.to_bytes(2, "little") + bytes(4 + 4 + 2)
        wmask = (
            (_ENABLE | _ENABLED_VECTORS).to_bytes(2, "little")
            + (0xFFFF_FFFC).to_bytes(4, "little")
            + (0xFFFF_FFFF).to_bytes(4, "little")
            + (0xFFFF).to_bytes(2, "little")
        )
        return Capability(MSI_CAP_ID, self.offset, body, wmask)

    def reset(self) -> None:
        """Forget the enable state (the function's configuration was reset)."""
        self._was_enabled = False

    def message(self) -> tuple[int, int]:
        """The (address, data) the guest programmed."""
        address = self._read(_ADDRESS, 4) | self._read(_UPPER, 4) << 32
        return address, self._read(_DATA, 2)

    def notify(self) -> bool:
        """Send the message if MSI is enabled; False (nothing sent) when it is not."""
        if not self.enabled or self._function is None:
            return False
        address, data = self.message()
        self._function.msi_write(address, data)
        return True

    def _read(self, at: int, size: int) -> int:
        if self._function is None:
            return 0
        return self._function.config_read_raw(self.offset + at, size)

    def _control_written(self) -> None:
        if self.enabled and self._function is not None:  # one vector capable: none more
            self._function.config_put(self.control_at, 2, self.control & ~_ENABLED_VECTORS)
