"""Every explanation anchor checked against the QEMU source of the 7.2, 10.0.13 and 10.2.2 images.

The frame explanations (``layers.toml`` and the device packs' ``[[rule]]`` tables) are quoted
as documentation; each claim they make about QEMU's code carries an anchor
(:class:`qtrace.devices.rules.Anchor`). Each image is read once: one container greps
``/src/qemu`` for the files that define an anchored function and sends them back as a tar
stream; the same function finder the reports use (:class:`TreeSourceProvider`) then locates
each body. A failure names the rule, its explanation and the claim the release contradicts.
"""

from __future__ import annotations

import base64
import io
import re
import tarfile
from collections.abc import Callable

import docker
import pytest

from qtrace.annotate import default_rules
from qtrace.annotate.source import TreeSourceProvider
from qtrace.devices.rules import Anchor, FrameRule, anchor_problems
from qtrace.image.builder import BuildResult

VERSIONS = ("7.2", "10.0.13", "10.2.2")

# Runs in the image: every C file, header or .inc that defines one of the names at column 0
# (as QEMU writes definitions, also through glue(name, SUFFIX)), sent back as base64 tar;
# scripts/ is left out (the Coverity model there redefines core functions as stand-ins).
READ_DEFINITIONS = r"""
set -e
cd /src/qemu
grep -rlE --include='*.c' --include='*.h' --include='*.inc' \
    -e "^([A-Za-z_][A-Za-z0-9_ *]*[ *])?($NAMES)[[:space:]]*\(" \
    -e "^([A-Za-z_][A-Za-z0-9_ *]*[ *])?glue\([[:space:]]*($NAMES)[[:space:]]*," \
    --exclude-dir=build --exclude-dir=tests --exclude-dir=scripts . > /tmp/files || true
sed 's|^\./||' /tmp/files | tar -czf - -T - | base64
"""


class TarTree(TreeSourceProvider):
    """The files one container read out of an image's tree, by path from the source root."""

    def __init__(self, version: str, files: dict[str, str]) -> None:
        super().__init__()
        self.version = version
        self.files = files

    def __repr__(self) -> str:
        return f"TarTree({self.version!r}, {len(self.files)} files)"

    def _read(self, file: str) -> str | None:
        return self.files.get(file)


def _anchored() -> list[tuple[FrameRule, Anchor]]:
    """Every (rule, anchor) of the packaged rules, core and device packs alike."""
    return [(rule, anchor) for rule in default_rules().rules for anchor in rule.anchors]


def _read_tree(client: docker.DockerClient, image: str, version: str) -> TarTree:
    names = sorted({anchor.func for _, anchor in _anchored()})
    assert all(re.fullmatch(r"\w+", n) for n in names)
    out = client.containers.run(
        image,
        ["sh", "-c", READ_DEFINITIONS],
        environment={"NAMES": "|".join(names)},
        network_mode="none",
        remove=True,
    )
    files: dict[str, str] = {}
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(bytes(out))), mode="r:gz") as tar:
        for member in tar.getmembers():
            data = tar.extractfile(member) if member.isfile() else None
            if data is not None:
                files[member.name] = data.read().decode("utf-8", errors="replace")
    return TarTree(version, files)


@pytest.fixture(scope="session")
def image_trees(
    docker_client: docker.DockerClient, build_version: Callable[[str], BuildResult]
) -> Callable[[str], TarTree]:
    """Each release's anchored definitions, read from its image once per session."""
    trees: dict[str, TarTree] = {}

    def get(version: str) -> TarTree:
        if version not in trees:
            trees[version] = _read_tree(docker_client, build_version(version).image, version)
        return trees[version]

    return get


def test_every_anchor_is_checked_by_some_image() -> None:
    """An anchor whose range none of the images falls in would never be checked."""
    anchored = _anchored()
    assert len(anchored) > 100, "the packaged rules lost their anchors"
    unchecked = [
        f"{rule.funcs[:1]} {anchor.describe()}"
        for rule, anchor in anchored
        if not any(anchor.applies_to(v) for v in VERSIONS)
    ]
    assert not unchecked, unchecked


@pytest.mark.parametrize("version", VERSIONS)
def test_every_explanation_anchor_holds_in_the_release_source(
    image_trees: Callable[[str], TarTree], version: str
) -> None:
    tree = image_trees(version)
    assert tree.version == version and tree.files, f"nothing read from the {version} image"
    files = sorted(tree.files)
    checked, stale = 0, []
    for rule, anchor in _anchored():
        if not anchor.applies_to(version):
            continue
        checked += 1
        for problem in anchor_problems(anchor, tree, files):
            stale.append(
                f"rule {list(rule.funcs) or list(rule.files)}: {rule.explain[:90]!r}...\n"
                f"    anchor {anchor.describe()}\n    QEMU {version}: {problem}"
            )
    assert checked > 50, f"only {checked} anchors apply to {version}"
    assert not stale, f"{len(stale)} stale claims in QEMU {version}:\n" + "\n".join(stale)
