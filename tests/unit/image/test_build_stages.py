"""The modules stage comes after the compile (qtrace.image.builder), without Docker: what
its key depends on, and that a compiled QEMU is found or kept rather than compiled again."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker.errors
import pytest

import qtrace.image.builder as builder
from qtrace.image.builder import (
    COMPILED_REPOSITORY,
    LABEL_CACHE_KEY,
    LABEL_COMPILE_KEY,
    AGENT_SCRIPT,
    MODULES_SCRIPT,
    BuildRequest,
    _Compiled,
    final_key,
)

ROOT = Path(__file__).resolve().parents[3]


@dataclass
class FakeImage:
    labels: Mapping[str, str]
    tagged: list[tuple[str, str]] = field(default_factory=list)

    def tag(self, repository: str, tag: str) -> None:
        self.tagged.append((repository, tag))


class FakeImages:
    def __init__(self, images: dict[str, FakeImage]) -> None:
        self.images = images

    def get(self, name: str) -> FakeImage:
        if name not in self.images:
            raise docker.errors.ImageNotFound(name)
        return self.images[name]


@dataclass
class FakeClient:
    images: FakeImages


def _compiled(images: dict[str, FakeImage], lines: list[str], force: bool = False) -> _Compiled:
    client: Any = FakeClient(FakeImages(images))
    toolchain: Any = FakeImage({})
    request = BuildRequest(qemu_version="7.2", force=force)
    return _Compiled(client, request, lines.append, ROOT / "docker", toolchain, "7.2", "ck", "r")


@pytest.fixture
def no_compile(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records a compile instead of running one."""
    compiled: list[str] = []
    monkeypatch.setattr(_Compiled, "_compile", lambda self: compiled.append(self.tag))
    return compiled


def test_the_final_key_follows_the_compile_and_the_modules_script(tmp_path: Path) -> None:
    recipe = tmp_path / "docker"
    recipe.mkdir()
    (recipe / MODULES_SCRIPT).write_text("echo modules\n")
    (recipe / AGENT_SCRIPT).write_text("echo agent\n")
    first = final_key("ck", recipe)
    assert final_key("ck2", recipe) != first
    (recipe / "build-qemu.sh").write_text("changed: it is in the compile key, not here\n")
    assert final_key("ck", recipe) == first
    (recipe / MODULES_SCRIPT).write_text("echo other modules\n")
    assert final_key("ck", recipe) != first


def test_the_final_key_follows_the_trace_agent_script(tmp_path: Path) -> None:
    """gdbserver's stage is in the last image only: changing it never recompiles QEMU."""
    recipe = tmp_path / "docker"
    recipe.mkdir()
    (recipe / MODULES_SCRIPT).write_text("echo modules\n")
    (recipe / AGENT_SCRIPT).write_text("echo agent\n")
    first = final_key("ck", recipe)
    (recipe / AGENT_SCRIPT).write_text("echo another agent\n")
    assert final_key("ck", recipe) != first


def test_a_compiled_image_is_found(no_compile: list[str]) -> None:
    lines: list[str] = []
    images = {f"{COMPILED_REPOSITORY}:7.2": FakeImage({LABEL_COMPILE_KEY: "ck"})}
    assert _compiled(images, lines).ensure() == f"{COMPILED_REPOSITORY}:7.2"
    assert no_compile == [] and "found" in lines[0]


def test_an_image_from_before_the_modules_stage_is_kept_as_the_compiled_one(
    no_compile: list[str],
) -> None:
    lines: list[str] = []
    earlier = FakeImage({LABEL_CACHE_KEY: "ck"})
    assert _compiled({"qtrace/qemu:7.2-debug": earlier}, lines).ensure() == (
        f"{COMPILED_REPOSITORY}:7.2"
    )
    assert earlier.tagged == [(COMPILED_REPOSITORY, "7.2")] and no_compile == []


@pytest.mark.parametrize(
    "images",
    [
        {},
        {f"{COMPILED_REPOSITORY}:7.2": FakeImage({LABEL_COMPILE_KEY: "other"})},
        # A final image of this compile: its cache key is the final key, not the compile key.
        {"qtrace/qemu:7.2-debug": FakeImage({LABEL_CACHE_KEY: "fk", LABEL_COMPILE_KEY: "ck"})},
    ],
)
def test_otherwise_it_is_compiled(images: dict[str, FakeImage], no_compile: list[str]) -> None:
    assert _compiled(images, []).ensure() == f"{COMPILED_REPOSITORY}:7.2"
    assert no_compile == [f"{COMPILED_REPOSITORY}:7.2"]


def test_force_compiles_even_when_one_is_kept(no_compile: list[str]) -> None:
    images = {f"{COMPILED_REPOSITORY}:7.2": FakeImage({LABEL_COMPILE_KEY: "ck"})}
    _compiled(images, [], force=True).ensure()
    assert no_compile == [f"{COMPILED_REPOSITORY}:7.2"]


def test_the_modules_stage_script_is_in_the_recipe() -> None:
    assert (ROOT / "docker" / MODULES_SCRIPT).is_file()
    assert builder.MODULES_SCRIPT == "install-linux-modules.sh"
