"""Reports for any device: the regions section (from the header's region map), registers shown
by region and offset where no pack's map applies, and the RAM-BAR finding worded per accelerator.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console

from qtrace.devices import PACKS_ENV, clear_registry_cache
from qtrace.report.diff import diff_captures
from qtrace.report.model import CaptureReport, build_report
from qtrace.report.render import region_sentences, render_html, render_markdown
from qtrace.report.terminal import show_renderables
from qtrace.trace import Access, Exit, Frame, Header, Irq, Record, Stack
from qtrace.trace.layout import Memslot
from qtrace.trace.schema import Async, Region

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "traces"

MakeCapture = Callable[[str, Iterable[Record]], Path]

KVM_READ = (
    Frame("memory_region_read_accessor", "system/memory.c", 439),
    Frame("memory_region_dispatch_read", "system/memory.c", 1485),
    Frame("address_space_rw", "system/physmem.c", 3462),
    Frame("kvm_cpu_exec", "accel/kvm/kvm-all.c", 3248),
    Frame("kvm_vcpu_thread_fn", "accel/kvm/kvm-accel-ops.c", 53),
    Frame("qemu_thread_start", "util/qemu-thread-posix.c", 393),
)

VIRTIO_REGIONS = (
    Region("virtio-pci", 0, 0, 32, "io", space="pio", handlers={"read": "virtio_pci_config_read"}),
    Region("virtio-net-pci-msix", 1, 0, 0x1000, "container"),
    Region(
        "msix-table",
        1,
        0,
        64,
        "io",
        depth=1,
        handlers={"read": "msix_table_mmio_read", "write": "msix_table_mmio_write"},
    ),
    Region("msix-pba", 1, 0x800, 8, "io", depth=1, handlers={"read": "msix_pba_mmio_read"}),
    Region("virtio-pci", 4, 0, 0x4000, "container"),
    Region(
        "virtio-pci-common-virtio-net",
        4,
        0,
        0x1000,
        "io",
        depth=1,
        handlers={"read": "virtio_pci_common_read", "write": "virtio_pci_common_write"},
    ),
    Region(
        "virtio-pci-device-virtio-net",
        4,
        0x2000,
        0x1000,
        "io",
        depth=1,
        handlers={"read": "virtio_pci_device_read"},
    ),
    Region(
        "pci-config",
        None,
        0,
        256,
        "pci-config",
        space="pci-config",
        handlers={"config_read": "virtio_read_config", "config_write": "virtio_write_config"},
    ),
)

IVSHMEM_REGIONS = (
    Region("ivshmem-mmio", 0, 0, 256, "io", handlers={"read": "ivshmem_io_read"}),
    Region("qtrace-shm", 2, 0, 4 << 20, "ram"),
    Region("pci-config", None, 0, 256, "pci-config", space="pci-config"),
)


def _access(
    seq: int, region: str, offset: int, handler: str, value: int = 0, op: str = "read"
) -> Access:
    return Access(
        seq,
        "write" if op == "write" else "read",
        "mmio",
        offset,
        4,
        value,
        region=region,
        handler=handler,
        exit_seq=seq - 1,
        stack="s1",
    )


def _virtio_trace() -> list[Record]:
    frames = (Frame("virtio_pci_common_read", "hw/virtio/virtio-pci.c", 1631), *KVM_READ)
    return [
        Header(device="virtio-net-pci", qemu_version="10.2.2", accel="kvm", regions=VIRTIO_REGIONS),
        Stack("s1", frames),
        Exit(1, "KVM_EXIT_MMIO", phys_addr=0xFE004000, len=4, is_write=False),
        _access(2, "virtio-pci-common-virtio-net", 0x0, "virtio_pci_common_read", 1),
        Exit(3, "KVM_EXIT_MMIO", phys_addr=0xFE004014, len=4, is_write=False),
        _access(4, "virtio-pci-common-virtio-net", 0x14, "virtio_pci_common_read", 0xF),
        Exit(5, "KVM_EXIT_MMIO", phys_addr=0xFE001000, len=4, is_write=False),
        _access(6, "msix-table", 0x0, "msix_table_mmio_read"),
        Exit(7, "KVM_EXIT_MMIO", phys_addr=0xFE001000, len=4, is_write=True),
        _access(8, "msix-table", 0x0, "msix_table_mmio_write", 0xFEE00000, op="write"),
    ]


def _ivshmem_trace(accel: str, kind: str = "ram") -> list[Record]:
    regions = tuple(
        Region(r.name, r.bar, r.offset, r.size, kind) if r.bar == 2 else r for r in IVSHMEM_REGIONS
    )
    frames = (Frame("ivshmem_io_read", "hw/misc/ivshmem.c", 240), *KVM_READ)
    return [
        Header(device="ivshmem-plain", qemu_version="10.2.2", accel=accel, regions=regions),
        Stack("s1", frames),
        Exit(1, "KVM_EXIT_MMIO", phys_addr=0xFE000000, len=4, is_write=False),
        _access(2, "ivshmem-mmio", 0x0, "ivshmem_io_read"),
    ]


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def _section(markdown: str, title: str) -> str:
    return markdown.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


@pytest.fixture()
def virtio(make_capture: MakeCapture) -> CaptureReport:
    return build_report(make_capture("virtio-net-pci-kvm", _virtio_trace()))


def test_registers_without_a_pack_are_shown_by_region_and_offset(virtio: CaptureReport) -> None:
    names = [(r.region, r.offset, r.name) for r in virtio.registers]
    # Two regions with an offset 0 stay two rows, in the region map's order.
    assert names == [
        ("msix-table", 0, "msix-table+0x0"),
        ("virtio-pci-common-virtio-net", 0, "virtio-pci-common-virtio-net+0x0"),
        ("virtio-pci-common-virtio-net", 0x14, "virtio-pci-common-virtio-net+0x14"),
    ]
    assert all(r.by_region and not r.known for r in virtio.registers)
    table = next(r for r in virtio.registers if r.region == "msix-table")
    assert (table.reads, table.writes, table.last_value) == (1, 1, 0xFEE00000)


def test_the_region_rows_count_accesses_and_the_handlers_they_hit(virtio: CaptureReport) -> None:
    assert virtio.regions is not None
    rows = {(r.region.name, r.region.bar): r for r in virtio.regions.rows}
    assert len(rows) == len(VIRTIO_REGIONS)
    assert rows["msix-table", 1].handlers_hit == (
        ("msix_table_mmio_read", 1),
        ("msix_table_mmio_write", 1),
    )
    assert (rows["msix-table", 1].reads, rows["msix-table", 1].writes) == (1, 1)
    assert rows["virtio-pci-common-virtio-net", 4].accesses == 2
    assert rows["virtio-pci", 0].accesses == 0 and rows["virtio-pci", 4].accesses == 0
    quiet = [r.region.name for r in virtio.regions.untouched_io]
    assert quiet == ["virtio-pci", "msix-pba", "virtio-pci-device-virtio-net", "pci-config"]


def test_the_markdown_regions_section(virtio: CaptureReport) -> None:
    markdown = render_markdown(virtio)
    section = _section(markdown, "Regions")
    assert markdown.index("## Regions") < markdown.index("## Register accesses")
    assert "| BAR 4 (MMIO) | `virtio-pci` | `0x0` | 16 KiB | container |" in section
    assert "| BAR 0 (I/O) | `virtio-pci` | `0x0` | 32 B | io |" in section
    assert (
        "↳ `msix-table` | `0x0` | 64 B | io | read: `msix_table_mmio_read`, write: "
        "`msix_table_mmio_write` | 2 | `msix_table_mmio_read` x1, `msix_table_mmio_write` x1 |"
    ) in section
    assert "↳ `msix-pba` | `0x800` | 8 B | io |" in section and "none in this capture" in section
    text = _flat(section)
    assert "qtrace has no register map for this device (no device pack)" in text
    assert (
        "No access reached the handlers of these 4 regions in this capture: virtio-pci (BAR 0, "
        "32 B), msix-pba (BAR 1 at +0x800, 8 B), virtio-pci-device-virtio-net (BAR 4 at "
        "+0x2000, 4 KiB), pci-config (configuration space, 256 B)."
    ) in text
    # Nothing RAM-backed here, so nothing is said about memory slots.
    assert "memory slot" not in text
    assert "`virtio-pci-common-virtio-net+0x14`" in _section(markdown, "Register accesses")
    # The sequence diagram names the place once (not "+0x0 virtio-pci-common-virtio-net+0x0").
    assert "guest read 4B @ mmio virtio-pci-common-virtio-net+0x0:" in markdown


def test_html_and_terminal_say_the_same(virtio: CaptureReport) -> None:
    html = render_html(virtio)
    assert '<h2 id="regions">Regions</h2>' in html and "<code>msix-pba</code>" in html
    for line in region_sentences(virtio.regions):  # type: ignore[arg-type]
        assert line in _flat(html)
    console = Console(file=StringIO(), width=200)
    for renderable in show_renderables(virtio, stacks=False):
        console.print(renderable)
    shown = _flat(console.file.getvalue())  # type: ignore[attr-defined]
    assert "Regions (found in the running QEMU)" in shown and "virtio_pci_common_read x2" in shown
    for line in region_sentences(virtio.regions):  # type: ignore[arg-type]
        assert line in shown


def test_a_ram_bar_under_kvm_never_leaves_the_guest(make_capture: MakeCapture) -> None:
    report = build_report(make_capture("ivshmem-kvm", _ivshmem_trace("kvm")))
    assert report.regions is not None
    lines = region_sentences(report.regions)
    ram = [line for line in lines if line.startswith("qtrace-shm")]
    assert ram == [
        "qtrace-shm (BAR 2, 4 MiB) is RAM, not I/O. While the guest has the BAR mapped, QEMU "
        "gives it to KVM as guest memory (a memory slot), so the guest's loads and stores go "
        "straight to the host memory behind it: no exit to QEMU and no QEMU handler. "
        "Accordingly the trace has no access to it."
    ]
    markdown = render_markdown(report)
    assert "| BAR 2 (MMIO) | `qtrace-shm` | `0x0` | 4 MiB | ram |  |  |  |" in markdown
    # The I/O BAR was reached; the configuration space was not: that is said, not the RAM BAR.
    assert lines[-1].startswith("No access reached the handlers of this region in this capture")


def test_a_ram_bar_under_tcg_is_worded_for_tcg(make_capture: MakeCapture) -> None:
    report = build_report(make_capture("ivshmem-tcg", _ivshmem_trace("tcg")))
    assert report.regions is not None
    ram = next(line for line in region_sentences(report.regions) if line.startswith("qtrace-shm"))
    assert "Under TCG the softmmu TLB entries of its pages point at the host memory" in ram
    assert "KVM" not in ram and "memory slot" not in ram
    assert "no device handler (and, as always under TCG, no exit)" in ram


@pytest.mark.parametrize("accel", ["kvm", "tcg"])
def test_a_rom_bar_is_only_said_to_serve_reads(make_capture: MakeCapture, accel: str) -> None:
    report = build_report(make_capture(f"rom-{accel}", _ivshmem_trace(accel, kind="rom")))
    assert report.regions is not None
    rom = next(line for line in region_sentences(report.regions) if line.startswith("qtrace-shm"))
    assert "is ROM" in rom and "reads of it are served from" in rom
    assert "stores" not in rom and "writes" not in rom
    assert ("KVM_CAP_READONLY_MEM" in rom) == (accel == "kvm")


def test_an_unknown_accelerator_gets_no_claim_about_exits(make_capture: MakeCapture) -> None:
    report = build_report(make_capture("ivshmem-hvf", _ivshmem_trace("hvf")))
    assert report.regions is not None
    ram = next(line for line in region_sentences(report.regions) if line.startswith("qtrace-shm"))
    assert (
        ram
        == "qtrace-shm (BAR 2, 4 MiB) is RAM, not I/O. Accordingly the trace has no access to it."
    )


def test_a_pack_names_only_the_regions_it_describes(make_capture: MakeCapture) -> None:
    regions = (
        Region("e1000e-mmio", 0, 0, 0x20000, "io", handlers={"read": "e1000e_mmio_read"}),
        Region("e1000e-io", 2, 0, 32, "io", space="pio"),
        Region("e1000e-msix", 3, 0, 0x4000, "container"),
        Region("msix-table", 3, 0, 80, "io", depth=1, handlers={"read": "msix_table_mmio_read"}),
    )
    frames = (Frame("e1000e_mmio_read", "hw/net/e1000e.c", 200), *KVM_READ)
    records: list[Record] = [
        Header(device="e1000e", qemu_version="10.2.2", accel="kvm", regions=regions),
        Stack("s1", frames),
        Exit(1, "KVM_EXIT_MMIO", phys_addr=0xFEBA0000, len=4, is_write=False),
        _access(2, "e1000e-mmio", 0x0, "e1000e_mmio_read", 0x00140241),
        Exit(3, "KVM_EXIT_MMIO", phys_addr=0xFEBE0000, len=4, is_write=False),
        _access(4, "msix-table", 0x0, "msix_table_mmio_read"),
    ]
    report = build_report(make_capture("e1000e-kvm", records))
    assert [(r.name, r.by_region) for r in report.registers] == [
        ("CTRL", False),
        ("msix-table+0x0", True),
    ]
    assert report.regions is not None
    assert [r.register_map for r in report.regions.rows] == ["e1000e", "e1000e", None, None]
    names = region_sentences(report.regions)[0]
    assert names.startswith(
        "Register names come from the e1000e pack's register map, which describes e1000e-mmio "
        "and e1000e-io;"
    )


def test_traces_without_a_region_map_have_no_regions_section() -> None:
    report = build_report(FIXTURES / "e1000-kvm-10.2.2")
    assert report.regions is None and all(r.region is None for r in report.registers)
    assert "## Regions" not in render_markdown(report)
    assert 'id="regions"' not in render_html(report)


def test_diff_compares_captures_of_devices_without_a_pack(
    make_capture: MakeCapture, virtio: CaptureReport
) -> None:
    a = make_capture("virtio-a", _virtio_trace())
    b = make_capture("ivshmem-b", _ivshmem_trace("kvm"))
    result = diff_captures(a, b)
    assert result.kind == "mmio read"
    statuses = {(row.func, row.status) for row in result.rows}
    assert ("virtio_pci_common_read", "only in A") in statuses
    assert ("ivshmem_io_read", "only in B") in statuses
    assert ("kvm_cpu_exec", "same") in statuses


def test_the_root_ports_config_space_has_rows_of_its_own(make_capture: MakeCapture) -> None:
    records = _virtio_trace()
    records += [
        Access(9, "read", "pci-config", 0x0, 4, 0x1AF4, region="pci-config", stack="s1"),
        Access(
            10,
            "write",
            "pci-config",
            0x18,
            4,
            0x00010100,
            region="pci-config",
            handler="rp_write_config",
            stack="s1",
            device="pcie-root-port",
        ),
        Access(
            11,
            "read",
            "pci-config",
            0x0,
            4,
            0x000C1B36,
            region="pci-config",
            stack="s1",
            device="pcie-root-port",
        ),
    ]
    report = build_report(make_capture("rp", records))
    config = [(r.device, r.offset, r.name) for r in report.registers if r.space == "pci-config"]
    assert config == [
        (None, 0, "VENDOR_ID+DEVICE_ID"),
        ("pcie-root-port", 0, "pcie-root-port:VENDOR_ID+DEVICE_ID"),
        ("pcie-root-port", 0x18, "pcie-root-port:PRIMARY_BUS..SEC_LATENCY_TIMER"),
    ]
    assert report.regions is not None
    own = next(r for r in report.regions.rows if r.region.kind == "pci-config")
    assert own.accesses == 1


def _config(seq: int, op: str, offset: int, size: int, value: int) -> Access:
    return Access(
        seq,
        "write" if op == "write" else "read",
        "pci-config",
        offset,
        size,
        value,
        region="pci-config",
        stack="s1",
    )


def test_where_the_guest_left_a_ram_bar_is_said(make_capture: MakeCapture) -> None:
    records = _ivshmem_trace("kvm")
    records += [
        # BAR 2 is a 64-bit memory BAR: sized, then placed; BAR 3 holds the high half.
        _config(10, "write", 0x18, 4, 0xFFFFFFFF),
        _config(11, "read", 0x18, 4, 0xFFE0000C),
        _config(12, "write", 0x18, 4, 0xFE80000C),
        _config(13, "write", 0x1C, 4, 0x0),
        _config(14, "write", 0x4, 2, 0x0103),
    ]
    report = build_report(make_capture("placed", records))
    assert report.regions is not None
    bar2 = next(r for r in report.regions.rows if r.region.bar == 2)
    assert bar2.placed_at == 0xFE800000
    ram = next(line for line in region_sentences(report.regions) if line.startswith("qtrace-shm"))
    assert (
        "The guest's configuration accesses left it at 0xfe800000 with memory decoding on." in ram
    )
    # Memory decoding off at the end: nothing is said about where it is.
    report = build_report(make_capture("off", [*records, _config(15, "write", 0x4, 2, 0x0101)]))
    assert report.regions is not None
    assert all(r.placed_at is None for r in report.regions.rows)


def test_a_pack_without_a_register_map_says_so(
    make_capture: MakeCapture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "packs" / "qtrace-made-up"
    folder.mkdir(parents=True)
    (folder / "pack.toml").write_text(
        'format = "qtrace-device/1"\nname = "qtrace-made-up"\nqom_types = ["qtrace-made-up"]\n',
        encoding="utf-8",
    )
    monkeypatch.setenv(PACKS_ENV, str(tmp_path / "packs"))
    clear_registry_cache()
    try:
        header, *rest = _ivshmem_trace("kvm")
        assert isinstance(header, Header)
        records = [dataclasses.replace(header, device="qtrace-made-up"), *rest]
        report = build_report(make_capture("packed", records))
    finally:
        monkeypatch.delenv(PACKS_ENV)
        clear_registry_cache()
    assert report.regions is not None and report.regions.pack == "qtrace-made-up"
    assert region_sentences(report.regions)[0].startswith(
        "The qtrace-made-up pack has no register map: accesses are shown by region and offset"
    )


def _rp(seq: int, op: str, offset: int, size: int, value: int) -> Access:
    return Access(
        seq,
        "write" if op == "write" else "read",
        "pci-config",
        offset,
        size,
        value,
        region="pci-config",
        handler="rp_write_config" if op == "write" else "pci_default_read_config",
        stack="s1",
        device="pcie-root-port",
    )


def _root_port_trace() -> list[Record]:
    header, *rest = _virtio_trace()
    assert isinstance(header, Header)
    return [
        dataclasses.replace(header, machine="q35", topology="root-port"),
        *rest,
        _rp(20, "write", 0x18, 4, 0x00FF0100),
        _rp(21, "write", 0x1A, 1, 0x01),
        _rp(22, "write", 0x20, 2, 0xC000),
        _rp(23, "write", 0x22, 2, 0xC000),
        _rp(24, "write", 0x24, 2, 0xFFF0),
        _rp(25, "write", 0x26, 2, 0x0000),
        _rp(26, "write", 0x1C, 1, 0xF0),
        _rp(27, "write", 0x1D, 1, 0x00),
        _rp(28, "write", 0x4, 2, 0x0106),
        _rp(29, "read", 0x4, 2, 0x0106),
    ]


def test_the_path_section_says_what_the_root_port_was_left_doing(
    make_capture: MakeCapture,
) -> None:
    report = build_report(make_capture("rp-path", _root_port_trace()))
    assert report.path is not None and report.path.topology == "root-port"
    (port,) = report.path.devices
    assert (port.device, port.reads, port.writes) == ("pcie-root-port", 1, 9)
    assert (port.secondary_bus, port.subordinate_bus) == (1, 1)
    windows = {w.kind: w for w in port.windows}
    assert (windows["memory"].base, windows["memory"].limit, windows["memory"].open) == (
        0xC0000000,
        0xC00FFFFF,
        True,
    )
    assert not windows["prefetchable memory"].open and not windows["I/O"].open
    assert report.path.access_stacks == 1 and report.path.bridge_stacks == ()
    text = _flat(_section(render_markdown(report), "The path to the device"))
    assert "sits behind a PCI Express root port (`--topology root-port`)" in text
    assert "The trace has 10 configuration accesses to pcie-root-port (1 read, 9 writes;" in text
    assert "left its secondary bus at 1 and its subordinate bus at 1" in text
    assert (
        "memory 0xc0000000-0xc00fffff; prefetchable memory closed (base 0xfff00000, limit "
        "0xfffff); I/O closed (base 0xf000, limit 0xfff)"
    ) in text
    assert "No frame of the root port's code" in text and "the 1 stack of" in text


def test_a_root_port_frame_on_a_bar_access_stack_is_named(make_capture: MakeCapture) -> None:
    records = _root_port_trace()
    frames = (Frame("pci_bridge_dev_fake", "hw/pci-bridge/fake.c", 1), *KVM_READ)
    records = [Stack("s1", frames) if isinstance(r, Stack) else r for r in records]
    report = build_report(make_capture("rp-frame", records))
    assert report.path is not None and report.path.bridge_stacks == ("s1",)
    assert "1 of the 1 stacks of the device's MMIO and port I/O accesses have a frame" in _flat(
        render_markdown(report)
    )


def test_a_device_on_the_root_bus_has_no_path_section(virtio: CaptureReport) -> None:
    assert virtio.path is None and "## The path to the device" not in render_markdown(virtio)


def test_diff_compares_the_same_region_on_both_sides(make_capture: MakeCapture) -> None:
    a = make_capture("virtio-common", _virtio_trace())
    isr = (Frame("virtio_pci_isr_read", "hw/virtio/virtio-pci.c", 1821), *KVM_READ)
    header, stack, *rest = _virtio_trace()
    polls = [
        _access(100 + i, "virtio-pci-isr-virtio-net", 0, "virtio_pci_isr_read") for i in range(5)
    ]
    polls = [dataclasses.replace(p, stack="s2") for p in polls]
    b = make_capture("virtio-isr-polls", [header, stack, Stack("s2", isr), *rest, *polls])
    result = diff_captures(a, b)
    both = ("msix-table", "virtio-pci-common-virtio-net")
    assert result.a.regions == both
    # B's most used MMIO read stack is the ISR poll; the diff takes B's read of A's regions.
    assert result.b.stack == "s1" and result.b.regions == both
    assert tuple(result.to_json()["b"]["regions"]) == both
    assert all(row.status == "same" for row in result.rows)


def test_an_empty_container_bar_is_said_to_hold_nothing(make_capture: MakeCapture) -> None:
    header, *rest = _ivshmem_trace("kvm")
    assert isinstance(header, Header)
    regions = (*header.regions, Region("e1000e-flash", 1, 0, 0x20000, "container"))
    report = build_report(
        make_capture("empty", [dataclasses.replace(header, regions=regions), *rest])
    )
    assert report.regions is not None
    assert [r.region.name for r in report.regions.empty_containers] == ["e1000e-flash"]
    assert (
        "e1000e-flash (BAR 1, 128 KiB) is a container that holds no region: the device "
        "registered the BAR but put nothing behind it, so no callback of the device serves it."
    ) in region_sentences(report.regions)
    # A container with subregions (virtio's BAR 4) is not empty.
    virtio = build_report(make_capture("virtio-full", _virtio_trace()))
    assert virtio.regions is not None and virtio.regions.empty_containers == ()


def test_a_ram_bar_names_the_kvm_memory_slot_the_run_gave_it(make_capture: MakeCapture) -> None:
    placed = [
        _config(10, "write", 0x18, 4, 0xFE80000C),
        _config(11, "write", 0x1C, 4, 0x0),
        _config(12, "write", 0x4, 2, 0x0103),
    ]
    slots: list[Record] = [
        Memslot(30, "add", 0, 0, 64 << 20),
        Memslot(31, "add", 1, 0xFE800000, 4 << 20, host_addr="0x7f1116400000"),
        Memslot(32, "del", 1, 0xFE800000, 0),
        Memslot(33, "add", 1, 0xFE800000, 4 << 20, host_addr="0x7f1116400000"),
    ]
    report = build_report(make_capture("slot", [*_ivshmem_trace("kvm"), *placed, *slots]))
    assert report.regions is not None
    bar2 = next(r for r in report.regions.rows if r.region.bar == 2)
    assert bar2.memslot is not None and bar2.memslot.seq == 33
    ram = next(line for line in region_sentences(report.regions) if line.startswith("qtrace-shm"))
    assert (
        "In this run QEMU registered it with KVM as guest memory: memory slot 1, "
        "0xfe800000-0xfebfffff (kvm_set_user_memory_region), still registered at the end of the "
        "trace, so the guest's loads and stores go straight to the host memory behind it: no "
        "exit to QEMU and no QEMU handler."
    ) in ram
    assert "While the guest has the BAR mapped" not in ram
    # The slot removed at the end: the report says the records show none, and claims nothing.
    gone = build_report(
        make_capture(
            "slot-gone",
            [*_ivshmem_trace("kvm"), *placed, *slots, Memslot(34, "del", 1, 0xFE800000, 0)],
        )
    )
    assert gone.regions is not None
    ram = next(line for line in region_sentences(gone.regions) if line.startswith("qtrace-shm"))
    assert "show no KVM slot covering it at the end of the run" in ram and "no exit" not in ram


def test_a_rom_bar_in_a_read_only_slot(make_capture: MakeCapture) -> None:
    placed = [_config(10, "write", 0x18, 4, 0xFE800000), _config(12, "write", 0x4, 2, 0x0103)]
    slot = Memslot(31, "add", 3, 0xFE800000, 4 << 20, flags=2)
    report = build_report(
        make_capture("rom-slot", [*_ivshmem_trace("kvm", kind="rom"), *placed, slot])
    )
    assert report.regions is not None
    rom = next(line for line in region_sentences(report.regions) if line.startswith("qtrace-shm"))
    assert "memory slot 3, 0xfe800000-0xfebfffff, read-only (KVM_MEM_READONLY)" in rom
    assert "so the guest's reads of it are served from the host memory behind it" in rom


def test_a_stack_used_by_work_off_the_vcpu_thread_is_titled_by_that_work(
    make_capture: MakeCapture,
) -> None:
    main_loop = (
        Frame("virtio_queue_host_notifier_read", "hw/virtio/virtio.c", 3800),
        Frame("aio_dispatch_handler", "util/aio-posix.c", 400),
        Frame("main_loop_wait", "util/main-loop.c", 600),
    )
    records = [
        *_virtio_trace(),
        Stack("s9", main_loop),
        Async(40, "fd-handler", "run", callback="virtio_queue_host_notifier_read", stack="s9"),
        Async(41, "fd-handler", "run", callback="virtio_queue_host_notifier_read", stack="s9"),
    ]
    report = build_report(make_capture("async", records))
    view = report.stack_view("s9")
    assert view is not None and view.title == (
        "virtio_queue_host_notifier_read: fd-handler run (2x)"
    )
    assert view.roles == ("async",)


def test_message_signalled_interrupts_are_not_counted_as_line_changes(
    make_capture: MakeCapture,
) -> None:
    msix = Irq(50, 1, "MSI-X:0", address=0xFEE00000, data=0x4021, stack="s1")
    report = build_report(make_capture("msix", [*_virtio_trace(), msix]))
    assert ("interrupts (INTx line changes, MSI/MSI-X messages)", 1) in report.counts
    assert dict(build_report(FIXTURES / "e1000-kvm-10.2.2").counts)["interrupt line changes"] == 2
