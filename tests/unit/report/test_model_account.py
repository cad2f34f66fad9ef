"""The reports' model column: the reference model's account of each register's last access."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import qtrace.report.model_account as model_account
from qtrace.errors import ReportError
from qtrace.report.model import CaptureReport, build_report
from qtrace.report.render import render_html, render_markdown
from qtrace.trace import read_trace

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "traces"
REPORTS = Path(__file__).resolve().parents[3] / "reports"
_NAMED_WRITE = re.compile(r"by seq (\d+) \(write (0x[0-9a-f]+) to ([A-Za-z0-9_\[\]]+)\)")


KVM_PROBE = REPORTS / "captures" / "e1000-kvm-probe"


@pytest.fixture(scope="module")
def e1000_report() -> CaptureReport:
    """A real capture (the synthetic fixtures' made-up values would not replay clean)."""
    return build_report(KVM_PROBE)


def _register_table(markdown: str) -> list[str]:
    lines = markdown.splitlines()
    start = lines.index("## Register accesses")
    table = [line for line in lines[start:] if line.startswith("|")]
    end = next(i for i in range(1, len(table)) if not table[i].startswith(table[0][:2]))
    return table[:end] if end else table


def test_every_register_row_of_a_modelled_device_has_an_account(
    e1000_report: CaptureReport,
) -> None:
    model = e1000_report.model
    assert model is not None and model.by_seq and not model.unavailable
    assert model.reads_compared > 0 and model.mismatches == 0
    own = [row for row in e1000_report.registers if row.device is None]
    assert own and all(row.account for row in own), [r.name for r in own if not r.account]


def test_a_named_earlier_write_is_that_write_in_the_trace(e1000_report: CaptureReport) -> None:
    """Each "by seq N (write V to REG)" the accounts give names a write of V at seq N: the
    account comes from the replay of this very trace, not from a table."""
    trace = read_trace(KVM_PROBE / "trace.jsonl")
    by_seq = {a.seq: a for a in trace.accesses}
    named = [
        match.groups()
        for row in e1000_report.registers
        for line in row.account
        for match in _NAMED_WRITE.finditer(line)
    ]
    assert len(named) >= 5
    for seq, value, _register in named:
        access = by_seq[int(seq)]
        assert access.op == "write" and access.value == int(value, 16), (seq, access)


def test_icr_read_names_what_set_its_causes_and_clears_them(
    e1000_report: CaptureReport,
) -> None:
    """SDM 13.4.17: reading ICR returns the pending causes and clears them; ICS sets causes.
    The probe writes ICS (LSC) and later reads ICR: that read's account names the ICS write
    as where LSC came from and says the read cleared it; the row's last ICR read names the
    TDT write whose transmit pass set TXDW (the report keeps the rows' last accesses'
    accounts only: the earlier ones come from the same replay with every account)."""
    model = model_account.model_accounts(read_trace(KVM_PROBE / "trace.jsonl"), last_only=False)
    assert model is not None and model.by_seq
    ics = [e for e in model.by_seq.values() if e.register == "ICS" and e.op == "write"]
    assert ics and ics[0].qemu_value & 0x4, "the probe sets LSC through ICS"
    reads = [
        e for e in model.by_seq.values()
        if e.register == "ICR" and e.op == "read" and e.seq > ics[0].seq and e.qemu_value & 0x4
    ]  # fmt: skip
    assert reads, "an ICR read after the ICS write returns LSC"
    text = " ".join(model.lines(reads[0].seq))
    assert f"LSC: by seq {ics[0].seq} (write {ics[0].qemu_value:#x} to ICS)" in text, text
    assert "does: ICR: cleared" in text and "LSC" in text.split("does: ICR: cleared")[1]
    icr = next(row for row in e1000_report.registers if row.name == "ICR")
    assert icr.last_op == "read" and icr.last_value
    assert re.search(r"TXDW: by seq \d+ \(write 0x[0-9a-f]+ to TDT\)", " ".join(icr.account))


def test_markdown_and_html_show_the_column(e1000_report: CaptureReport) -> None:
    markdown = render_markdown(e1000_report)
    table = _register_table(markdown)
    assert table[0].endswith("| the model's account of the last access |")
    widths = {len(re.split(r"(?<!\\)\|", row.strip())) for row in table}
    assert len(widths) == 1, "every row has the header's cells"
    assert "compared" in markdown and "--explain" in markdown
    html = render_html(e1000_report)
    assert "<th>the model's account of the last access</th>" in html
    assert html.count('<td class="account">') == len(e1000_report.registers)


def test_a_device_without_a_model_gets_no_column() -> None:
    report = build_report(FIXTURES / "virtio-blk-pci-kvm-threads")
    assert report.model is None
    markdown = render_markdown(report)
    assert "the model's account" not in markdown
    assert "reference model" not in _register_table(markdown)[0]


def test_a_replay_that_fails_says_why_and_the_report_still_renders(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise ReportError("the model could not take this trace")

    monkeypatch.setattr(model_account, "replay", broken)
    report = build_report(KVM_PROBE)
    assert report.model is not None and report.model.unavailable
    assert all(not row.account for row in report.registers)
    markdown = render_markdown(report)
    assert "could not replay this capture (the model could not take this trace)" in markdown
    assert "the model's account of the last access |" not in markdown


def test_long_accounts_are_cut_with_a_pointer_to_verify() -> None:
    report = build_report(REPORTS / "captures" / "e1000-tcg-linux")
    assert report.model is not None and report.model.by_seq
    longest = max(len(row.account) for row in report.registers)
    assert longest <= model_account.ACCOUNT_LINES
    cut = [row for row in report.registers if row.account and "more: qtrace" in row.account[-1]]
    for row in cut:
        full = report.model.by_seq[row.last_seq]
        assert len(full.value) + len(full.effects) > model_account.ACCOUNT_LINES
