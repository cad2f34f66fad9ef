"""Adding a device is one new folder: a made-up pack in a temporary directory is used by
``show``, ``report`` and the probe's sequence choice, with no other file touched."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qtrace.annotate import default_rules
from qtrace.cli.app import app
from qtrace.devices import PACKS_ENV, clear_registry_cache, pack_for
from qtrace.guests.probe_plan import probe_plan

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "traces" / "e1000-tcg-10.2.2"

PACK_TOML = """
format = "qtrace-device/1"
name = "qtfake"
summary = "A device that exists only in this test"
qom_types = ["qtfake", "qtfake-v2"]
pci_ids = [[0x1234, 0xfa4e]]

[start]
properties = { serial = "qtfake-1", level = "3" }

[guests]
probe_sequence = "e1000"

[[rule]]
func = "qtfake_reg_read"
layer = "device"
explain = "The qtfake BAR0 read callback, as this test's pack explains it."
"""

REGISTERS_TOML = """
format = "qtrace-registers/1"
reference = "qtfake datasheet"
spaces = ["mmio"]

[[register]]
offset = 0x0
name = "FAKECTL"
desc = "Fake control"
fields = [{ name = "GO", bits = "0", desc = "Start" }]

[[register]]
offset = 0x8
name = "FAKESTAT"
desc = "Fake status"
fields = [{ name = "BUSY", bits = "1", desc = "Busy" }, \
{ name = "LEVEL", bits = "7:4", desc = "Level" }]
"""


@pytest.fixture
def fake_pack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    folder = tmp_path / "packs" / "qtfake"
    folder.mkdir(parents=True)
    (folder / "pack.toml").write_text(PACK_TOML, encoding="utf-8")
    (folder / "registers.toml").write_text(REGISTERS_TOML, encoding="utf-8")
    monkeypatch.setenv(PACKS_ENV, str(tmp_path / "packs"))
    clear_registry_cache()
    default_rules.cache_clear()
    yield folder
    monkeypatch.delenv(PACKS_ENV)
    clear_registry_cache()
    default_rules.cache_clear()


def _fake_capture(dest: Path) -> Path:
    """The e1000 TCG fixture, retold as a qtfake capture: device name, handler, regions."""
    dest.mkdir()
    lines = []
    for line in (FIXTURE / "trace.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record["type"] == "header":
            record["device"] = "qtfake-v2"
        for frame in record.get("frames", []):
            if frame["func"] == "e1000_mmio_read":
                frame.update(func="qtfake_reg_read", file="hw/misc/qtfake.c", line=10)
        if record.get("handler") == "e1000_mmio_read":
            record["handler"] = "qtfake_reg_read"
        lines.append(json.dumps(record))
    (dest / "trace.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return dest


def test_the_registry_finds_the_new_pack(fake_pack: Path) -> None:
    pack = pack_for("qtfake-v2")
    assert pack is not None and pack.name == "qtfake" and pack.pci_ids == ((0x1234, 0xFA4E),)


def test_show_uses_the_packs_registers_and_frame_rule(fake_pack: Path, tmp_path: Path) -> None:
    capture = _fake_capture(tmp_path / "capture")
    result = CliRunner().invoke(app, ["show", str(capture)], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "FAKESTAT" in result.stdout and "FAKECTL" in result.stdout
    assert "as this test's pack explains it" in result.stdout


def test_report_uses_the_packs_registers_and_frame_rule(fake_pack: Path, tmp_path: Path) -> None:
    capture = _fake_capture(tmp_path / "capture")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["report", str(capture), "--format", "md", "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = (out / "report.md").read_text(encoding="utf-8")
    assert "FAKESTAT" in text and "as this test's pack explains it" in text


def test_without_the_pack_the_same_capture_is_generic(tmp_path: Path) -> None:
    capture = _fake_capture(tmp_path / "capture")
    result = CliRunner().invoke(app, ["show", str(capture)], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert (
        "FAKESTAT" not in result.stdout and "as this test's pack explains it" not in result.stdout
    )


def test_the_probe_runs_the_sequence_the_pack_names(fake_pack: Path) -> None:
    plan = probe_plan("qtfake", "pc", 5, "/g", "/o")
    assert plan.append is not None and "seq=e1000" in plan.append.split()
    clear_registry_cache()
    (fake_pack / "pack.toml").write_text(
        PACK_TOML.replace('"e1000"', '"generic"'), encoding="utf-8"
    )
    plan = probe_plan("qtfake", "pc", 5, "/g", "/o")
    assert plan.append is not None and "seq=generic" in plan.append.split()


def test_the_packs_start_properties_reach_qemu_in_captures_and_qtest(fake_pack: Path) -> None:
    from qtrace.devices import qemu_device_option
    from qtrace.launch.capture import capture_argv

    argv = capture_argv("qtfake", "tcg", "pc", probe_plan("qtfake", "pc", 5, "/g", "/o"))
    assert "qtfake,id=qtrace0,addr=05.0,serial=qtfake-1,level=3,romfile=" in argv
    # qtest passes its own properties after the pack's; on a clash they win.
    assert (
        qemu_device_option("qtfake", 7, (("level", "9"),))
        == "qtfake,id=qtrace0,addr=07.0,serial=qtfake-1,level=9"
    )
    assert qemu_device_option("no-pack-device", 4) == "no-pack-device,id=qtrace0,addr=04.0"
