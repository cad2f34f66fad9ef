"""The sequence of one access, from the guest through QEMU's layers to the device and back.

Built from a real annotated stack (one participant per run of frames of the same layer),
then written as a Mermaid ``sequenceDiagram`` (for Markdown on a code forge) or as an
inline SVG (the HTML report may not load mermaid.js).
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from qtrace.annotate import AnnotatedFrame, AnnotatedStack, Decoded
from qtrace.report.recorded import Recorded
from qtrace.trace import Access, Exit

__all__ = [
    "HIDDEN_LAYERS",
    "Message",
    "Participant",
    "Sequence",
    "build_sequence",
    "to_mermaid",
    "to_svg",
]

HIDDEN_LAYERS = ("thread-start", "qemu-thread")
"""Layers below the vCPU loop say nothing about the access: left out of the diagram (and of
the path ``qtrace capture`` prints)."""


@dataclass(frozen=True)
class Participant:
    id: str
    label: str


@dataclass(frozen=True)
class Message:
    src: str
    dst: str
    text: str
    reply: bool = False


@dataclass(frozen=True)
class Sequence:
    participants: tuple[Participant, ...]
    messages: tuple[Message, ...]


def _chain(frames: list[AnnotatedFrame]) -> str:
    names = [f.func for f in frames]
    if len(names) <= 3:
        return " → ".join(names)
    return f"{names[0]} → … → {names[-1]} ({len(names)} frames)"


def _what(access: Access, decoded: Decoded | None) -> str:
    if decoded is not None and decoded.name == f"{access.region}+{access.offset:#x}":
        # A register no map names is shown as <region>+<offset>: that says where, once.
        return f"{access.op} {access.size}B @ {access.space} {decoded.name}"
    register = f" {decoded.name}" if decoded is not None else ""
    return f"{access.op} {access.size}B @ {access.space} +{access.offset:#x}{register}"


def build_sequence(
    stack: AnnotatedStack,
    access: Access,
    decoded: Decoded | None,
    exit_record: Exit | None,
    accel: str,
    guest_place: str | None = None,
    recorded: Recorded | None = None,
) -> Sequence:
    """The call sequence of ``access`` along ``stack`` (innermost frame first); the guest's
    message names ``guest_place``, the guest function that made the access, when known.
    ``recorded``: what the capture recorded; without KVM exits the guest's message claims no
    exit and KVM_RUN's return says the exit was not recorded."""
    exits = recorded is None or recorded.has("kvm_exits")
    runs = [
        (layer, frames) for layer, frames in stack.layer_runs() if layer.id not in HIDDEN_LAYERS
    ]
    participants: list[Participant] = []
    messages: list[Message] = []
    kvm_index = next((i for i, (layer, _) in enumerate(runs) if layer.id == "accel-kvm"), None)
    if accel == "kvm" and kvm_index is not None:
        participants += [Participant("G", "Guest vCPU"), Participant("K", "KVM (host kernel)")]
    for index, (layer, frames) in enumerate(runs):
        participants.append(Participant(f"P{index}", layer.label))
    what = _what(access, decoded)
    value = f"{access.value:#x}"
    guest = "G" if participants and participants[0].id == "G" else None
    # Returns stop where the guest's execution resumes: kvm_cpu_exec re-enters the guest;
    # under TCG the helper returns into the translated code, which carries on.
    tcg_code = next((i for i, (layer, _) in enumerate(runs) if layer.id == "tcg-code"), 0)
    resume = kvm_index if guest and kvm_index is not None else tcg_code
    for index in range(1, len(runs)):
        src, dst = f"P{index - 1}", f"P{index}"
        if guest and index - 1 == kvm_index:
            accel_frames = runs[index - 1][1]
            messages += [
                Message(src, "K", "ioctl(KVM_RUN)"),
                Message("K", guest, "enter guest mode"),
                Message(
                    guest,
                    "K",
                    f"{guest_place or 'guest'} {what}: {_exit_text(exit_record, access)}"
                    if exits
                    else f"{guest_place or 'guest'} {what}",
                ),
                Message(
                    "K",
                    src,
                    f"KVM_RUN returns: {exit_record.reason if exit_record else 'exit'}"
                    if exits
                    else f"KVM_RUN returns (the exit is not recorded by {_by(recorded)})",
                    True,
                ),
            ]
            if len(accel_frames) > 1:
                messages.append(Message(src, src, _chain(accel_frames[1:])))
        messages.append(Message(src, dst, _chain(runs[index][1])))
    last = f"P{len(runs) - 1}"
    if runs:
        messages.append(Message(last, last, f"handles {what}"))
    for index in range(len(runs) - 1, resume, -1):
        text = f"returns {value}" if access.op == "read" else "returns"
        messages.append(Message(f"P{index}", f"P{index - 1}", text, True))
    if guest:
        done = f"load completes with {value}" if access.op == "read" else "store completes"
        messages += [
            Message(f"P{resume}", "K", "ioctl(KVM_RUN) again"),
            Message("K", guest, done, True),
        ]
    elif runs and resume:
        messages.append(Message(f"P{resume}", f"P{resume}", "translated code continues"))
    return Sequence(tuple(participants), tuple(messages))


def _by(recorded: Recorded | None) -> str:
    return recorded.by if recorded is not None else "the collector"


def _exit_text(exit_record: Exit | None, access: Access) -> str:
    if exit_record is None:
        return "exit to the host"
    if exit_record.reason == "KVM_EXIT_MMIO" and exit_record.phys_addr is not None:
        return f"no RAM at {exit_record.phys_addr:#x}, MMIO exit"
    if exit_record.reason == "KVM_EXIT_IO" and exit_record.port is not None:
        return (
            f"{'IN' if exit_record.direction == 'in' else 'OUT'} "
            f"port {exit_record.port:#x}, I/O exit"
        )
    return exit_record.reason


def _mermaid_text(text: str) -> str:
    # '#' starts an entity and ';' ends a statement in Mermaid; ':' ends a participant name.
    return text.replace("#", "No.").replace(";", ",")


def to_mermaid(sequence: Sequence) -> str:
    """The sequence as Mermaid ``sequenceDiagram`` source (no fences)."""
    lines = ["sequenceDiagram"]
    for p in sequence.participants:
        lines.append(f"    participant {p.id} as {_mermaid_text(p.label).replace(':', ' -')}")
    for m in sequence.messages:
        arrow = "-->>" if m.reply else "->>"
        lines.append(f"    {m.src}{arrow}{m.dst}: {_mermaid_text(m.text)}")
    return "\n".join(lines)


_COL_PX = 190
_ROW_PX = 30
_TOP_PX = 54
_CHAR_PX = 6  # about the width of one character at font-size 11


def to_svg(sequence: Sequence) -> str:
    """The sequence as a self-contained SVG element (no scripts, no external references)."""
    index = {p.id: i for i, p in enumerate(sequence.participants)}

    def x(pid: str) -> int:
        return 20 + index[pid] * _COL_PX + _COL_PX // 2

    # Wide enough for the longest label (self-messages start right of their lane).
    text_end = max(
        (
            (x(m.src) + 36 if m.src == m.dst else min(x(m.src), x(m.dst)) + 6)
            + len(m.text) * _CHAR_PX
            for m in sequence.messages
        ),
        default=0,
    )
    width = max(max(len(sequence.participants), 1) * _COL_PX + 40, text_end + 20)
    height = _TOP_PX + (len(sequence.messages) + 1) * _ROW_PX

    out = [
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" class="sequence" '
            f'width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">'
        ),
        (
            '<defs><marker id="arrow" markerWidth="8" markerHeight="8" '
            'refX="7" refY="4" orient="auto">'
            '<path d="M0,0 L8,4 L0,8 z" fill="#333"/></marker></defs>'
        ),
    ]
    for p in sequence.participants:
        cx = x(p.id)
        out.append(
            f'<rect x="{cx - 88}" y="6" width="176" height="34" rx="4" fill="#eef" stroke="#99a"/>'
        )
        out.append(f'<text x="{cx}" y="27" text-anchor="middle">{escape(p.label)}</text>')
        out.append(
            f'<line x1="{cx}" y1="40" x2="{cx}" y2="{height - 6}" '
            f'stroke="#bbb" stroke-dasharray="4 3"/>'
        )
    for row, m in enumerate(sequence.messages):
        y = _TOP_PX + row * _ROW_PX + 16
        x1, x2 = x(m.src), x(m.dst)
        dash = ' stroke-dasharray="5 3"' if m.reply else ""
        if x1 == x2:
            out.append(
                f'<path d="M{x1},{y} h30 v10 h-28" fill="none" stroke="#333" '
                f'marker-end="url(#arrow)"/>'
            )
            out.append(f'<text x="{x1 + 36}" y="{y + 4}">{escape(m.text)}</text>')
            continue
        out.append(
            f'<line x1="{x1}" y1="{y}" x2="{x2}" y2="{y}" stroke="#333"{dash} '
            f'marker-end="url(#arrow)"/>'
        )
        out.append(f'<text x="{min(x1, x2) + 6}" y="{y - 5}">{escape(m.text)}</text>')
    out.append("</svg>")
    return "\n".join(out)
