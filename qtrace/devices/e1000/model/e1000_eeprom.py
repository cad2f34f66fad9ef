"""The e1000's serial EEPROM: its 64-word image and the Microwire bit-bang protocol.

Why: drivers learn the MAC address and checksum from the EEPROM, either through EERD
(one register write, one read) or by toggling EECD pins one clock at a time (older
drivers and iPXE). The 82540EM uses a 1 Kbit (64 x 16) Microwire part (93C46 class,
SDM 5.3 and 13.4.3): with CS high the driver clocks in a start bit, a 2-bit opcode
(read = 10b) and a 6-bit address on DI, sampled on SK rising edges; the SDM has the part
drive a dummy 0 and then the word's 16 bits, MSB first, on DO, and keep going with the
next word while CS stays high. QEMU's timing of DO differs, see :class:`MicrowireEeprom`.

The image follows the SDM's map (5.6): words 0-2 the MAC address (low byte first),
0x0B-0x0E subsystem/vendor ids, and word 0x3F chosen so all 64 words sum to 0xBABA.
Words the map leaves to the OEM hold the values QEMU 10.2.2 answers (observed through
EERD under qtest); words QEMU leaves erased are 0xFFFF.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["CHECKSUM_TARGET", "CHECKSUM_WORD", "EEPROM_WORDS", "MicrowireEeprom", "build_image"]

EEPROM_WORDS = 64
CHECKSUM_WORD = 0x3F
CHECKSUM_TARGET = 0xBABA
_ADDR_BITS = 6
_OPCODE_READ = 0b110  # start bit + opcode 10b

# Word -> (value, source). MAC words are added by build_image. The words the SDM leaves
# to the OEM hold what QEMU 10.2.2 answers through EERD (read under qtest, all 64 words);
# the rest of the image (0xFFFF) is an erased part.
_OBSERVED = "OEM word observed in QEMU 10.2.2 (EERD under qtest)"
_FIXED_WORDS: Mapping[int, tuple[int, str]] = {
    0x03: (0x0000, _OBSERVED), 0x05: (0x0000, _OBSERVED), 0x06: (0x0000, _OBSERVED),
    0x07: (0x0000, _OBSERVED), 0x08: (0x3000, _OBSERVED), 0x09: (0x1000, _OBSERVED),
    0x0A: (0x6403, "initialization control 1 (SDM 5.6.4); value observed in QEMU 10.2.2"),
    0x0B: (0x100E, "subsystem id (SDM 5.6.8)"),
    0x0C: (0x8086, "subsystem vendor id (SDM 5.6.9)"),
    0x0D: (0x100E, "device id (SDM 5.6.10)"),
    0x0E: (0x8086, "vendor id (SDM 5.6.11)"),
    0x0F: (0x3040, "initialization control 2 (SDM 5.6.12); value observed in QEMU 10.2.2"),
    0x10: (0x0008, _OBSERVED), 0x11: (0x2000, _OBSERVED), 0x12: (0x7E14, _OBSERVED),
    0x13: (0x0048, _OBSERVED), 0x14: (0x1000, _OBSERVED), 0x15: (0x00D8, _OBSERVED),
    0x16: (0x0000, _OBSERVED), 0x17: (0x2700, _OBSERVED), 0x18: (0x6CC9, _OBSERVED),
    0x19: (0x3150, _OBSERVED), 0x1A: (0x0722, _OBSERVED), 0x1B: (0x040B, _OBSERVED),
    0x1C: (0x0984, _OBSERVED), 0x1D: (0x0000, _OBSERVED), 0x1E: (0xC000, _OBSERVED),
    0x1F: (0x0706, _OBSERVED), 0x20: (0x1008, _OBSERVED), 0x21: (0x0000, _OBSERVED),
    0x22: (0x0F04, _OBSERVED), 0x23: (0x7FFF, _OBSERVED), 0x24: (0x4D01, _OBSERVED),
    0x30: (0x0100, _OBSERVED), 0x31: (0x4000, _OBSERVED), 0x32: (0x121C, _OBSERVED),
}  # fmt: skip


def build_image(mac: bytes, overrides: Mapping[int, int] | None = None) -> list[int]:
    """The 64-word EEPROM image for ``mac``, with a valid checksum word.

    Args:
        mac: Six bytes of Ethernet address.
        overrides: Extra ``word -> value`` settings (not the checksum word).

    Returns:
        64 words whose sum modulo 2**16 is 0xBABA.
    """
    if len(mac) != 6:
        raise ValueError(f"a MAC address has 6 bytes, got {len(mac)}")
    words = [0xFFFF] * EEPROM_WORDS
    for index, (value, _source) in _FIXED_WORDS.items():
        words[index] = value
    for i in range(3):
        words[i] = mac[2 * i] | (mac[2 * i + 1] << 8)
    for index, value in (overrides or {}).items():
        if index == CHECKSUM_WORD or not 0 <= index < EEPROM_WORDS:
            raise ValueError(f"EEPROM word {index:#x} cannot be overridden")
        words[index] = value & 0xFFFF
    words[CHECKSUM_WORD] = (CHECKSUM_TARGET - sum(words[:CHECKSUM_WORD])) & 0xFFFF
    return words


class MicrowireEeprom:
    """The pin-level state machine behind EECD's SK/CS/DI/DO bits.

    The command (start bit, opcode, address) is sampled on SK rising edges with CS high.
    How DO behaves follows QEMU 10.2.2 (observed under qtest and in the Linux driver's
    capture), where the SDM's "dummy 0, then data on rising edges" is not what is seen:

    * CS rising drives DO to 1, and it stays 1 while the command is clocked in;
    * the rising edge that completes a read command places the output at the bit before
      the addressed word's D15 in the sequential stream (D0 of the previous word,
      wrapping) and drives it on DO;
    * each SK falling edge with CS high then drives the next bit (D15 first); rising
      edges do not change DO, so a driver that reads after raising SK sees D15, D14...;
    * CS falling keeps DO's level.
    """

    def __init__(self, words: list[int]) -> None:
        self.words = words
        self.reset()

    def reset(self) -> None:
        """Deselect the part and drop any half-shifted command."""
        self._sk = False
        self._cs = False
        self._shift_in = 0
        self._bits_in = 0
        self._reading = False
        self._position = 0  # bit index in the 1024-bit stream, word-major, MSB first
        self.do = True  # observed in QEMU 10.2.2: EECD.DO reads 1 while idle

    def pins(self, sk: bool, cs: bool, di: bool) -> None:
        """Apply new pin levels."""
        rising = sk and not self._sk
        falling = self._sk and not sk
        self._sk = sk
        if not cs:
            self._cs = False
            self._shift_in = self._bits_in = 0
            self._reading = False
            return  # observed in QEMU 10.2.2: DO keeps its level when CS drops
        if not self._cs:  # CS rising: a new command begins
            self._cs = True
            self._shift_in = self._bits_in = 0
            self._reading = False
            self.do = True  # observed in QEMU 10.2.2
        if self._reading:
            if falling:  # observed in QEMU 10.2.2: data changes on the falling edge
                self._drive(self._position + 1)
        elif rising:
            self._clock_in(di)

    def _clock_in(self, di: bool) -> None:
        if self._bits_in == 0 and not di:
            return  # leading zeros before the start bit are ignored
        self._shift_in = (self._shift_in << 1) | int(di)
        self._bits_in += 1
        if self._bits_in == 3 + _ADDR_BITS:
            opcode = self._shift_in >> _ADDR_BITS
            if opcode == _OPCODE_READ:
                self._reading = True
                # Observed in QEMU 10.2.2: DO shows the stream bit before the word's D15.
                self._drive(16 * (self._shift_in & (EEPROM_WORDS - 1)) - 1)
            # write/erase opcodes are accepted and ignored: QEMU's EEPROM is read-only

    def describe(self) -> str:
        """The interface's state in words (for ``--explain``)."""
        level = int(self.do)
        if not self._cs:
            return f"deselected, DO holds {level}"
        if not self._reading:
            if not self._bits_in:
                return f"selected, waiting for a start bit (DO {level})"
            bits = f"{self._bits_in} of {3 + _ADDR_BITS}"
            return f"selected, {bits} command bits clocked in (DO {level})"
        word = self._position // 16
        return (
            f"reading: DO = {level} is D{15 - self._position % 16} of word {word:#04x} "
            f"({self.words[word]:#06x})"
        )

    def _drive(self, position: int) -> None:
        self._position = position % (16 * EEPROM_WORDS)
        word = self.words[self._position // 16]
        self.do = bool((word >> (15 - self._position % 16)) & 1)
