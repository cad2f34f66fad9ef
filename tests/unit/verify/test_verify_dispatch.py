"""One verify for every model (issue 13 item 4): ``verify DEVICE`` dispatches to the device's
pack, ``--list`` says what each model compares, and a device without a model is refused
with the names of those that have one (exit 2, no traceback)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner
from verify_traces import TraceBuilder

from qtrace.cli.app import app
from qtrace.devices.edu.model import Edu
from qtrace.verify import describe_comparisons, devices_with_model, verify_device

runner = CliRunner()


def test_the_edu_pack_gives_verify_its_model_and_where_its_bar_goes() -> None:
    device = verify_device("edu")
    assert device.model is Edu and "edu" in devices_with_model()
    assert device.qtest is not None and dict(device.qtest.bars) == {0: 0xFEA0_0000}
    assert "factorial" in device.compares


def test_list_says_what_each_model_compares_replayed_and_live() -> None:
    result = runner.invoke(app, ["verify", "--list", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    models = {m["device"]: m for m in data["models"]}
    assert set(models) == set(data["devices_with_model"]) >= {"e1000", "edu"}
    edu = models["edu"]
    assert any("every read" in line for line in edu["replay"])
    assert any("random sequences over 11 registers" in line for line in edu["live"])
    assert any("sync steps" in line for line in edu["live"])
    assert models["e1000"]["live"][0].endswith("fixed scenarios")
    assert describe_comparisons(verify_device("edu")) == edu


def test_list_as_a_table_names_every_model() -> None:
    result = runner.invoke(app, ["verify", "--list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "what verify compares" in result.stdout
    for name in devices_with_model():
        assert name in result.stdout


@pytest.mark.parametrize("mode", [["--live"], ["--trace", "TRACE"]])
def test_a_device_without_a_model_is_a_usage_error_naming_those_with_one(
    mode: list[str], tmp_path: Path
) -> None:
    trace = TraceBuilder(device="rtl8139").read(0x0, 0).save(tmp_path / "t.jsonl")
    args = [str(trace) if arg == "TRACE" else arg for arg in mode]
    result = runner.invoke(app, ["verify", "rtl8139", *args])
    assert result.exit_code == 2, result.output
    assert "no reference model for 'rtl8139'" in result.stderr
    assert "e1000" in result.stderr and "edu" in result.stderr
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)


def test_a_trace_of_another_device_is_refused_naming_both(tmp_path: Path) -> None:
    trace = TraceBuilder(device="e1000").read(0x8, 0).save(tmp_path / "t.jsonl")
    result = runner.invoke(app, ["verify", "edu", "--trace", str(trace)])
    assert result.exit_code == 2, result.output
    assert "'e1000'" in result.stderr and "edu" in result.stderr
