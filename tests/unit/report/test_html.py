"""HTML report: one self-contained file with collapsible stacks and a sortable table."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest

from qtrace.report.model import build_report
from qtrace.report.render import render_html
from qtrace.trace import read_trace

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "traces"

GITLAB = "https://gitlab.com/qemu-project/qemu/-/blob/"


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.open: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)


@pytest.fixture(scope="module")
def parsed() -> _Collector:
    collector = _Collector()
    collector.feed(render_html(build_report(FIXTURES / "e1000-kvm-10.2.2")))
    return collector


def test_one_details_per_stack(parsed: _Collector) -> None:
    trace = read_trace(FIXTURES / "e1000-kvm-10.2.2")
    details = [
        a for t, a in parsed.tags if t == "details" and (a.get("id") or "").startswith("stack-")
    ]
    assert len(details) == len(trace.stacks)
    assert sum(1 for t, _ in parsed.tags if t == "summary") >= len(trace.stacks)


def test_no_external_resources(parsed: _Collector) -> None:
    for tag, attrs in parsed.tags:
        assert tag not in ("link", "iframe", "img", "object", "embed")
        assert "src" not in attrs, tag
        for name in ("href", "xlink:href", "action"):
            value = attrs.get(name) or ""
            if "://" in value or value.startswith("//"):
                assert tag == "a" and name == "href" and value.startswith(GITLAB), (tag, value)


def test_source_links_are_anchors_to_the_tag(parsed: _Collector) -> None:
    links = [
        a["href"] for t, a in parsed.tags if t == "a" and (a.get("href") or "").startswith("http")
    ]
    assert links and all(link.startswith(GITLAB + "v10.2.2/") for link in links)  # type: ignore[union-attr]


def test_register_table_is_sortable_with_inline_script(parsed: _Collector) -> None:
    table = next(a for t, a in parsed.tags if t == "table" and a.get("id") == "register-table")
    assert "sortable" in (table.get("class") or "")
    assert any("addEventListener" in s and "sortable" in s for s in parsed.scripts)
    assert any(t == "style" for t, _ in parsed.tags)


def test_sequence_is_inline_svg(parsed: _Collector) -> None:
    assert any(t == "svg" for t, _ in parsed.tags)


def test_snippets_highlight_the_frame_line() -> None:
    html = render_html(build_report(FIXTURES / "e1000-kvm-10.2.2"))
    assert '<span class="hit"> 1291  ' in html


def test_text_from_the_trace_is_escaped(make_capture) -> None:  # type: ignore[no-untyped-def]
    from qtrace.trace import Access, Frame, Header, Stack

    directory = make_capture(
        "evil",
        [
            Header(
                device="e1000",
                qemu_version="10.2.2",
                accel="kvm",
                argv=("<script>alert(1)</script>",),
            ),
            Stack("s1", (Frame("<b>bad</b>", "hw/net/e1000.c", 1),)),
            Access(1, "read", "mmio", 0, 4, 0, stack="s1"),
        ],
    )
    html = render_html(build_report(directory))
    assert "<script>alert(1)" not in html and "<b>bad</b>" not in html
