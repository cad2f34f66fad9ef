"""Register decoding per region: a pack's map names only the regions it describes."""

from __future__ import annotations

from typing import Literal

from qtrace.annotate import decode_access
from qtrace.annotate.registers import map_regions, region_of
from qtrace.trace import Access
from qtrace.trace.schema import Region

E1000 = (
    Region("e1000-mmio", 0, 0, 0x20000, "io", handlers={"read": "e1000_mmio_read"}),
    Region("e1000-io", 1, 0, 0x40, "io", space="pio", handlers={"read": "e1000_io_read"}),
    Region("pci-config", None, 0, 256, "pci-config", space="pci-config"),
)
E1000E = (
    Region("e1000e-mmio", 0, 0, 0x20000, "io", handlers={"read": "e1000e_mmio_read"}),
    Region("e1000e-flash", 1, 0, 0x20000, "container"),
    Region("e1000e-io", 2, 0, 32, "io", space="pio"),
    Region("e1000e-msix", 3, 0, 0x4000, "container"),
    Region("msix-table", 3, 0, 80, "io", depth=1, handlers={"read": "msix_table_mmio_read"}),
    Region("msix-pba", 3, 0x2000, 8, "io", depth=1),
)
VIRTIO_NET = (
    Region("virtio-pci", 0, 0, 32, "io", space="pio"),
    Region("virtio-pci", 4, 0, 0x4000, "container"),
    Region("virtio-pci-common-virtio-net", 4, 0, 0x1000, "io", depth=1),
)


Space = Literal["mmio", "pio", "pci-config"]


def _read(space: Space, region: str | None, offset: int, value: int = 0) -> Access:
    return Access(seq=1, op="read", space=space, region=region, offset=offset, size=4, value=value)


def test_traces_without_a_region_map_decode_by_space_as_before() -> None:
    assert decode_access("e1000", _read("mmio", "e1000-mmio", 8, 0x80080783)).name == "STATUS"
    assert decode_access("e1000", _read("mmio", None, 0x4)).name == "unknown@0x4"
    # A pack without a register map (nvme): offsets only; edu's pack has one (issue 13).
    assert decode_access("nvme", _read("mmio", "nvme", 0x4)).name == "unknown@0x4"
    assert decode_access("edu", _read("mmio", "edu-mmio", 0x4)).name == "LIVENESS"


def test_e1000_keeps_its_names_with_a_region_map() -> None:
    status = decode_access("e1000", _read("mmio", "e1000-mmio", 8, 0x80080783), E1000)
    assert status.name == "STATUS" and status.known and "LU" in status.summary()
    assert decode_access("e1000", _read("pio", "e1000-io", 0), E1000).name == "IOADDR"
    assert decode_access("e1000", _read("mmio", "e1000-mmio", 0x4), E1000).name == "unknown@0x4"
    assert decode_access("e1000", _read("pci-config", "pci-config", 0), E1000).name == (
        "VENDOR_ID+DEVICE_ID"
    )


def test_a_packs_map_covers_its_first_bar_not_the_msix_table_inside_another() -> None:
    assert {s: r.name for s, r in map_regions("e1000e", E1000E).items()} == {
        "mmio": "e1000e-mmio",
        "pio": "e1000e-io",
    }
    assert decode_access("e1000e", _read("mmio", "e1000e-mmio", 0), E1000E).name == "CTRL"
    table = decode_access("e1000e", _read("mmio", "msix-table", 0), E1000E)
    assert table.name == "msix-table+0x0" and not table.known


def test_a_device_without_a_pack_is_shown_by_region_and_offset() -> None:
    access = _read("mmio", "virtio-pci-common-virtio-net", 0x14)
    assert decode_access("virtio-net-pci", access, VIRTIO_NET).name == (
        "virtio-pci-common-virtio-net+0x14"
    )
    assert map_regions("virtio-net-pci", VIRTIO_NET) == {}


def test_a_repeated_region_name_is_told_apart_by_space_and_kind() -> None:
    legacy = region_of(_read("pio", "virtio-pci", 0), VIRTIO_NET)
    assert legacy is not None and legacy.bar == 0 and legacy.kind == "io"
    modern = region_of(_read("mmio", "virtio-pci", 0), VIRTIO_NET)
    assert modern is not None and modern.bar == 4
    assert region_of(_read("mmio", "elsewhere", 0), VIRTIO_NET) is None


def test_a_pack_whose_first_bar_is_a_container_describes_no_region_there() -> None:
    regions = (Region("e1000-bar", 0, 0, 0x20000, "container"), *E1000[1:])
    assert set(map_regions("e1000", regions)) == {"pio"}
    assert decode_access("e1000", _read("mmio", "e1000-bar", 8), regions).name == "e1000-bar+0x8"


def test_the_root_port_above_the_device_is_decoded_with_the_bridge_header() -> None:
    def config(offset: int, value: int, size: int = 4) -> Access:
        return Access(
            seq=1,
            op="write",
            space="pci-config",
            region="pci-config",
            offset=offset,
            size=size,
            value=value,
            device="pcie-root-port",
        )

    buses = decode_access("virtio-net-pci", config(0x18, 0x00FF0100), VIRTIO_NET)
    assert buses.name == "pcie-root-port:PRIMARY_BUS..SEC_LATENCY_TIMER"
    assert "SECONDARY_BUS=0x1" in buses.summary() and "SUBORDINATE_BUS=0xff" in buses.summary()
    window = decode_access("virtio-net-pci", config(0x20, 0xC000, 2), VIRTIO_NET)
    assert window.name == "pcie-root-port:MEMORY_BASE" and window.summary() == "ADDRESS=0xc00"
    # The shared part of the header keeps its type 0 names; a type 0 BAR2 is not claimed.
    assert decode_access("e1000", config(0x4, 0x107, 2)).name == "pcie-root-port:COMMAND"
    assert "BAR2" not in decode_access("e1000", config(0x18, 0)).name
    # The captured device's own config space is still the type 0 header.
    own = Access(seq=1, op="read", space="pci-config", offset=0x18, size=4, value=0)
    assert decode_access("virtio-net-pci", own, VIRTIO_NET).name == "BAR2"
