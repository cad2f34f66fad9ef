"""Guests that qtrace boots to make a device do something worth tracing.

Today this is the probe guest: a bare-metal multiboot ELF32 (``probe/``, C and a little
assembly, built inside the capture image with ``make -C <this dir>/probe OUT=<dir>``)
that drives one PCI device and reports every access it makes on the serial port
(parsed by :mod:`qtrace.guests.probe_output`). The constants below are the guest's
side of the contract with the launcher: which ports it uses and how QEMU must be
started for it. They live here, next to the sources, so a change to the guest and to
its expectations land in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "DEBUGCON_IOBASE",
    "DEBUG_EXIT_IOBASE",
    "DEBUG_EXIT_OK_STATUS",
    "PROBE_ELF_NAME",
    "PROBE_SOURCE_DIR",
    "PROBE_STARTED_MARKER",
    "Q35_ECAM_BASE",
    "PROBE_SEQUENCES",
    "probe_append",
]

PROBE_SOURCE_DIR: Path = Path(__file__).resolve().parent / "probe"
"""Sources and Makefile of the probe guest (mount read-only; the build writes only OUT)."""

PROBE_ELF_NAME = "probe.elf"
"""What ``make OUT=<dir>`` produces inside ``<dir>``."""

PROBE_STARTED_MARKER = b"Q"
"""Byte written to the isa-debugcon port before anything else: the guest is running."""

DEBUGCON_IOBASE = 0xE9
"""``-device isa-debugcon,iobase=0xe9`` receives :data:`PROBE_STARTED_MARKER`."""

DEBUG_EXIT_IOBASE = 0xF4
"""``-device isa-debug-exit,iobase=0xf4,iosize=0x04``: the guest writes 0 there when done."""

DEBUG_EXIT_OK_STATUS = 1
"""QEMU's exit status after the guest writes 0 to isa-debug-exit: ``(0 << 1) | 1``.
The guest writes 0 whether it passed or failed; the verdict is the serial ``DONE`` line."""

Q35_ECAM_BASE = 0xB000_0000
"""Where SeaBIOS programs q35's PCIEXBAR (QEMU's default); pass as ``mmcfg=`` on q35."""

PROBE_SEQUENCES: tuple[str, ...] = tuple(
    sorted(path.stem.removeprefix("seq_") for path in PROBE_SOURCE_DIR.glob("seq_*.c"))
)
"""The register sequences compiled into the probe guest, one ``probe/seq_<name>.c`` each (the
sources are the list); a device pack names one of them as its ``probe_sequence``."""


def probe_append(
    target: str,
    seq: str,
    *,
    mmcfg: int | None = None,
    count: int = 0,
    quiet: bool = False,
    extra: Sequence[str] = (),
) -> str:
    """Build the ``-append`` string the probe guest parses.

    Args:
        target: PCI address ``BB:DD.F`` of the device under test (hex, e.g. ``00:05.0``).
        seq: which register sequence to run.
        mmcfg: ECAM base for config accesses (q35: :data:`Q35_ECAM_BASE`); ``None`` uses
            ports 0xCF8/0xCFC.
        count: extra rounds of a sequence's quiet read loop (only sequences that have one use it).
        quiet: do not print ACC lines for those extra rounds (they are counted instead).
        extra: more ``key=value`` words, from the device's pack (``[guests] probe_args``).

    Returns:
        Space-separated ``key=value`` words.

    Raises:
        ValueError: an argument the guest would reject (caught early, with a reason).
    """
    parts = target.split(":")
    if len(parts) != 2 or len(parts[0]) != 2 or len(parts[1]) != 4 or parts[1][2] != ".":
        raise ValueError(f"target must look like BB:DD.F, got {target!r}")
    try:
        bus, dev, fn = int(parts[0], 16), int(parts[1][:2], 16), int(parts[1][3], 16)
    except ValueError as exc:
        raise ValueError(f"target must be hex BB:DD.F, got {target!r}") from exc
    if bus > 0xFF or dev > 31 or fn > 7:
        raise ValueError(f"target out of range: {target!r}")
    if seq not in PROBE_SEQUENCES:
        raise ValueError(f"unknown sequence {seq!r}; the probe has {', '.join(PROBE_SEQUENCES)}")
    if count < 0 or count > 0xFFFF_FFFF:
        raise ValueError(f"count out of range: {count}")
    words = [f"target={target}", f"seq={seq}"]
    if mmcfg is not None:
        if mmcfg <= 0 or mmcfg > 0xFFFF_FFFF or mmcfg & 0xFFFFF:
            raise ValueError(f"mmcfg must be a 1 MiB-aligned 32-bit address, got {mmcfg:#x}")
        words.append(f"mmcfg={mmcfg:#x}")
    if count:
        words.append(f"count={count}")
    if quiet:
        words.append("quiet=1")
    for word in extra:
        if "=" not in word or " " in word:
            raise ValueError(f"a probe argument is one key=value word, got {word!r}")
        words.append(word)
    return " ".join(words)
