"""The exports open in real viewers, in the real Chromium (headless, driven over the DevTools
protocol by tests/chromium_cdp.py), and show what was captured.

* perfetto (Chrome JSON trace events): Chromium's own trace viewer, the DevTools Performance
  panel (``devtools://devtools/bundled/trace_app.html``, shipped inside Chromium; the older
  ``chrome://tracing`` is gone from Chromium 156, and Perfetto's trace processor downloads its
  binary from Google's storage, which this network does not reach). The file is loaded as a
  user would, through the panel's file input; the test then reads the panel's own model: the
  track headers it draws, the slices, the flows it bound, the details it shows for a
  selected access.
* folded and speedscope: speedscope's static app from its npm package (``scripts/setup``
  puts it in ``.tools/``), given the file the way its own command-line tool does
  (``#localProfilePath=`` a script that calls ``speedscope.loadFileFromBase64``); the
  sandwich view's table must list the captured functions.

Each test saves screenshots in its tmp folder (the artifacts a person looks at).
"""

from __future__ import annotations

import base64
import json
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from qtrace.export import ExportFormat, export_trace
from qtrace.launch.capture import CaptureResult
from qtrace.trace import Access, Dma, Exit, Irq, Trace, read_trace
from tests.chromium_cdp import Chromium, Page

ROOT = Path(__file__).resolve().parents[2]
SPEEDSCOPE = ROOT / ".tools" / "node_modules" / "speedscope" / "dist" / "release" / "index.html"
TRACE_APP = "devtools://devtools/bundled/trace_app.html?panel=timeline"
# The panel's module, as the page itself loaded it (same URL: the same instance).
PANEL = "(await import('./panels/timeline/timeline.js')).TimelinePanel.TimelinePanel.instance()"

_DEEP = """
const deep = (test) => {
  const walk = (root) => {
    for (const el of root.querySelectorAll('*')) {
      if (test(el)) return el;
      if (el.shadowRoot) { const found = walk(el.shadowRoot); if (found) return found; }
    }
    return null;
  };
  return walk(document);
};
const deepText = () => {
  const parts = [];
  const walk = (root) => {
    for (const el of root.querySelectorAll('*')) if (el.shadowRoot) walk(el.shadowRoot);
    parts.push(root.innerText || root.textContent || '');
  };
  walk(document);
  return parts.join(' ');
};
"""
FILE_INPUT = (
    f"(() => {{ {_DEEP} return deep(el => el.tagName === 'INPUT' && el.type === 'file'); }})()"
)

# What the panel made of the trace: track headers, slices, bound flows, the threads it read
# (it draws a track for each thread with slices; one with instants only gets none).
MODEL = f"""(async () => {{
  const panel = {PANEL};
  const provider = panel.getFlameChart().mainDataProvider;
  const data = provider.timelineData();
  const titles = [];
  for (let i = 0; i < data.entryLevels.length; i++) titles.push(String(provider.entryTitle(i)));
  const parsed = panel.getParsedTraceForLayoutTests();
  const threads = [];
  for (const byTid of (parsed.data || parsed).Meta.threadsInProcess.values()) {{
    for (const thread of byTid.values()) threads.push(thread.args.name);
  }}
  return {{
    groups: data.groups.map(g => g.name),
    threads,
    titles,
    flows: (parsed.data || parsed).Flows.flows.map(flow => flow.map(e => e.name)),
  }};
}})()"""

# Select the first slice whose title starts with the given text, zoom to it and expand every
# track; the details pane then shows its args.
SELECT = """(async (prefix) => {
  const panel = PANEL;
  const chart = panel.getFlameChart();
  const provider = chart.mainDataProvider;
  const data = provider.timelineData();
  let index = -1;
  for (let i = 0; i < data.entryLevels.length; i++) {
    if (String(provider.entryTitle(i)).startsWith(prefix)) { index = i; break; }
  }
  if (index < 0) return null;
  data.groups.forEach((g, i) => { if (!g.expanded) chart.mainFlameChart.toggleGroupExpand(i); });
  const selection = provider.createSelection(index);
  chart.setSelectionAndReveal(selection);
  chart.zoomEvent(selection.event);
  return index;
})""".replace("PANEL", PANEL)

# The "Debugging connection was closed" notice (the trace app has no page to debug) and the
# keyboard-shortcut popover cover the tracks in a screenshot: hide them.
HIDE_OVERLAYS = f"""(() => {{ {_DEEP}
  const textOf = (el) => {{
    const parts = [el.innerText || ''];
    const walk = (root) => {{
      for (const child of root.querySelectorAll('*')) {{
        if (!child.shadowRoot) continue;
        parts.push(child.shadowRoot.textContent || '');
        walk(child.shadowRoot);
      }}
    }};
    if (el.shadowRoot) {{ parts.push(el.shadowRoot.textContent || ''); walk(el.shadowRoot); }}
    walk(el);
    return parts.join(' ');
  }};
  let hidden = 0;
  for (const el of document.body.children) {{
    const text = textOf(el);
    if (text.includes('Debugging connection was closed') && !text.includes('Bottom-up')) {{
      el.style.setProperty('display', 'none', 'important');
      hidden++;
    }}
  }}
  const shortcuts = deep(e => e.tagName === 'DEVTOOLS-SHORTCUT-DIALOG');
  if (shortcuts) {{ shortcuts.style.setProperty('display', 'none', 'important'); hidden++; }}
  return hidden;
}})()"""


def _png_size(path: Path) -> tuple[int, int]:
    width, height = struct.unpack(">II", path.read_bytes()[16:24])
    return width, height


def _png_colours(path: Path) -> int:
    """How many distinct byte values the image data has (a blank page has one or two)."""
    data, chunks, pos = path.read_bytes(), [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        if data[pos + 4 : pos + 8] == b"IDAT":
            chunks.append(data[pos + 8 : pos + 8 + length])
        pos += 12 + length
    return len(set(zlib.decompress(b"".join(chunks))))


def _assert_picture(path: Path) -> None:
    assert path.is_file() and _png_size(path)[0] >= 1200, path
    assert _png_colours(path) > 16, f"{path} looks blank"


def _open_in_devtools(page: Page, trace_file: Path) -> dict[str, Any]:
    page.navigate(TRACE_APP)
    page.wait_for(f"!!{FILE_INPUT}", what="the Performance panel's file input")
    page.set_input_files(FILE_INPUT, [trace_file])
    page.wait_for(
        f"(async () => {PANEL}.getFlameChart().mainDataProvider.timelineData().groups.length)()",
        timeout_s=120,
        what="the trace's tracks",
    )
    model: dict[str, Any] = page.evaluate(MODEL)
    return model


@pytest.fixture
def chromium(tmp_path: Path) -> Any:
    with Chromium(tmp_path / "chromium-profile", window=(1600, 1000)) as browser:
        yield browser


def _export(trace: Trace, fmt: ExportFormat, path: Path) -> Path:
    path.write_text(export_trace(trace, fmt), encoding="utf-8")
    return path


def test_perfetto_export_opens_in_chromiums_trace_viewer_with_its_thread_tracks(
    capture: Callable[..., CaptureResult], chromium: Chromium, tmp_path: Path
) -> None:
    result = capture("e1000", "kvm")
    trace = read_trace(result.out_dir)
    timeline = [r for r in trace.records if isinstance(r, (Exit, Access, Irq, Dma))]
    untimed = [r for r in timeline if r.t is None]
    assert not untimed, f"a fresh capture has t on every record: {untimed[:3]}"
    exported = _export(trace, ExportFormat.PERFETTO, tmp_path / "trace.perfetto.json")
    assert json.loads(exported.read_text())["otherData"]["timestamps"].startswith("measured")

    page = chromium.new_page()
    model = _open_in_devtools(page, exported)
    groups = " | ".join(model["groups"])
    assert "qemu-system-x86_64 (e1000, QEMU 10.2.2)" in groups and "CPU 0/KVM" in groups, groups
    assert len(model["titles"]) == len(trace.exits) + len(trace.accesses) + len(trace.asyncs)
    assert any(t.startswith("KVM_EXIT_MMIO read 0x") for t in model["titles"])
    assert "read STATUS" in model["titles"] and "write EERD" in model["titles"]
    caused = [a for a in trace.accesses if a.exit_seq is not None]
    events = json.loads(exported.read_text())["traceEvents"]
    starts = [e for e in events if e["ph"] == "s"]
    assert sum(e["name"] == "exit -> access" for e in starts) == len(caused) > 0
    assert len(model["flows"]) == len(starts)  # DevTools bound every flow
    assert all(len(flow) == 2 for flow in model["flows"])  # to its cause and its effect
    threads = {e["tid"]: e["args"]["name"] for e in events if e["name"] == "thread_name"}
    with_slices = {threads[e["tid"]] for e in events if e["ph"] == "X"}
    for name in with_slices:  # the main loop too, when a timer of the device ran there
        assert name in groups, (name, groups)

    assert page.evaluate(f"{SELECT}('read STATUS')") is not None
    details = page.wait_for(
        f"(() => {{ {_DEEP} const t = deepText(); "
        "return t.includes('e1000_mmio_read (hw/net/e1000.c:') && t; })()",
        what="the selected access's details",
    )
    status = {
        hex(a.value) for a in trace.accesses if (a.space, a.offset, a.op) == ("mmio", 8, "read")
    }
    assert "STATUS" in details and any(value in details for value in status), status
    page.evaluate(HIDE_OVERLAYS)
    page.wait_for("new Promise(r => setTimeout(() => r(true), 1500))")
    _assert_picture(page.screenshot(tmp_path / "perfetto-in-chromium-devtools.png"))


def test_a_committed_linux_capture_opens_with_its_vcpu_and_main_loop_threads(
    chromium: Chromium, tmp_path: Path
) -> None:
    """13,000 accesses under TCG and the e1000's timers: armed on the vCPU thread, run on the
    main loop (slices there, beside the interrupts its timer raises as instants)."""
    trace = read_trace(ROOT / "reports" / "captures" / "e1000-tcg-linux")
    exported = _export(trace, ExportFormat.PERFETTO, tmp_path / "linux.perfetto.json")
    page = chromium.new_page()
    model = _open_in_devtools(page, exported)
    groups = " | ".join(model["groups"])
    assert "CPU 0/TCG" in groups, groups
    assert {"CPU 0/TCG", "main loop"} <= set(model["threads"]), model["threads"]
    assert len(model["titles"]) == len(trace.exits) + len(trace.accesses) + len(trace.asyncs)
    assert trace.asyncs and any(t.startswith("timer run e1000_") for t in model["titles"])
    page.evaluate(f"{SELECT}('write TDT')")
    page.evaluate(HIDE_OVERLAYS)
    page.wait_for("new Promise(r => setTimeout(() => r(true), 1500))")
    _assert_picture(page.screenshot(tmp_path / "linux-in-chromium-devtools.png"))


def _open_in_speedscope(page: Page, profile: Path, tmp_path: Path) -> None:
    assert SPEEDSCOPE.is_file(), (
        f"{SPEEDSCOPE} is missing: ./scripts/setup installs speedscope from npm into .tools/"
    )
    loader = tmp_path / f"{profile.name}.load.js"
    data = base64.b64encode(profile.read_bytes()).decode()
    loader.write_text(
        f"speedscope.loadFileFromBase64({json.dumps(profile.name)}, {json.dumps(data)})",
        encoding="utf-8",
    )
    page.navigate(f"{SPEEDSCOPE.as_uri()}#localProfilePath={loader}")
    page.wait_for(
        f"document.title.includes({json.dumps(profile.name)}) || "
        "document.title.includes('accesses')",
        what="speedscope to load the profile",
    )


@pytest.mark.parametrize("fmt", [ExportFormat.FOLDED, ExportFormat.SPEEDSCOPE])
def test_flame_graph_exports_load_in_speedscope_and_show_the_captured_functions(
    fmt: ExportFormat, chromium: Chromium, tmp_path: Path
) -> None:
    trace = read_trace(ROOT / "reports" / "captures" / "e1000-kvm-probe")
    suffix = "folded" if fmt is ExportFormat.FOLDED else "speedscope.json"
    profile = _export(trace, fmt, tmp_path / f"e1000-kvm-probe.{suffix}")
    page = chromium.new_page()
    _open_in_speedscope(page, profile, tmp_path)
    page.wait_for("new Promise(r => setTimeout(() => r(true), 1000))")
    _assert_picture(page.screenshot(tmp_path / f"speedscope-{fmt}-flame.png"))
    page.press("3")  # speedscope's key for the sandwich view: a table of every function
    text = page.wait_for(
        "document.body.innerText.includes('e1000_mmio_read') && document.body.innerText",
        what="the sandwich view's function table",
    )
    for function in ("e1000_mmio_read", "e1000_mmio_write", "kvm_cpu_exec", "address_space_rw"):
        assert function in text, function
    _assert_picture(page.screenshot(tmp_path / f"speedscope-{fmt}-sandwich.png"))
