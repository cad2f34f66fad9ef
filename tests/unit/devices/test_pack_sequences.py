"""Every pack names a probe sequence the guest has, and the request devices get theirs.

The probe guest's sequences are its ``seq_*.c`` files; a pack that named one the guest does
not compile would fail only when a capture starts. ``main.c`` must also accept each name
on its command line, or the guest ends ``DONE fail bad-seq``.
"""

from __future__ import annotations

import pytest

from qtrace.devices import all_packs, pack_or_default
from qtrace.guests import PROBE_SEQUENCES, PROBE_SOURCE_DIR, probe_append


def test_every_pack_names_a_compiled_sequence() -> None:
    for pack in all_packs():
        assert pack.probe_sequence in PROBE_SEQUENCES, pack.name


@pytest.mark.parametrize(
    ("device", "sequence"),
    [
        ("virtio-blk-pci", "virtio"),
        ("virtio-rng-pci", "virtio"),
        ("nvme", "nvme"),
        ("edu", "edu"),
    ],
)
def test_request_devices_choose_their_sequence(device: str, sequence: str) -> None:
    assert pack_or_default(device).probe_sequence == sequence
    assert f"seq={sequence}" in probe_append("00:05.0", sequence)


def test_the_guest_parses_every_sequence_name() -> None:
    main_c = (PROBE_SOURCE_DIR / "main.c").read_text(encoding="utf-8")
    for sequence in PROBE_SEQUENCES:
        assert f'streq_n(val, vlen, "{sequence}")' in main_c, sequence
