"""PCI capability structures in configuration space, as data.

Why: a capability (MSI, MSI-X, a vendor-specific structure) is bytes at an offset with
some bits writable, linked into a list that STATUS.CAP_LIST and the pointer at 0x34
announce (PCI 3.0, 6.7). A model describes each one as a :class:`Capability` and the PCI
function lays them out on every reset, so the list a guest walks is the one the model
declares, in the declared order (QEMU links the last one it adds first, so the order is
part of what the model states).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the PCI function imports this module
    from qtrace.refemu.pci import PciFunction

__all__ = [
    "CAPABILITIES_POINTER",
    "CAPABILITY_NAMES",
    "Capability",
    "EnabledByControl",
    "install_capabilities",
]

CAPABILITIES_POINTER = 0x34
CAPABILITY_NAMES = {  # capability IDs (PCI Code and ID Assignment, capability IDs)
    0x01: "power management",
    0x05: "MSI",
    0x09: "vendor-specific",
    0x10: "PCI Express",
    0x11: "MSI-X",
}


@dataclass(frozen=True)
class Capability:
    """One capability: its ID, where it sits, its bytes after the ID and next pointer.

    Attributes:
        cap_id: The capability ID (0x05 MSI, 0x09 vendor-specific, 0x11 MSI-X).
        offset: Its offset in configuration space (dword aligned, at least 0x40).
        body: The bytes from offset + 2 on (their power-on values).
        wmask: The writable bits of ``body``, byte for byte (shorter: the rest read-only).
    """

    cap_id: int
    offset: int
    body: bytes
    wmask: bytes = b""

    @property
    def length(self) -> int:
        """Bytes the structure occupies, ID and next pointer included."""
        return 2 + len(self.body)

    @property
    def name(self) -> str:
        """``MSI capability at 0x40`` (what explanations call its bytes)."""
        kind = CAPABILITY_NAMES.get(self.cap_id, f"capability {self.cap_id:#04x}")
        return f"{kind} capability at {self.offset:#x}"

    def __post_init__(self) -> None:
        if self.offset < 0x40 or self.offset % 4 or self.offset + self.length > 0x100:
            raise ValueError(f"capability {self.cap_id:#x} does not fit at {self.offset:#x}")
        if len(self.wmask) > len(self.body):
            raise ValueError(f"capability {self.cap_id:#x}: wmask longer than its body")


def install_capabilities(
    config: bytearray, wmask: bytearray, capabilities: Sequence[Capability]
) -> None:
    """Write ``capabilities`` into ``config`` (and their writable bits into ``wmask``),
    linked in list order, with the capabilities pointer at 0x34 on the first."""
    config[CAPABILITIES_POINTER] = capabilities[0].offset if capabilities else 0
    wmask[CAPABILITIES_POINTER] = 0
    for index, cap in enumerate(capabilities):
        following = capabilities[index + 1].offset if index + 1 < len(capabilities) else 0
        start, body_at = cap.offset, cap.offset + 2
        config[start : start + 2] = bytes((cap.cap_id, following))
        config[body_at : body_at + len(cap.body)] = cap.body
        mask = cap.wmask.ljust(len(cap.body), b"\0")
        wmask[start : start + 2] = b"\0\0"
        wmask[body_at : body_at + len(mask)] = mask


class EnabledByControl:
    """A capability whose Message Control word has an enable bit (MSI, MSI-X).

    Why shared: both are bound to their function after it exists, watch guest writes to
    their control word, and tell the device on each 0 -> 1 of the enable bit (the device
    then stops using INTx). Subclasses say where the control word is, which bit enables,
    and what else a control write does (:meth:`_control_written`).
    """

    control_at: int  # the control word's offset in configuration space
    enable_bit: int

    def __init__(self) -> None:
        self._function: PciFunction | None = None
        self._on_enable: Callable[[], None] | None = None
        self._was_enabled = False

    def bind(self, function: PciFunction, on_enable: Callable[[], None] | None = None) -> None:
        """Attach to ``function``; ``on_enable`` runs on each 0 -> 1 of the enable bit."""
        self._function = function
        self._on_enable = on_enable
        function.config_listeners.append(self._config_written)

    @property
    def control(self) -> int:
        """The control word as the guest last left it."""
        if self._function is None:
            return 0
        return self._function.config_read_raw(self.control_at, 2)

    @property
    def enabled(self) -> bool:
        return bool(self.control & self.enable_bit)

    def _control_written(self) -> None:
        """What the capability does after a guest write to its control word."""

    def _config_written(self, offset: int, size: int) -> None:
        if not (offset <= self.control_at + 1 and offset + size > self.control_at):
            return
        self._control_written()
        enabled = self.enabled
        if enabled and not self._was_enabled and self._on_enable is not None:
            self._on_enable()
        self._was_enabled = enabled
