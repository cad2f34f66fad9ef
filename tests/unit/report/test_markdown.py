"""Markdown report: structure a code forge renders (headings, Mermaid, tables, links)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from qtrace.report.model import build_report
from qtrace.report.render import render_markdown
from qtrace.trace import read_trace

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "traces"


def _tables(text: str) -> list[list[str]]:
    tables: list[list[str]] = []
    current: list[str] = []
    for line in text.splitlines():
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    if current:
        tables.append(current)
    return tables


def _cells(row: str) -> int:
    return len(re.split(r"(?<!\\)\|", row.strip())) - 2


@pytest.fixture(scope="module")
def kvm_md() -> str:
    return render_markdown(build_report(FIXTURES / "e1000-kvm-10.2.2"))


def test_headings(kvm_md: str) -> None:
    headings = [line for line in kvm_md.splitlines() if line.startswith("#")]
    assert headings[0].startswith("# ") and "e1000" in headings[0]
    for section in (
        "## Summary",
        "## What the trace shows",
        "## One access, end to end",
        "## Register accesses",
        "## KVM exits",
        "## Stacks",
        "## Interrupts",
        "## DMA",
        "## Reproduce",
    ):
        assert section in headings, section
    trace = read_trace(FIXTURES / "e1000-kvm-10.2.2")
    stack_headings = [h for h in headings if h.startswith("### Stack")]
    assert len(stack_headings) == len(trace.stacks)


def test_mermaid_block_follows_the_real_stack(kvm_md: str) -> None:
    blocks = re.findall(r"```mermaid\n(.*?)```", kvm_md, re.DOTALL)
    assert len(blocks) == 1
    diagram = blocks[0]
    assert diagram.startswith("sequenceDiagram")
    # guest -> KVM -> kvm_cpu_exec -> address space -> memory API -> device handler -> back
    order = [
        "Guest vCPU",
        "KVM (host kernel)",
        "KVM_EXIT_MMIO",
        "address_space_rw",
        "memory_region_dispatch_read",
        "e1000_mmio_read",
        "returns 0x80080783",
        "load completes with 0x80080783",
    ]
    positions = [diagram.index(word) for word in order]
    assert positions == sorted(positions)
    for line in diagram.splitlines()[1:]:
        assert ";" not in line and "#" not in line


def test_tables_are_well_formed(kvm_md: str) -> None:
    tables = _tables(kvm_md)
    assert len(tables) >= 5
    for table in tables:
        width = _cells(table[0])
        assert re.fullmatch(r"\|(\s*-+:?\s*\|)+", table[1].replace("---:", "---")), table[1]
        for row in table:
            assert _cells(row) == width, row


def test_stack_rows_link_to_the_qemu_tag(kvm_md: str) -> None:
    assert (
        "[hw/net/e1000.c:1291](https://gitlab.com/qemu-project/qemu/-/blob/v10.2.2/hw/net/e1000.c#L1291)"
        in kvm_md
    )
    assert "](./nptl" not in kvm_md  # glibc frames are not linked


def test_register_table_has_decoded_values(kvm_md: str) -> None:
    row = next(line for line in kvm_md.splitlines() if "`EERD`" in line)
    assert "DATA=0x5634" in row and "| 3 | 3 |" in row


def test_statement_about_qemu_wait_io_event(kvm_md: str) -> None:
    section = kvm_md.split("## What the trace shows")[1].split("##")[0]
    assert "kvm_cpu_exec" in section and "qemu_wait_io_event is not on the path" in section


def test_source_snippets_are_used_when_present(kvm_md: str) -> None:
    assert "synthetic_e1000_mmio_read_line_1291" in kvm_md
    tcg = render_markdown(build_report(FIXTURES / "e1000-tcg-10.2.2"))
    assert "synthetic_" not in tcg  # that capture has no snippet cache


def test_tcg_markdown_has_no_kvm_sections() -> None:
    text = render_markdown(build_report(FIXTURES / "e1000-tcg-10.2.2"))
    assert "## KVM exits" not in text and "## Interrupts" not in text
    assert "helper_ldul_mmu" in text and "```mermaid" in text
