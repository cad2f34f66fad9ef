"""Layer rules: every frame of the e1000 KVM and TCG paths (QEMU 10.2.2 and 7.2) has a layer."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from qtrace.annotate import UNKNOWN_LAYER, annotate_stack, default_rules, load_rules
from qtrace.errors import ReportError
from qtrace.trace import Frame, Stack, read_trace

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "traces"

# The paths ENVIRONMENT.md records, innermost first, with the layer each frame must get.
KVM_MMIO_READ = [
    ("e1000_mmio_read", "hw/net/e1000.c", "device"),
    ("memory_region_read_accessor", "{mem}/memory.c", "memory-api"),
    ("access_with_adjusted_size", "{mem}/memory.c", "memory-api"),
    ("memory_region_dispatch_read1", "{mem}/memory.c", "memory-api"),
    ("memory_region_dispatch_read", "{mem}/memory.c", "memory-api"),
    ("flatview_read_continue_step", "{mem}/physmem.c", "address-space"),
    ("flatview_read_continue", "{mem}/physmem.c", "address-space"),
    ("flatview_read", "{mem}/physmem.c", "address-space"),
    ("address_space_read_full", "{mem}/physmem.c", "address-space"),
    ("address_space_rw", "{mem}/physmem.c", "address-space"),
    ("kvm_cpu_exec", "accel/kvm/kvm-all.c", "accel-kvm"),
    ("kvm_vcpu_thread_fn", "accel/kvm/kvm-accel-ops.c", "vcpu-thread"),
    ("qemu_thread_start", "util/qemu-thread-posix.c", "qemu-thread"),
    ("start_thread", "./nptl/pthread_create.c", "thread-start"),
    ("clone3", "../sysdeps/unix/sysv/linux/x86_64/clone3.S", "thread-start"),
]
TCG_MMIO_READ = [
    ("helper_ldul_mmu", "accel/tcg/ldst_common.c.inc", "tcg-softmmu"),
    ("do_ld4_mmu", "accel/tcg/cputlb.c", "tcg-softmmu"),
    ("do_ld_4", "accel/tcg/cputlb.c", "tcg-softmmu"),
    ("do_ld_mmio_beN", "accel/tcg/cputlb.c", "tcg-softmmu"),
    ("int_ld_mmio_beN", "accel/tcg/cputlb.c", "tcg-softmmu"),
    ("code_gen_buffer", None, "tcg-code"),
    ("cpu_tb_exec", "accel/tcg/cpu-exec.c", "accel-tcg"),
    ("cpu_loop_exec_tb", "accel/tcg/cpu-exec.c", "accel-tcg"),
    ("cpu_exec_loop", "accel/tcg/cpu-exec.c", "accel-tcg"),
    ("cpu_exec_setjmp", "accel/tcg/cpu-exec.c", "accel-tcg"),
    ("cpu_exec", "accel/tcg/cpu-exec.c", "accel-tcg"),
    ("tcg_cpu_exec", "accel/tcg/tcg-accel-ops.c", "accel-tcg"),
    ("rr_cpu_thread_fn", "accel/tcg/tcg-accel-ops-rr.c", "vcpu-thread"),
    ("mttcg_cpu_thread_fn", "accel/tcg/tcg-accel-ops-mttcg.c", "vcpu-thread"),
    ("helper_stl_mmu", "accel/tcg/ldst_common.c.inc", "tcg-softmmu"),
    ("do_st4_mmu", "accel/tcg/cputlb.c", "tcg-softmmu"),
    ("do_st_mmio_leN", "accel/tcg/cputlb.c", "tcg-softmmu"),
    ("int_st_mmio_leN", "accel/tcg/cputlb.c", "tcg-softmmu"),
]
OTHER_KNOWN = [
    ("e1000_mmio_write", "hw/net/e1000.c", "device"),
    ("memory_region_write_accessor", "{mem}/memory.c", "memory-api"),
    ("memory_region_dispatch_write", "{mem}/memory.c", "memory-api"),
    ("flatview_write_continue_step", "{mem}/physmem.c", "address-space"),
    ("flatview_write_continue", "{mem}/physmem.c", "address-space"),
    ("flatview_write", "{mem}/physmem.c", "address-space"),
    ("address_space_write", "{mem}/physmem.c", "address-space"),
    ("kvm_handle_io", "accel/kvm/kvm-all.c", "accel-kvm"),
    ("clone", "../sysdeps/unix/sysv/linux/x86_64/clone.S", "thread-start"),
    ("pci_host_config_read_common", "hw/pci/pci_host.c", "pci"),
    ("pci_host_config_write_common", "hw/pci/pci_host.c", "pci"),
    ("pci_data_read", "hw/pci/pci_host.c", "pci"),
    ("pci_data_write", "hw/pci/pci_host.c", "pci"),
    ("pci_host_data_read", "hw/pci/pci_host.c", "pci"),
    ("pci_host_data_write", "hw/pci/pci_host.c", "pci"),
    ("pcie_mmcfg_data_read", "hw/pci/pcie_host.c", "pci"),
    ("pcie_mmcfg_data_write", "hw/pci/pcie_host.c", "pci"),
    ("pci_default_read_config", "hw/pci/pci.c", "pci"),
    ("pci_default_write_config", "hw/pci/pci.c", "pci"),
    ("e1000_write_config", "hw/net/e1000.c", "device"),
    ("pci_dma_read", "include/hw/pci/pci_device.h", "dma"),
    ("pci_dma_rw", "include/hw/pci/pci_device.h", "dma"),
    ("dma_memory_rw", "include/system/dma.h", "dma"),
    ("e1000_start_xmit", "hw/net/e1000.c", "device"),
    ("start_xmit", "hw/net/e1000.c", "device"),
    ("process_tx_desc", "hw/net/e1000.c", "device"),
    ("xmit_seg", "hw/net/e1000.c", "device"),
    ("set_ics", "hw/net/e1000.c", "device"),
    ("set_interrupt_cause", "hw/net/e1000.c", "device"),
    ("pci_set_irq", "hw/pci/pci.c", "irq"),
    ("pci_irq_handler", "hw/pci/pci.c", "irq"),
    ("qemu_set_irq", "hw/core/irq.c", "irq"),
    ("rtl8139_io_readl", "hw/net/rtl8139.c", "device"),
    ("rtl8139_ioport_write", "hw/net/rtl8139.c", "device"),
    ("e1000e_mmio_read", "hw/net/e1000e.c", "device"),
    ("e1000e_core_write", "hw/net/e1000e_core.c", "device"),
    ("io_readx", "accel/tcg/cputlb.c", "tcg-softmmu"),
    ("helper_le_ldul_mmu", "accel/tcg/cputlb.c", "tcg-softmmu"),
    ("helper_ldub_mmu", "accel/tcg/ldst_common.c.inc", "tcg-softmmu"),
    ("helper_stw_mmu", "accel/tcg/ldst_common.c.inc", "tcg-softmmu"),
    ("main_loop_wait", "util/main-loop.c", "main-loop"),
]


def _cases() -> list[tuple[str, str | None, str, str]]:
    cases = []
    for version, mem in (("10.2.2", "system"), ("7.2", "softmmu")):
        for func, file, layer in KVM_MMIO_READ + TCG_MMIO_READ + OTHER_KNOWN:
            cases.append((version, file.format(mem=mem) if file else None, func, layer))
    return cases


@pytest.mark.parametrize(("version", "file", "func", "layer"), _cases())
def test_known_frames_get_their_layer(
    version: str, file: str | None, func: str, layer: str
) -> None:
    got, explain = default_rules().classify(Frame(func, file, 100), accel=None)
    assert got.id == layer, f"{func} ({version}) -> {got.id}"
    assert explain and "No annotation rule" not in explain


@pytest.mark.parametrize("capture", sorted(p.name for p in FIXTURES.iterdir() if p.is_dir()))
def test_fixture_stacks_have_no_unknown_frame(capture: str) -> None:
    trace = read_trace(FIXTURES / capture)
    assert trace.stacks
    for stack in trace.stacks.values():
        annotated = annotate_stack(
            stack, qemu_version=trace.header.qemu_version, accel=trace.header.accel
        )
        frames = annotated.frames
        funcs = [f.func for f in frames]
        # A coroutine's stack ends in glibc's makecontext entry and what lies beyond it on
        # the coroutine's own stack: frames gdb cannot name, below coroutine_trampoline.
        bottom = funcs.index("coroutine_trampoline") if "coroutine_trampoline" in funcs else None
        unknown = [
            f.func
            for i, f in enumerate(frames)
            if f.layer.id == UNKNOWN_LAYER and not (bottom is not None and i > bottom)
        ]
        assert unknown == [], f"{capture} stack {stack.id}"


def test_unnamed_frame_is_jit_only_under_tcg() -> None:
    rules = default_rules()
    assert rules.classify(Frame("??", None, None, "0x7fff0000"), "tcg")[0].id == "tcg-code"
    assert rules.classify(Frame("??", None, None, "0x7fff0000"), "kvm")[0].id == UNKNOWN_LAYER


def test_unmatched_frame_is_unknown_and_visible() -> None:
    stack = Stack("s9", (Frame("some_new_function", "contrib/new/new.c", 12),))
    annotated = annotate_stack(stack, qemu_version="10.2.2")
    assert annotated.frames[0].layer.id == UNKNOWN_LAYER
    assert annotated.frames[0].url is not None


def test_a_device_without_a_pack_gets_the_generic_device_layer() -> None:
    stack = Stack("s9", (Frame("edu_mmio_read", "hw/misc/edu.c", 12),))
    frame = annotate_stack(stack, qemu_version="10.2.2").frames[0]
    assert frame.layer.id == "device" and "without a pack" in frame.explain


@pytest.mark.parametrize(
    ("func", "file", "layer", "says"),
    [
        ("msix_table_mmio_read", "hw/pci/msix.c", "pci", "MSI-X table"),
        ("msix_notify", "hw/pci/msix.c", "irq", "MSI/MSI-X delivery"),
        ("pcie_aer_write_config", "hw/pci/pcie_aer.c", "pci", "PCI Express core"),
        ("rp_write_config", "hw/pci-bridge/pcie_root_port.c", "pci", "root port's config_write"),
        ("rp_reset_hold", "hw/pci-bridge/pcie_root_port.c", "pci", "PCI Express port"),
        ("virtio_pci_common_read", "hw/virtio/virtio-pci.c", "virtio-transport", "common"),
        ("virtio_net_pci_realize", "hw/virtio/virtio-net-pci.c", "virtio-transport", "proxies"),
        ("virtio_queue_notify", "hw/virtio/virtio.c", "virtio", "kick"),
        ("virtqueue_pop", "hw/virtio/virtio.c", "virtio", "virtio core"),
        ("virtio_net_handle_tx_bh", "hw/net/virtio-net.c", "device", "virtio-net"),
        ("virtio_blk_handle_output", "hw/block/virtio-blk.c", "device", "virtio-blk"),
        ("virtio_rng_process", "hw/virtio/virtio-rng.c", "device", "hw/virtio/"),
        ("nvme_mmio_read", "hw/nvme/ctrl.c", "device", "NVMe BAR 0"),
        ("nvme_process_sq", "hw/nvme/ctrl.c", "device", "NVMe controller model"),
        ("xhci_port_read", "hw/usb/hcd-xhci.c", "device", "root-hub port"),
        ("xhci_kick_ep", "hw/usb/hcd-xhci.c", "device", "xHCI"),
        ("ahci_idp_read", "hw/ide/ahci.c", "device", "index-data pair"),
        ("ide_exec_cmd", "hw/ide/core.c", "device", "ATA"),
        ("subpage_read", "system/physmem.c", "address-space", "subpage"),
        ("event_notifier_set", "util/event_notifier-posix.c", "main-loop", "eventfd"),
        ("dma_blk_io", "system/dma-helpers.c", "dma", "scatter-gather"),
        ("blk_aio_preadv", "block/block-backend.c", "block", "block layer"),
        ("apic_deliver_irq", "hw/intc/apic.c", "irq", "local APIC"),
        ("rng_backend_request_entropy", "backends/rng.c", "device", "RNG"),
        ("kvm_arch_put_registers", "target/i386/kvm/kvm.c", "accel-kvm", "target/i386/kvm/"),
        ("unassigned_mem_read", "system/memory.c", "memory-api", "Memory API code"),
        ("portio_read", "system/ioport.c", "memory-api", "port lists"),
        ("subpage_init", "system/physmem.c", "address-space", "physmem.c"),
    ],
)
def test_shared_pci_virtio_and_device_code_gets_its_layer(
    func: str, file: str, layer: str, says: str
) -> None:
    frame = annotate_stack(Stack("s1", (Frame(func, file, 1),)), qemu_version="10.2.2").frames[0]
    assert frame.layer.id == layer and says in frame.explain, (frame.layer.id, frame.explain)


def test_annotation_links_to_the_exact_tag_and_line() -> None:
    stack = Stack(
        "s1",
        (
            Frame("e1000_mmio_read", "hw/net/e1000.c", 1291),
            Frame("start_thread", "./nptl/pthread_create.c", 447),
        ),
    )
    frames = annotate_stack(stack, qemu_version="10.2.2").frames
    assert (
        frames[0].url == "https://gitlab.com/qemu-project/qemu/-/blob/v10.2.2/hw/net/e1000.c#L1291"
    )
    assert frames[1].url is None  # glibc is not QEMU


def _write_rules(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "layers.toml"
    path.write_text(body, encoding="utf-8")
    return path


def test_first_matching_rule_wins(tmp_path: Path) -> None:
    path = _write_rules(
        tmp_path,
        'format = "qtrace-layers/1"\n'
        '[[layer]]\nid = "a"\nlabel = "A"\n[[layer]]\nid = "b"\nlabel = "B"\n'
        '[[rule]]\nfunc = "foo_*"\nfile = "hw/*"\nlayer = "a"\nexplain = "first"\n'
        '[[rule]]\nfunc = ["foo_*", "bar"]\nlayer = "b"\nexplain = "second"\n',
    )
    rules = load_rules(path)
    assert rules.classify(Frame("foo_x", "hw/net/x.c", 1))[1] == "first"
    assert rules.classify(Frame("foo_x", "util/x.c", 1))[1] == "second"
    assert rules.classify(Frame("foo_x"))[1] == "second"  # no file: a file condition cannot hold
    assert rules.classify(Frame("baz"))[0].id == UNKNOWN_LAYER


@pytest.mark.parametrize(
    "body",
    [
        # no format
        '[[layer]]\nid = "a"\nlabel = "A"\n[[rule]]\nfunc = "x"\nlayer = "a"\nexplain = "e"\n',
        (
            'format = "qtrace-layers/1"\n[[layer]]\nid = "a"\nlabel = "A"\n'
            '[[rule]]\nfunc = "x"\nlayer = "zz"\nexplain = "e"\n'
        ),
        (
            'format = "qtrace-layers/1"\n[[layer]]\nid = "a"\nlabel = "A"\n'
            '[[rule]]\nlayer = "a"\nexplain = "e"\n'
        ),
        'format = "qtrace-layers/1"\n[[layer]]\nid = "a"\n',
        "not toml [",
    ],
)
def test_bad_rules_file_is_a_report_error(tmp_path: Path, body: str) -> None:
    with pytest.raises(ReportError):
        load_rules(_write_rules(tmp_path, body))


def test_packaged_rules_reference_only_declared_layers_in_order() -> None:
    rules = default_rules()
    order = rules.layer_order()
    assert order[0] == "thread-start" and order[-1] == UNKNOWN_LAYER
    assert {r.layer for r in rules.rules} <= set(order)


# Frames of the real captures (reports/captures/) that the synthetic paths above lack.
REAL_FRAMES = [
    # the coalesced-MMIO replay inside a later exit
    ("prepare_mmio_access", "system/physmem.c", "kvm", "memory-api"),
    ("qemu_flush_coalesced_mmio_buffer", "system/physmem.c", "kvm", "memory-api"),
    ("kvm_flush_coalesced_mmio_buffer", "accel/kvm/kvm-all.c", "kvm", "accel-kvm"),
    ("cpu_physical_memory_write", "system/physmem.c", "kvm", "address-space"),
    # port I/O under TCG
    ("helper_inl", "target/i386/tcg/system/misc_helper.c", "tcg", "tcg-helper"),
    ("helper_outw", "target/i386/tcg/system/misc_helper.c", "tcg", "tcg-helper"),
    ("address_space_ldl_internal", "system/memory_ldst.c.inc", "tcg", "address-space"),
    # libc with and without libc6-dbg
    ("clone", "./misc/../sysdeps/unix/sysv/linux/x86_64/clone.S", "kvm", "thread-start"),
    ("??", "/lib/x86_64-linux-gnu/libc.so.6", "kvm", "thread-start"),
    ("??", "/lib/x86_64-linux-gnu/libc.so.6", "tcg", "thread-start"),
    # 10.2's renamed between-runs function
    ("qemu_process_cpu_events", "system/cpus.c", "kvm", "vcpu-thread"),
    # TX and interrupts from register writes
    ("set_tctl", "hw/net/e1000.c", "kvm", "device"),
    ("txdesc_writeback", "hw/net/e1000.c", "kvm", "device"),
    ("mac_icr_read", "hw/net/e1000.c", "kvm", "device"),
    ("pcie_mmcfg_data_read", "hw/pci/pcie_host.c", "kvm", "pci"),
]


@pytest.mark.parametrize(("func", "file", "accel", "layer"), REAL_FRAMES)
def test_real_capture_frames_get_a_specific_layer(
    func: str, file: str, accel: str, layer: str
) -> None:
    found, explain = default_rules().classify(Frame(func=func, file=file, line=1), accel)
    assert found.id == layer
    assert explain and not explain.endswith(" code.")  # a specific explanation, not a fallback


def test_a_gdb_unnamed_frame_outside_libc_under_tcg_is_translated_code() -> None:
    found, _ = default_rules().classify(Frame(func="??", file=None, line=None), "tcg")
    assert found.id == "tcg-code"


def test_an_explanation_naming_a_qemu_function_carries_an_anchor() -> None:
    """A sentence that names what QEMU code calls is a code claim: it must be checkable
    (tests/integration/test_rule_anchors.py); glibc's frames have no QEMU source to check."""
    unanchored = [
        (rule.funcs or rule.files)[:2]
        for rule in default_rules().rules
        if not rule.anchors and rule.layer != "thread-start" and re.search(r"\w\(\)", rule.explain)
    ]
    assert unanchored == []


@pytest.mark.parametrize(
    ("func", "same_as"),
    [
        # a 16-byte MMIO access is explained as MMIO, not as the RAM/MMIO page helper
        ("do_ld16_mmio_beN", "do_ld_mmio_beN"),
        ("do_st16_mmio_leN", "do_st_mmio_leN"),
    ],
)
def test_sixteen_byte_mmio_helpers_get_the_mmio_explanation(func: str, same_as: str) -> None:
    rules = default_rules()
    frame = rules.classify(Frame(func, "accel/tcg/cputlb.c", 1))[1]
    assert frame == rules.classify(Frame(same_as, "accel/tcg/cputlb.c", 1))[1]
    assert "BQL" in frame


def test_tcg_mmio_does_not_claim_the_bql_depends_on_the_region() -> None:
    explain = default_rules().classify(Frame("do_ld_mmio_beN", "accel/tcg/cputlb.c", 1))[1]
    assert "if the region needs it" not in explain and "whatever the region" in explain


def test_msi_delivery_is_not_explained_as_the_intx_router() -> None:
    rules = default_rules()
    msi = rules.classify(Frame("msi_notify", "hw/pci/msi.c", 1))[1]
    router = rules.classify(Frame("gsi_handler", "hw/i386/x86-common.c", 1))[1]
    assert msi != router and "msi_send_message" in msi
