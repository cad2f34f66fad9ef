"""Build-stage logic without Docker: versions, cache keys, progress parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from qtrace.image.cache_key import cache_key, recipe_digest, tree_digest
from qtrace.image.progress import BuildProgress, parse_progress_line
from qtrace.image.versions import available_versions, resolve_version, upstream_version
from qtrace.errors import UnknownQemuVersion

LISTED = [
    "1:10.0.13+ds-0+deb13u1",
    "1:10.2.2+ds-1",
    "1:11.1.2+ds-3",
    "1:11.1.3+ds-1",
    "1:7.2+dfsg-7+deb12u18",
]


@pytest.mark.parametrize(
    ("debian", "upstream"),
    [
        ("1:10.2.2+ds-1", "10.2.2"),
        ("1:7.2+dfsg-7+deb12u18", "7.2"),
        ("1:10.0.13+ds-0+deb13u1", "10.0.13"),
        ("8.0.0-1", "8.0.0"),
        ("not a version", None),
    ],
)
def test_upstream_version(debian: str, upstream: str | None) -> None:
    assert upstream_version(debian) == upstream


def test_available_versions_are_sorted_numerically() -> None:
    assert available_versions(LISTED) == ["7.2", "10.0.13", "10.2.2", "11.1.2", "11.1.3"]


def test_resolve_picks_the_debian_version_of_the_request() -> None:
    assert resolve_version("10.2.2", LISTED) == ["1:10.2.2+ds-1"]
    assert resolve_version("7.2", LISTED) == ["1:7.2+dfsg-7+deb12u18"]


def test_unknown_version_lists_what_is_available() -> None:
    with pytest.raises(UnknownQemuVersion) as info:
        resolve_version("9.9.9", LISTED)
    message = str(info.value)
    assert "9.9.9" in message and "7.2" in message and "10.2.2" in message
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("==> stage: configure", BuildProgress(stage="configure")),
        (
            "[812/1802] Compiling C object libqemuutil.a.p/util_osdep.c.o",
            BuildProgress(step=812, total=1802),
        ),
        ("[1/1] Linking target qemu-system-x86_64\r\n", BuildProgress(step=1, total=1)),
        ("Compiling without brackets", None),
        ("[abc/def] nope", None),
    ],
)
def test_progress_lines(line: str, expected: BuildProgress | None) -> None:
    assert parse_progress_line(line) == expected


def test_source_tree_hash_changes_the_cache_key(tmp_path: Path) -> None:
    tree = tmp_path / "qemu"
    (tree / "hw").mkdir(parents=True)
    (tree / "hw" / "e1000.c").write_text("int x;\n")
    (tree / "build").mkdir()
    (tree / "build" / "out.o").write_text("ignored")
    first = tree_digest(tree)
    (tree / "build" / "out.o").write_text("build outputs do not count")
    assert tree_digest(tree) == first
    (tree / "hw" / "e1000.c").write_text("int y;\n")
    second = tree_digest(tree)
    assert second != first
    assert cache_key("toolchain", f"tree:{first}") != cache_key("toolchain", f"tree:{second}")


def test_recipe_digest_follows_only_the_named_files(tmp_path: Path) -> None:
    (tmp_path / "install-deps.sh").write_text("apt-get install gdb\n")
    (tmp_path / "build-qemu.sh").write_text("ninja\n")
    first = recipe_digest(tmp_path, ("install-deps.sh",))
    (tmp_path / "build-qemu.sh").write_text("ninja -v\n")
    assert recipe_digest(tmp_path, ("install-deps.sh",)) == first
    (tmp_path / "install-deps.sh").write_text("apt-get install gdb gcc\n")
    assert recipe_digest(tmp_path, ("install-deps.sh",)) != first
    assert len(cache_key("a", "b")) == 16
