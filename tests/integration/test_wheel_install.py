"""qtrace installs like a command-line tool: a wheel (not an editable install) in a fresh
virtualenv outside the checkout captures from /tmp, reusing the images the checkout built.

The wheel is built from a copy of the working tree's files that git does not ignore (so the
working tree gets no build/ or egg-info), installed with pip into a new venv under the test's
tmp folder, and run with an empty cache directory, so the collector, the recipe and the guest
sources come from the wheel's package data (copied into that cache to be mounted), never from
the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from qtrace.image.builder import BuildResult, _toolchain_key
from qtrace.image.cache_key import recipe_digest

ROOT = Path(__file__).resolve().parents[2]


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout_s: float) -> str:
    result = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    assert result.returncode == 0, f"{args}: {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    tracked = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, tracked):
        path = ROOT / name.decode()
        if path.is_file() and not name.startswith((b"reports/", b"tests/")):
            (source / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, source / name.decode())
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    _run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(work / "dist"), "."],
        source,
        env,
        600,
    )
    (built,) = (work / "dist").glob("qtrace-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("venv") / "venv"
    python = shutil.which("python3") or sys.executable
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    _run([python, "-m", "venv", str(where)], where.parent, env, 300)
    _run(
        [str(where / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)],
        where.parent,
        env,
        900,
    )
    return where


def _env(tmp: Path) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/root"),
        "XDG_CACHE_HOME": str(tmp / "xdg-cache"),
        "COLUMNS": "200",
    }


def test_the_wheel_carries_the_collector_recipe_and_guests(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    tracked = subprocess.run(
        [
            "git",
            "ls-files",
            "--cached",
            "--others",
            "--exclude-standard",
            "qtrace",
            "gdbscripts",
            "docker",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    expected = {
        name if name.startswith("qtrace/") else f"qtrace/_data/{name}"
        for name in tracked
        if "__pycache__" not in name
    }
    assert expected - names == set()
    assert not any(name.startswith(("gdbscripts/", "docker/", "tests/")) for name in names)


def test_installed_qtrace_runs_from_tmp_reuses_the_images_and_captures(
    venv: Path, debug_image: BuildResult, tmp_path: Path
) -> None:
    qtrace, python = str(venv / "bin" / "qtrace"), str(venv / "bin" / "python")
    cwd = tmp_path / "anywhere"
    cwd.mkdir()
    assert ROOT not in cwd.parents and cwd.is_relative_to("/tmp")
    env = _env(tmp_path)

    where = _run(
        [
            python,
            "-c",
            "import qtrace, qtrace.paths as p; print(qtrace.__file__, p.checkout_root())",
        ],
        cwd,
        env,
        60,
    )
    assert where.startswith(str(venv)) and where.split()[1] == "None", where
    keys = _run(
        [
            python,
            "-c",
            "from qtrace.paths import docker_dir; from qtrace.image.builder import _toolchain_key;"
            " from qtrace.image.cache_key import recipe_digest; d = docker_dir();"
            " print(d, _toolchain_key(d), recipe_digest(d, ('build-qemu.sh',)))",
        ],
        cwd,
        env,
        60,
    ).split()
    assert keys[0].startswith(str(tmp_path / "xdg-cache" / "qtrace" / "data"))
    assert keys[1:] == [
        _toolchain_key(ROOT / "docker"),
        recipe_digest(ROOT / "docker", ("build-qemu.sh",)),
    ]

    build = subprocess.run(
        [qtrace, "build"], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert build.returncode == 0 and "cached" in build.stdout + build.stderr, build.stderr

    capture = subprocess.run(
        [qtrace, "capture", "e1000", "--accel", "tcg", "--json"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert capture.returncode == 0, capture.stdout + capture.stderr
    summary = json.loads(capture.stdout)
    assert summary["status"] == "ok" and summary["accesses"] > 0
    (run_dir,) = (cwd / "captures").iterdir()
    assert (run_dir / "trace.jsonl").is_file()
    folded = _run([qtrace, "export", str(run_dir), "--format", "folded", "-o", "-"], cwd, env, 120)
    assert "e1000_mmio_read (hw/net/e1000.c:" in folded
