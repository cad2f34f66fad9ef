"""``qtrace verify e1000 --trace FILE --explain``: the model's account of each access,
checked against what the 8254x SDM says the device does (issue 13 item 5)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from typer.testing import CliRunner
from verify_traces import TraceBuilder, probe_guest_trace

from qtrace.cli.app import app
from qtrace.devices.e1000.model import E1000
from qtrace.refemu.provenance import TrackedRegisters
from qtrace.trace import read_trace
from qtrace.verify import replay, verify_device, verify_file
from qtrace.verify.explain import AccessExplanation, Explainer

LINUX = Path(__file__).parents[3] / "reports" / "captures" / "e1000-tcg-linux"
ICR, ICS, IMS, IMC, EERD = 0xC0, 0xC8, 0xD0, 0xD8, 0x14
TDBAL, TDLEN, TDH, TDT, TCTL, TPT = 0x3800, 0x3808, 0x3810, 0x3818, 0x400, 0x40D4
RING, BUFFER = 0x1000, 0x2000
runner = CliRunner()


def _explain(t: TraceBuilder, tmp_path: Path) -> dict[int, AccessExplanation]:
    explainer = Explainer(verify_device("e1000"))
    result = replay(read_trace(t.save(tmp_path / "t.jsonl")), verify_device("e1000"),
                    observer=explainer)  # fmt: skip
    explainer.mark(result)
    assert result.ok, (result.mismatches, result.event_mismatches)
    return {e.seq: e for e in explainer.explanations}


def _text(e: AccessExplanation) -> str:
    return "\n".join(e.lines())


def test_an_icr_read_names_the_ics_write_that_set_its_causes(tmp_path: Path) -> None:
    # SDM 13.4.18: writing ICS sets the causes written; 13.4.17: reading ICR returns the
    # pending causes and clears them; 13.4.20: the line follows ICR & IMS.
    t = TraceBuilder().write(IMS, 0x4).write(ICS, 0x4 | 0x80).read(ICR, 0x84).read(ICR, 0)
    by_seq = _explain(t, tmp_path)
    ics, icr, again = by_seq[2], by_seq[3], by_seq[4]
    assert "ICR: set LSC, RXT0" in ics.effects
    assert any(
        line.startswith("INTx raised: ICR 0x84 & IMS 0x4 = 0x4 (LSC)") for line in ics.effects
    )
    assert icr.value == ("LSC, RXT0: by seq 2 (write 0x84 to ICS)",)
    assert "ICR: cleared LSC, RXT0" in icr.effects
    assert any(line.startswith("INTx lowered") for line in icr.effects)
    assert again.value == ("0: by seq 3 (read of ICR)",)  # the read before cleared them


def test_ims_reads_name_the_writes_that_set_and_cleared_mask_bits(tmp_path: Path) -> None:
    # SDM 13.4.20 / 13.4.21: IMS writes set mask bits, IMC writes clear them; IMS reads them.
    t = TraceBuilder().write(IMS, 0x1 | 0x4).write(IMS, 0x80).write(IMC, 0x4).read(IMS, 0x81)
    by_seq = _explain(t, tmp_path)
    assert by_seq[3].effects == ("IMS: cleared LSC",)
    assert by_seq[4].value == (
        "TXDW: by seq 1 (write 0x5 to IMS)",
        "RXT0: by seq 2 (write 0x80 to IMS)",
    )


def test_eerd_read_says_the_word_came_from_the_eeprom(tmp_path: Path) -> None:
    # SDM 5.3.1 and 13.4.4: a write with START reads the addressed word into DATA, DONE set.
    by_seq = _explain(probe_guest_trace(), tmp_path)
    eerd = by_seq[6]  # the read after the START write for word 0
    assert eerd.register == "EERD"
    text = _text(eerd)
    assert "START, DONE, DATA: START was written" in text
    assert "EEPROM word 0x0 = 0x5452" in text
    assert "ADDR=0x0: by seq 5 (write 0x1 to EERD)" in text  # the address is the guest's


def _descriptor(buffer: int, length: int, cmd: int) -> bytes:
    return struct.pack("<QHBBBBH", buffer, length, 0, cmd, 0, 0, 0)


def _transmit_trace() -> TraceBuilder:
    t = TraceBuilder(events=True)
    for offset, value in ((TDBAL, RING), (TDLEN, 0x80), (TDH, 0), (TDT, 0), (TCTL, 0x2)):
        t.write(offset, value)  # seq 1-5
    t.write(IMS, 0x1)  # seq 6: TXDW unmasked
    t.write(TDT, 1)  # seq 7: the descriptor at TDH 0 has EOP|RS (SDM 3.3.3)
    t.dma_read(RING, _descriptor(BUFFER, 60, 0x01 | 0x08), stack="s-write")
    t.dma_read(BUFFER, bytes(range(60)), stack="s-write")
    t.dma_write(RING + 12, b"\x01\0\0\0", stack="s-write").irq(1, "s-write")
    t.read(TDH, 1).irq(0, "s-read").read(ICR, 0x3).read(TPT, 1).read(TPT, 0)  # 12, 14, 15, 16
    return t


def test_a_tdt_write_tells_the_descriptor_the_frame_the_causes_and_the_line(
    tmp_path: Path,
) -> None:
    # SDM 3.3 / 3.4: TDT moves the tail, hardware fetches the descriptor at TDH, sends
    # the frame, writes DD back for RS, advances TDH; 13.4.17: TXDW and TXQE.
    by_seq = _explain(_transmit_trace(), tmp_path)
    tdt = by_seq[7]
    assert tdt.value == ("TDT: 0x0 -> 0x1",)
    effects = "\n".join(tdt.effects)
    assert "descriptor 0 fetched at 0x1000: CMD EOP|RS, 60 bytes of data, end of frame" in effects
    assert "status written back at 0x100c (DD set" in effects
    assert "frame of 60 bytes sent" in effects
    assert "DMA read of 16 bytes at 0x1000" in effects
    assert "TDH: 0x0 -> 0x1" in effects
    assert "ICR: set TXDW" in effects  # TXQE is set already: the TCTL write's empty pass
    assert "INTx raised: ICR 0x3 & IMS 0x1 = 0x1 (TXDW)" in effects
    assert by_seq[12].value == ("TDH=0x1: by seq 7 (write 0x1 to TDT): transmit pass from TDH 0 "
                                "to TDT 1",)  # fmt: skip
    txdw, txqe = by_seq[14].value
    assert txdw.startswith("TXDW: by seq 7 (write 0x1 to TDT): transmit pass from TDH 0")
    assert "a descriptor with RS/RPS was written back" in txdw
    assert txqe.startswith("TXQE: by seq 5 (write 0x2 to TCTL): transmit pass from TDH 0")


def test_a_statistics_read_counts_and_clears(tmp_path: Path) -> None:
    # SDM 13.7: TPT counts transmitted packets and clears when read.
    by_seq = _explain(_transmit_trace(), tmp_path)
    assert by_seq[15].value[0].startswith("1: 1 increment(s) since it was last 0; latest: seq 7")
    assert "TPT: 0x1 -> 0x0" in by_seq[15].effects
    assert by_seq[16].value == ("0: nothing counted since it was last cleared (read) or reset",)


def test_plain_writes_say_what_was_stored_and_what_was_not_writable(tmp_path: Path) -> None:
    t = TraceBuilder().write(0x10, 0xFFFFFFFF, "pci-config").write(0xC4, 0xFFFFFFFF)
    t.write(0x5820, 0x1).write(0x0, 0x0, "pio")  # MANC (read-only), IOADDR (not stored)
    by_seq = _explain(t, tmp_path)
    assert by_seq[1].value == (  # BAR sizing (PCI 3.0 6.2.5.1): 128 KiB, memory
        "BAR0: 0x0 -> 0xfffe0000",
        "bits 0x1ffff are not writable: they kept their value",
    )
    assert by_seq[2].value == (  # SDM 13.4.19: ITR's interval is bits 15:0
        "ITR: 0x0 -> 0xffff",
        "bits 0xffff0000 are not writable: they kept their value",
    )
    assert by_seq[3].value[0].startswith("ignored: read-only")
    assert by_seq[4].value[0].startswith("ignored: not stored")


def test_every_access_of_the_committed_linux_capture_is_explained() -> None:
    explainer = Explainer(verify_device("e1000"))
    result = verify_file(LINUX / "trace.jsonl", "e1000", observer=explainer)
    accesses = [e for e in explainer.explanations if e.kind == "access"]
    assert len(accesses) == result.accesses_replayed == len(read_trace(LINUX).accesses)
    assert all(e.value or e.effects for e in accesses)
    assert all(e.register and not e.register.startswith("reg_") for e in accesses)


def test_explaining_leaves_a_plain_replay_plain(tmp_path: Path) -> None:
    # Without --explain the model keeps plain dicts: the replay stays fast.
    nic = E1000()
    assert type(nic.regs) is dict and nic.provenance is None
    explained = Explainer(verify_device("e1000"))
    explained.attach(nic)
    assert isinstance(nic.regs, TrackedRegisters)


def test_cli_explain_prints_each_access_and_json_carries_them(tmp_path: Path) -> None:
    path = probe_guest_trace().save(tmp_path / "trace.jsonl")
    result = runner.invoke(app, ["verify", "e1000", "--trace", str(path), "--explain"])
    assert result.exit_code == 0, result.output
    assert "seq 3  mmio read STATUS (Device Status) = 0x80080783" in result.stdout
    assert "no mismatch" in result.stdout
    result = runner.invoke(app, ["verify", "e1000", "--trace", str(path), "--explain", "--json"])
    data = json.loads(result.stdout)
    assert len(data["explanations"]) == data["accesses_replayed"] == 13
    assert data["explanations"][2]["register"] == "STATUS"


@pytest.mark.parametrize("args", [["--live", "--explain"]])
def test_cli_explain_needs_a_trace(args: list[str]) -> None:
    result = runner.invoke(app, ["verify", "e1000", *args])
    assert result.exit_code == 2
    assert "--explain" in result.stderr
