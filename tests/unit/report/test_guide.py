"""reports/README.md (the guide): every sentence about a run follows that run's trace.

Each test renders the guide from small synthetic captures that differ in one thing (exits on
CONFIG_ADDRESS, coalesced writes, a timer-made interrupt) and checks that the guide says what
that capture shows and nothing the other variant would have shown. The committed captures are
checked too, for the errors an expert review found in earlier versions of the prose.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterable
from pathlib import Path

from qtrace.report.guide import build_guide, capture_evidence
from qtrace.report.model import build_report
from qtrace.report.render import finding_text, render_guide
from qtrace.trace import (
    Access,
    CaptureStatus,
    CoalescingZone,
    End,
    Exit,
    Frame,
    Header,
    Irq,
    KvmHost,
    Record,
    Stack,
)

MakeCapture = Callable[[str, Iterable[Record]], Path]
REPORTS = Path(__file__).resolve().parents[3] / "reports"

KVM_TAIL = (
    Frame("kvm_cpu_exec", "accel/kvm/kvm-all.c", 3248),
    Frame("kvm_vcpu_thread_fn", "accel/kvm/kvm-accel-ops.c", 53),
    Frame("qemu_thread_start", "util/qemu-thread-posix.c", 393),
)
CONFIG_READ = (
    Frame("pci_host_config_read_common", "hw/pci/pci_host.c", 124),
    Frame("pci_data_read", "hw/pci/pci_host.c", 154),
    Frame("kvm_handle_io", "accel/kvm/kvm-all.c", 2851),
) + KVM_TAIL
MMIO_WRITE = (
    Frame("e1000_mmio_write", "hw/net/e1000.c", 1264),
    Frame("address_space_rw", "system/physmem.c", 3460),
) + KVM_TAIL
MMIO_READ = (
    Frame("e1000_mmio_read", "hw/net/e1000.c", 1310),
    Frame("address_space_rw", "system/physmem.c", 3462),
) + KVM_TAIL
REPLAYED_WRITE = (
    Frame("e1000_mmio_write", "hw/net/e1000.c", 1264),
    Frame("cpu_physical_memory_write", "system/physmem.c", 3493),
    Frame("kvm_flush_coalesced_mmio_buffer", "accel/kvm/kvm-all.c", 2904),
    Frame("qemu_flush_coalesced_mmio_buffer", "system/physmem.c", 1464),
    Frame("prepare_mmio_access", "system/physmem.c", 3205),
    Frame("address_space_rw", "system/physmem.c", 3462),
) + KVM_TAIL
TCG_TAIL = (
    Frame("cpu_exec", "accel/tcg/cpu-exec.c", 1042),
    Frame("mttcg_cpu_thread_fn", "accel/tcg/tcg-accel-ops-mttcg.c", 93),
)
IRQ_FROM_ACCESS = (
    Frame("pci_set_irq", "hw/pci/pci.c", 1700),
    Frame("set_interrupt_cause", "hw/net/e1000.c", 330),
    Frame("set_ics", "hw/net/e1000.c", 350),
    Frame("e1000_mmio_write", "hw/net/e1000.c", 1264),
) + TCG_TAIL
IRQ_FROM_TIMER = (
    Frame("pci_set_irq", "hw/pci/pci.c", 1700),
    Frame("set_interrupt_cause", "hw/net/e1000.c", 330),
    Frame("e1000_mit_timer", "hw/net/e1000.c", 345),
    Frame("timerlist_run_timers", "util/qemu-timer.c", 600),
    Frame("qemu_clock_run_all_timers", "util/qemu-timer.c", 700),
    Frame("main_loop_wait", "util/main-loop.c", 600),
    Frame("qemu_main_loop", "system/runstate.c", 900),
    Frame("main", "system/main.c", 50),
)


def _kvm_probe(address_out_sizes: Iterable[int], *, coalesced: bool) -> list[Record]:
    """A pc/KVM capture: config reads (each after an OUT to 0xCF8 of the given size, if any)
    and an MMIO read, with or without a write KVM buffered and QEMU replayed."""
    records: list[Record] = [
        Header(device="e1000", qemu_version="10.2.2", accel="kvm", machine="pc"),
        Stack("s1", CONFIG_READ),
        Stack("s2", MMIO_READ),
        Stack("s3", MMIO_WRITE),
        Stack("s4", REPLAYED_WRITE),
    ]
    seq = 1
    sizes = list(address_out_sizes) or [0, 0]
    for size in sizes:
        if size:
            records.append(Exit(seq, "KVM_EXIT_IO", port=0xCF8, size=size, direction="out"))
            seq += 1
        records.append(Exit(seq, "KVM_EXIT_IO", port=0xCFC, size=4, direction="in"))
        records.append(
            Access(seq + 1, "read", "pci-config", 0, 4, 0x100E8086, exit_seq=seq, stack="s1")
        )
        seq += 2
    records.append(Exit(seq, "KVM_EXIT_MMIO", phys_addr=0xFEBC0000, len=4, is_write=True))
    records.append(
        Access(
            seq + 1,
            "write",
            "mmio",
            0x0,
            4,
            0x40,
            region="e1000-mmio",
            addr=0xFEBC0000,
            exit_seq=seq,
            stack="s3",
        )
    )
    seq += 2
    records.append(Exit(seq, "KVM_EXIT_MMIO", phys_addr=0xFEBC0014, len=4, is_write=False))
    if coalesced:
        records.append(Access(seq + 1, "write", "mmio", 0x14, 4, 1, coalesced=True, stack="s4"))
    records.append(
        Access(seq + 2, "read", "mmio", 0x14, 4, 0x10, addr=0xFEBC0014, exit_seq=seq, stack="s2")
    )
    return records


def _with_kvm_evidence(records: list[Record], *, coalesced_pio: bool) -> list[Record]:
    """The same capture with the end record the collector writes under KVM: the host's answers
    to QEMU's capability checks and the zones QEMU registered (0xCF8 split by 0xCF9; the BAR
    coalesced except MDIC at 0x20 and ICR at 0xC0)."""
    bar = 0xFEBC0000
    zones = (
        CoalescingZone("add", "pio", 0xCF8, 4, "pci-conf-idx"),
        CoalescingZone("del", "pio", 0xCF8, 4, "pci-conf-idx"),
        CoalescingZone("add", "pio", 0xCF8, 1, "pci-conf-idx"),
        CoalescingZone("add", "pio", 0xCFA, 2, "pci-conf-idx"),
        CoalescingZone("add", "mmio", bar, 0x20, "e1000-mmio"),
        CoalescingZone("add", "mmio", bar + 0x24, 0x9C, "e1000-mmio"),
        CoalescingZone("add", "mmio", bar + 0xC4, 0x100, "e1000-mmio"),
    )
    caps = {"coalesced_mmio": True, "coalesced_pio": coalesced_pio}
    return [*records, End(CaptureStatus.OK, kvm=KvmHost(caps, zones))]


def _tcg_linux(*, timer_raise: bool) -> list[Record]:
    """A TCG capture whose device raised INTx inside a register write, and maybe from a timer."""
    records: list[Record] = [
        Header(device="e1000", qemu_version="10.2.2", accel="tcg", guest="linux"),
        Stack("t1", IRQ_FROM_ACCESS[3:]),
        Stack("t2", IRQ_FROM_ACCESS),
        Stack("t3", IRQ_FROM_TIMER),
        Access(1, "write", "mmio", 0xC8, 4, 1, stack="t1"),
        Irq(2, 1, stack="t2"),
        Irq(3, 0, stack="t2"),
    ]
    if timer_raise:
        records.append(Irq(4, 1, stack="t3"))
    return records


def _guide(captures: dict[str, Path]) -> str:
    roles = {
        role: capture_evidence(role, path.name, f"{path.name}.md", build_report(path), path)
        for role, path in captures.items()
    }
    return render_guide(build_guide(roles))  # type: ignore[arg-type]


def _section(guide: str, number: int) -> str:
    return guide.split(f"## {number}.")[1].split("\n## ")[0]


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def test_four_byte_config_address_exits_do_not_claim_every_port_access_exits(
    make_capture: MakeCapture,
) -> None:
    """Error 1: the guide said every port access is an exit; QEMU asks KVM to coalesce 0xCF8."""
    section = _flat(
        _section(_guide({"kvm": make_capture("k", _kvm_probe([4, 4], coalesced=False))}), 1)
    )
    assert "every port access is an exit" not in section
    assert "KVM exited 2 times on port `0xcf8`" in section
    assert "2 writes to CONFIG_ADDRESS made `KVM_RUN` return" in section
    assert "KVM_CAP_COALESCED_PIO" in section and "0xCFA-0xCFB (2 bytes)" in section
    assert (
        "were 4 bytes wide, and none of them lies wholly inside a zone" in section
        and "do not show whether this host" in section
    )


def test_a_narrow_config_address_exit_shows_the_host_lacked_coalesced_pio(
    make_capture: MakeCapture,
) -> None:
    section = _flat(
        _section(_guide({"kvm": make_capture("k", _kvm_probe([1, 4], coalesced=False))}), 1)
    )
    assert "1 of those 2 writes fit one of the zones" in section
    assert "it was not" in section and "do not show whether" not in section


def test_no_config_address_exits_means_kvm_buffered_them(make_capture: MakeCapture) -> None:
    section = _flat(
        _section(_guide({"kvm": make_capture("k", _kvm_probe([], coalesced=False))}), 1)
    )
    assert "KVM exited 0 times on port `0xcf8`" in section
    assert "No write to CONFIG_ADDRESS made `KVM_RUN` return" in section
    assert "which this host's KVM offers" in section


def test_bar_mapping_registers_coalesced_zones_and_counts_what_returned(
    make_capture: MakeCapture,
) -> None:
    """Error 2: the guide said KVM takes no part in the BAR mapping and every access returns."""
    with_ring = _flat(
        _section(_guide({"kvm": make_capture("a", _kvm_probe([4], coalesced=True))}), 3)
    )
    assert "KVM takes no part" not in with_ring
    assert "KVM_REGISTER_COALESCED_MMIO" in with_ring
    assert "1 writes to the BAR did not make `KVM_RUN` return" in with_ring
    assert "the other 2 accesses to it did" in with_ring
    without = _flat(
        _section(_guide({"kvm": make_capture("b", _kvm_probe([4], coalesced=False))}), 3)
    )
    assert (
        "no write to the BAR was buffered: each of its 2 accesses made `KVM_RUN` return" in without
    )


def test_coalesced_findings_come_from_the_trace(make_capture: MakeCapture) -> None:
    with_ring = build_report(make_capture("a", _kvm_probe([4], coalesced=True)))
    text = finding_text(
        next(f for f in with_ring.findings if f.key == "synchronous-in-kvm-cpu-exec")
    )
    assert "All 4 device accesses" in text and "3 of them came with a KVM exit" in text
    assert (
        "1 was a write that made no exit" in text
        and "this host's KVM offers coalesced MMIO" in text
    )
    assert "while handling the exit of the next device access" in text
    without = build_report(make_capture("b", _kvm_probe([4], coalesced=False)))
    text = finding_text(next(f for f in without.findings if f.key == "synchronous-in-kvm-cpu-exec"))
    assert "All of them came with a KVM exit" in text and "coalesced" not in text


def test_the_flush_section_names_where_this_capture_replayed(make_capture: MakeCapture) -> None:
    section = _flat(
        _section(_guide({"kvm": make_capture("a", _kvm_probe([4], coalesced=True))}), 6)
    )
    assert "memory_region_transaction_begin()" in section and "unless the ring is full" in section
    assert (
        "In this capture 1 was replayed from `prepare_mmio_access()`, all of them on a vCPU thread"
        in section
    )


def test_a_timer_raise_is_reported_as_deferred_and_its_absence_too(
    make_capture: MakeCapture,
) -> None:
    """Error 8: a linux capture raises INTx from the moderation timer; the text must follow."""
    kvm = make_capture("k", _kvm_probe([4], coalesced=False))
    deferred = _flat(
        _section(
            _guide({"kvm": kvm, "tcg_linux": make_capture("l1", _tcg_linux(timer_raise=True))}), 9
        )
    )
    assert (
        "1 of the 2 raises in this capture came from a QEMU timer (`e1000_mit_timer()`), "
        "on the main-loop thread" in deferred
    )
    assert "deferred" in deferred and "never shorter than 500 units (128 µs)" in deferred
    none = _flat(
        _section(
            _guide({"kvm": kvm, "tcg_linux": make_capture("l2", _tcg_linux(timer_raise=False))}), 9
        )
    )
    assert "None of the 1 raises in this capture came from a timer" in none
    assert "shows no deferred raise" in none and "e1000_mit_timer" not in none


def test_the_committed_guide_has_none_of_the_reviewed_errors() -> None:
    """Errors 1-4 and 8 of the review, in the committed guide (which
    test_committed_reports_are_up_to_date keeps equal to what the captures render)."""
    guide = _flat((REPORTS / "README.md").read_text(encoding="utf-8"))
    for wrong in (
        "every port access is an exit",
        "KVM takes no part in this mapping",
        "the I/O bitmap",
        "the `kvmvapic.c` patching the question found is such work",
        "shows no deferred raise",
    ):
        assert wrong not in guide
    assert "unconditional I/O exiting" in guide and "I/O permission map" in guide
    assert "`hw/i386/vapic.c` in 10.2.2" in guide and "async_safe_run_on_cpu()" in guide
    assert "EPT misconfiguration" in guide and "unless the ring is full" in guide


def test_source_claims_are_well_formed() -> None:
    """source_claims.toml (checked against the images by the integration tests) parses, every
    anchor compiles, and each claim names the releases it is checked in."""
    path = Path(__file__).resolve().parents[3] / "qtrace" / "report" / "source_claims.toml"
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    assert data["format"] == "qtrace-source-claims/1"
    ids = [claim["id"] for claim in data["claim"]]
    assert len(ids) == len(set(ids))
    for claim in data["claim"]:
        assert claim["says"] and claim["file"] and claim["versions"] and claim["patterns"]
        assert set(claim["versions"]) <= {"7.2", "10.0.13", "10.2.2"}, claim["id"]
        for pattern in claim["patterns"]:
            re.compile(pattern, re.MULTILINE)


def test_recorded_kvm_evidence_says_what_this_host_offered(make_capture: MakeCapture) -> None:
    """Item 2: where the answer depends on the host, the guide says which this host had."""
    probe = _kvm_probe([4, 4], coalesced=True)
    for offered, said in ((True, "offered"), (False, "did not offer")):
        guide = _guide(
            {"kvm": make_capture(f"k{offered}", _with_kvm_evidence(probe, coalesced_pio=offered))}
        )
        first = _flat(_section(guide, 1))
        assert (
            f"{said} `KVM_CAP_COALESCED_PIO`" in first
            and "In this run the KVM of this host" in first
        )
        assert f"`kvm_state->coalesced_pio` was {int(offered)}" in first
        assert "as the collector saw QEMU register them with KVM in this run" in first
        assert "do not show whether" not in first
        sixth = _flat(_section(guide, 6))
        assert "all but MDIC, ICR, whose writes must take effect at once: the gaps between" in sixth
        third = _flat(_section(guide, 3))
        assert (
            "register 3 zones over the BAR at `0xfebc0000`; "
            "the registers between them are MDIC, ICR" in third
        )
    without = _flat(_section(_guide({"kvm": make_capture("plain", probe)}), 3))
    assert (
        "zones over the BAR" not in without
        and "(MDIC, ICR, ICS, IMS, IMC, TCTL and TDT)" in without
    )


def test_recorded_zones_replace_the_built_in_table(make_capture: MakeCapture) -> None:
    records = _kvm_probe([1, 4], coalesced=False)
    header = records[0]
    assert isinstance(header, Header)
    records[0] = Header(device="e1000", qemu_version="10.2.2", accel="kvm", machine="isapc")
    # No built-in table for this machine: without evidence the guide says nothing of zones ...
    assert "fit one of the zones" not in _flat(
        _section(_guide({"kvm": make_capture("a", records)}), 1)
    )
    # ... with the recorded zones it counts the write that fits 0xCF8 (1 byte).
    section = _flat(
        _section(
            _guide({"kvm": make_capture("b", _with_kvm_evidence(records, coalesced_pio=False))}), 1
        )
    )
    assert (
        "1 of those 2 writes fit one of the zones" in section
        and "this host did not offer it" in section
    )
