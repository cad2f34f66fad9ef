"""Source providers: a local tree, the snippet cache, links to the QEMU tag."""

from __future__ import annotations

from pathlib import Path

import pytest

from qtrace.annotate import (
    DirectorySourceProvider,
    SourceSnippets,
    annotate_stack,
    build_snippets,
    capture_source,
    qemu_tag,
    source_url,
    write_source_snippets,
)
from qtrace.errors import ReportError
from qtrace.annotate.source import ReaderSourceProvider
from qtrace.trace import Frame, Stack

# A tiny synthetic C file in QEMU's layout style (not QEMU code).
WIDGET_C = """\
#include "widget.h"

static int widget_helper(int x);

static uint64_t widget_read(void *opaque, hwaddr addr,
                            unsigned size)
{
    int v = widget_helper(addr);
    return v + 1;
}

static int
widget_helper(int x)
{
    return x * 2;
}
"""


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    (tmp_path / "hw" / "misc").mkdir(parents=True)
    (tmp_path / "hw" / "misc" / "widget.c").write_text(WIDGET_C, encoding="utf-8")
    (tmp_path.parent / "secret.c").write_text("outside\n", encoding="utf-8")
    return tmp_path


def test_directory_provider_lines_and_function_ranges(tree: Path) -> None:
    src = DirectorySourceProvider(tree)
    assert src.line_text("hw/misc/widget.c", 8) == "    int v = widget_helper(addr);"
    assert src.line_text("hw/misc/widget.c", 99) is None
    assert src.line_text("hw/misc/nothere.c", 1) is None
    # The definition, not the prototype on line 3 nor the call on line 8.
    assert src.function_range("hw/misc/widget.c", "widget_helper") == (12, 16)
    assert src.function_range("hw/misc/widget.c", "widget_read") == (5, 10)
    assert src.function_range("hw/misc/widget.c", "nothing") is None


def test_directory_provider_refuses_paths_outside_its_root(tree: Path) -> None:
    assert DirectorySourceProvider(tree).line_text("../secret.c", 1) is None


def test_snippet_cache_round_trips_and_answers_like_the_tree(tree: Path, tmp_path: Path) -> None:
    stack = Stack(
        "s1",
        (
            Frame("widget_helper", "hw/misc/widget.c", 15),
            Frame("widget_read", "hw/misc/widget.c", 8),
        ),
    )
    src = DirectorySourceProvider(tree)
    out = tmp_path / "cap"
    out.mkdir()
    write_source_snippets(out, [stack], src, "10.2.2")
    cache = capture_source(out)
    assert isinstance(cache, SourceSnippets)
    assert cache.function_range("hw/misc/widget.c", "widget_read") == (5, 10)
    from_tree = annotate_stack(stack, qemu_version="10.2.2", source=src)
    from_cache = annotate_stack(stack, qemu_version="10.2.2", source=cache)
    assert [f.source for f in from_cache.frames] == [f.source for f in from_tree.frames]
    assert from_cache.frames[0].source == "return x * 2;"
    # The snippet is clipped to the function's body.
    assert [n for n, _ in from_tree.frames[0].snippet] == [13, 14, 15, 16]
    assert [f.snippet for f in from_cache.frames] == [f.snippet for f in from_tree.frames]


def test_snippet_cache_json_is_deterministic(tree: Path) -> None:
    stacks = [Stack("s1", (Frame("widget_read", "hw/misc/widget.c", 8),))]
    a = build_snippets(stacks, DirectorySourceProvider(tree), "7.2").to_json()
    b = build_snippets(list(reversed(stacks)), DirectorySourceProvider(tree), "7.2").to_json()
    assert a == b and '"format": "qtrace-source-snippets/1"' in a


def test_bad_snippet_file_is_a_report_error(tmp_path: Path) -> None:
    path = tmp_path / "source-snippets.json"
    path.write_text('{"format": "something-else"}', encoding="utf-8")
    with pytest.raises(ReportError):
        SourceSnippets.load(path)


def test_capture_source_falls_back_to_copied_tree(tree: Path, tmp_path: Path) -> None:
    cap = tmp_path / "cap2"
    (cap / "source").mkdir(parents=True)
    assert isinstance(capture_source(cap), DirectorySourceProvider)
    assert capture_source(tmp_path / "empty-nothing") is None


@pytest.mark.parametrize(
    ("version", "tag"),
    [
        ("10.2.2", "v10.2.2"),
        ("7.2", "v7.2.0"),
        ("1:10.2.2+ds-1", "v10.2.2"),
        ("7.2+dfsg-7+deb12u18", "v7.2.0"),
        ("git", None),
    ],
)
def test_qemu_tag(version: str, tag: str | None) -> None:
    assert qemu_tag(version) == tag


def test_source_url_only_for_qemu_paths() -> None:
    assert (
        source_url("7.2", "softmmu/memory.c", 440)
        == "https://gitlab.com/qemu-project/qemu/-/blob/v7.2.0/softmmu/memory.c#L440"
    )
    assert source_url("7.2", "/usr/include/x.h", 1) is None
    assert source_url("7.2", "../sysdeps/x.S", 1) is None
    assert source_url("7.2", None, None) is None


GLUE_TEMPLATE = """\
/* warning: addr must be aligned */
static inline uint32_t glue(address_space_ldl_internal, SUFFIX)(ARG1_DECL,
    hwaddr addr, MemTxAttrs attrs)
{
    return 0;
}

uint32_t glue(address_space_ldl, SUFFIX)(ARG1_DECL,
    hwaddr addr, MemTxAttrs attrs, MemTxResult *result)
{
    return glue(address_space_ldl_internal, SUFFIX)(ARG1, addr, attrs);
}
"""


class DictReader:
    """A FileReader over a dict; a missing file raises like the container does."""

    def __init__(self, files: dict[str, str]) -> None:
        self.files = files

    def read(self, path: str) -> str:
        if path not in self.files:
            raise FileNotFoundError(path)
        return self.files[path]


def test_glue_templated_definitions_have_extents() -> None:
    source = ReaderSourceProvider(DictReader({"system/memory_ldst.c.inc": GLUE_TEMPLATE}))
    assert source.function_range("system/memory_ldst.c.inc", "address_space_ldl_internal") == (2, 6)
    assert source.function_range("system/memory_ldst.c.inc", "address_space_ldl") == (8, 12)


def test_reader_provider_treats_unreadable_and_foreign_paths_as_absent() -> None:
    reader = DictReader({"a.c": "int f(void)\n{\n}\n"})
    source = ReaderSourceProvider(reader)
    assert source.line_text("missing.c", 1) is None
    assert source.function_range("./nptl/pthread_create.c", "start_thread") is None
    assert source.function_range("a.c", "??") is None
    assert source.function_range("a.c", "f") == (1, 3)


def test_snippets_built_through_a_reader_carry_extents(tmp_path: Path) -> None:
    reader = DictReader({"system/memory_ldst.c.inc": GLUE_TEMPLATE})
    stack = Stack(
        id="s1",
        frames=(
            Frame(func="address_space_ldl", file="system/memory_ldst.c.inc", line=11),
            Frame(func="start_thread", file="./nptl/pthread_create.c", line=442),
        ),
    )
    path = write_source_snippets(tmp_path, [stack], ReaderSourceProvider(reader), "10.2.2", 1)
    cache = SourceSnippets.load(path)
    assert cache.functions == {"system/memory_ldst.c.inc": {"address_space_ldl": (8, 12)}}
    assert sorted(cache.files["system/memory_ldst.c.inc"]) == [8, 10, 11, 12]
