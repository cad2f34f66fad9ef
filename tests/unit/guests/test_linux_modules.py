"""modules.alias matching and modules.dep ordering (qtrace.guests.linux_modules) on an
excerpt of the real files the image's module tree has (``recorded/``), with the modaliases
QEMU 10.2.2's devices showed the linux guest in sysfs. The expected load orders are what
busybox modprobe -D printed for the same modaliases on the same tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from qtrace.guests.linux_modules import Alias, ModuleTree, module_name

RECORDED = Path(__file__).resolve().parent / "recorded"
KERNEL = "linux-6.1.0-50-amd64"

E1000E = "pci:v00008086d000010D3sv00008086sd00000000bc02sc00i00"
E1000 = "pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00"
VIRTIO_NET_PCI = "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00"
VIRTIO_BLK_PCI = "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00"
NVME = "pci:v00001B36d00000010sv00001AF4sd00001100bc01sc08i02"
RTL8139 = "pci:v000010ECd00008139sv00001AF4sd00001100bc02sc00i00"
VIRTIO_PCI_ORDER = ("virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_ring")


@pytest.fixture(scope="module")
def tree() -> ModuleTree:
    return ModuleTree.parse(
        (RECORDED / f"{KERNEL}.modules.alias").read_text(),
        (RECORDED / f"{KERNEL}.modules.dep").read_text(),
    )


@pytest.mark.parametrize(
    ("modalias", "modules", "order"),
    [
        (E1000E, ("e1000e",), ("e1000e",)),
        (E1000, ("e1000",), ("e1000",)),
        (VIRTIO_NET_PCI, ("virtio_pci",), (*VIRTIO_PCI_ORDER, "virtio_pci")),
        (VIRTIO_BLK_PCI, ("virtio_pci",), (*VIRTIO_PCI_ORDER, "virtio_pci")),
        (
            "virtio:d00000001v00001AF4",
            ("virtio_net",),
            ("failover", "net_failover", "virtio", "virtio_ring", "virtio_net"),
        ),
        ("virtio:d00000002v00001AF4", ("virtio_blk",), ("virtio_ring", "virtio", "virtio_blk")),
        ("virtio:d00000004v00001AF4", ("virtio_rng",), ("virtio_ring", "virtio", "virtio_rng")),
        (
            NVME,
            ("nvme",),
            (
                "crc64",
                "crc64_rocksoft",
                "crct10dif_common",
                "crc_t10dif",
                "t10_pi",
                "nvme_core",
                "nvme",
            ),
        ),
    ],
)
def test_the_driver_and_its_load_order(
    tree: ModuleTree, modalias: str, modules: tuple[str, ...], order: tuple[str, ...]
) -> None:
    assert tree.modules_for(modalias) == modules
    assert tree.load_order(modules) == order


def test_the_nvme_line_is_the_class_code_not_an_id(tree: ModuleTree) -> None:
    """NVMe binds by class 01/08/02 whatever the vendor; virtio-blk's class 01/00 does not.
    QEMU's own ID (1b36:0010) has a line too: the driver's quirk table names it."""
    assert tree.matching(NVME) == (
        Alias("pci:v00001B36d00000010sv*sd*bc*sc*i*", "nvme"),
        Alias("pci:v*d*sv*sd*bc01sc08i02*", "nvme"),
    )
    assert tree.modules_for("pci:v00001234d00005678sv00000000sd00000000bc01sc08i02") == ("nvme",)
    assert "nvme" not in tree.modules_for(VIRTIO_BLK_PCI)


def test_a_modalias_can_name_two_modules(tree: ModuleTree) -> None:
    """rtl8139 (10ec:8139) is named by 8139too and 8139cp, as on a real machine; modprobe
    loads both (busybox in the order 8139cp, 8139too) and whichever probes first binds."""
    assert set(tree.modules_for(RTL8139)) == {"8139too", "8139cp"}
    order = tree.load_order(tree.modules_for(RTL8139))
    assert order[0] == "mii" and set(order) == {"mii", "8139too", "8139cp"}


def test_matching_is_case_sensitive_and_whole(tree: ModuleTree) -> None:
    assert tree.modules_for(E1000E.lower()) == ()
    assert tree.modules_for(E1000E[:-3]) == (), "a pattern matches the whole modalias"
    assert tree.modules_for("usb:v8086p10D3d0000dc00dsc00dp00ic02isc00ip00in00") == ()


def test_paths_and_names(tree: ModuleTree) -> None:
    assert tree.paths["nvme_core"] == "kernel/drivers/nvme/host/nvme-core.ko"
    assert module_name("kernel/drivers/char/hw_random/virtio-rng.ko") == "virtio_rng"
    assert module_name("kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko.xz") == "e1000e"
    assert tree.load_order(["not_in_modules_dep"]) == ("not_in_modules_dep",)
