"""Discovery and the collector know no device: every device is found from the running QEMU.

Issue #10's rule, checked mechanically: no device model's name (a QOM type, a driver, a
handler prefix) appears in the collector inside gdb or in the host code that configures
it. Device knowledge lives in device packs (``qtrace/devices/<name>/``) and data files.
"""

from __future__ import annotations

import re
from pathlib import Path

from qtrace.devices import all_packs

ROOT = Path(__file__).resolve().parents[3]
DEVICE_BLIND = [
    *sorted((ROOT / "gdbscripts").rglob("*.py")),
    ROOT / "qtrace" / "launch" / "capture.py",
    ROOT / "qtrace" / "launch" / "collector_config.py",
    ROOT / "qtrace" / "discover" / "device.py",
]
# Device models people capture; the packs' names are added from the registry.
DEVICE_NAMES = {"virtio", "nvme", "xhci", "ahci", "ivshmem", "igb", "edu", "vmxnet", "pcnet"}


def test_no_device_is_named_in_discovery_or_the_collector() -> None:
    names = DEVICE_NAMES | {t for pack in all_packs() for t in pack.qom_types}
    pattern = re.compile(r"\b(?:%s)\w*" % "|".join(map(re.escape, sorted(names))), re.I)
    found = {
        f"{path.relative_to(ROOT)}:{number}: {match.group(0)}"
        for path in DEVICE_BLIND
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        for match in pattern.finditer(line)
    }
    assert not found, sorted(found)
