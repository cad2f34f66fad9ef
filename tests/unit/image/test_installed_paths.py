"""An installed qtrace (a wheel) finds docker/, gdbscripts/ and the guest sources through
importlib.resources, copies them into the cache to mount them, and computes the same image
cache keys as the checkout, so the images built from either are reused by both.

The wheel's ``qtrace/_data`` is made here by the build hook itself (``setup.py``'s
``copy_bundled``); tests/integration/test_wheel_install.py builds and installs a real wheel.
"""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

import qtrace.paths as paths
from qtrace.image.builder import _toolchain_key
from qtrace.image.cache_key import recipe_digest

ROOT = Path(__file__).resolve().parents[3]


def _setup_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("qtrace_setup_hook", ROOT / "setup.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # __name__ is not "__main__": setup() is not called
    return module


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """qtrace as a wheel lays it out: the package with _data/ filled by the build hook."""
    package = tmp_path / "site-packages" / "qtrace"
    (package / "guests").mkdir(parents=True)
    _setup_module().copy_bundled(ROOT, package / "_data")
    for source in (ROOT / "qtrace" / "guests").rglob("*"):
        if source.is_file() and "__pycache__" not in source.parts:
            target = package / "guests" / source.relative_to(ROOT / "qtrace" / "guests")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
    monkeypatch.setattr(paths, "checkout_root", lambda: None)
    files = {"qtrace": package, "qtrace.guests": package / "guests"}
    monkeypatch.setattr(paths.resources, "files", lambda name: files[name])
    monkeypatch.setenv("QTRACE_CACHE_DIR", str(tmp_path / "cache"))
    return package


def _key(recipe: Path) -> tuple[str, str]:
    return _toolchain_key(recipe), recipe_digest(recipe, ("build-qemu.sh",))


def test_the_checkout_uses_its_own_folders() -> None:
    assert paths.checkout_root() == ROOT
    assert paths.docker_dir() == ROOT / "docker"
    assert paths.gdbscripts_dir() == ROOT / "gdbscripts"
    assert paths.guests_dir() == ROOT / "qtrace" / "guests"


def test_an_installed_qtrace_mounts_cached_copies_with_the_checkouts_cache_keys(
    installed: Path, tmp_path: Path
) -> None:
    docker = paths.docker_dir()
    assert docker.is_relative_to(tmp_path / "cache" / "data")
    assert _key(docker) == _key(ROOT / "docker")
    for name in ("build-qemu.sh", "install-deps.sh", "packages.txt"):
        assert (docker / name).read_bytes() == (ROOT / "docker" / name).read_bytes()
    assert paths.docker_dir() == docker  # made once, then reused

    gdbscripts = paths.gdbscripts_dir()
    assert (gdbscripts / "qtrace_gdb.py").is_file()
    assert not list(gdbscripts.rglob("__pycache__"))
    shipped = {p.relative_to(gdbscripts) for p in gdbscripts.rglob("*.py")}
    assert shipped == {
        p.relative_to(ROOT / "gdbscripts")
        for p in (ROOT / "gdbscripts").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    guests = paths.guests_dir()
    assert (guests / "probe" / "Makefile").is_file() and (guests / "linux" / "init").is_file()
    for folder in (docker, gdbscripts, guests):
        assert folder.stat().st_mode & 0o055 == 0o055, "a container's other users must read it"


def test_a_changed_recipe_is_a_new_copy(installed: Path) -> None:
    first = paths.docker_dir()
    (installed / "_data" / "docker" / "packages.txt").write_text("changed\n")
    second = paths.docker_dir()
    assert second != first and (second / "packages.txt").read_text() == "changed\n"


def test_a_package_without_its_data_says_how_to_install(installed: Path) -> None:
    import shutil

    shutil.rmtree(installed / "_data" / "gdbscripts")
    with pytest.raises(paths.EnvironmentProblem, match="missing from this qtrace installation"):
        paths.gdbscripts_dir()


def test_every_tracked_file_of_the_package_is_package_data() -> None:
    """Each file under qtrace/ that git tracks goes into the wheel: a Python module, or a file
    that pyproject.toml's package-data patterns name (a new guest source must not be left
    out of the wheel)."""
    import fnmatch
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = config["package-data"]
    tracked = subprocess.run(
        ["git", "ls-files", "qtrace"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    missing = []
    for name in tracked:
        path = Path(name)
        if path.suffix == ".py":
            continue
        owners = [path.parents[i] for i in range(len(path.parents) - 1)]
        covered = any(
            fnmatch.fnmatch(str(path.relative_to(owner)), pattern)
            for owner in owners
            for key, globs in patterns.items()
            if key == "*" or key == ".".join(owner.parts)
            for pattern in globs
            if key != "*" or owner == path.parent
        )
        if not covered:
            missing.append(name)
    assert missing == []
