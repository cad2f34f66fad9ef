"""The agent's actions: what each hit sets and collects, and the guarded chain walk."""

from __future__ import annotations

from qtrace.launch.fast.actions import CodeRanges, hit_actions, variables

SLOTS = {"rdi": -0x28, "rsi": -0x30, "rcx": -0x3C}
RANGES = CodeRanges(text=(0x5000, 0x9000), generated=(0x7F00_0000, 0x7F40_0000))


def test_a_read_sets_its_values_and_chain_and_collects_no_register() -> None:
    lines = hit_actions("read", SLOTS, RANGES, "rcx", levels=3)
    assert lines[0] == "teval $q_nop += (0) - $q_nop"  # the agent skips the first teval
    assert "teval $q_mr += (*(unsigned long *)($rbp + -40)) - $q_mr" in lines
    assert "teval $q_size += (*(unsigned int *)($rbp + -60)) - $q_size" in lines
    assert "teval $q_val += ($rcx) - $q_val" in lines
    collect = lines[-1]
    assert collect.startswith("collect ") and "$r" not in collect.replace("$q_r", "")
    assert "$q_r3" in collect and "$q_g3" in collect and "$q_f" not in collect
    assert all(" = " not in line for line in lines)  # gdb 13.1 aborts on teval $v = x


def test_the_chain_follows_a_frame_only_out_of_qemus_or_tcgs_code() -> None:
    lines = hit_actions("read", SLOTS, RANGES, "rcx", levels=2)
    walk = "\n".join(line for line in lines if "$q_r2" in line or "$q_f2" in line)
    assert "$q_f1 != 0 ? *(unsigned long *)($q_f1 + 8) : 0" in walk
    assert "($q_r2 >= 0x5000 && $q_r2 < 0x9000) ? *(unsigned long *)($q_f1)" in walk
    assert "*(unsigned long *)($q_f1 + 0x4c0)" in walk  # TCG's frame rule


def test_a_write_collects_what_its_value_points_at_and_the_shift_and_mask() -> None:
    lines = hit_actions("write", SLOTS, RANGES, "rdi", "rsi", "rdx", levels=1)
    assert "teval $q_val += (*(unsigned long *)$rdi) - $q_val" in lines
    assert "$q_shift" in lines[-1] and "$q_mask" in lines[-1]


def test_the_marker_records_the_hit_alone_and_every_variable_is_defined() -> None:
    assert hit_actions("arm", {}, RANGES) == [
        "teval $q_nop += (0) - $q_nop", "teval $q_sp += ($rsp) - $q_sp", "collect $q_sp"
    ]
    names = variables(levels=2)
    assert names[:2] == ["q_nop", "q_mr"] and "q_g2" in names and "q_f2" in names
    used = {w.strip("$(),") for line in hit_actions("write", SLOTS, RANGES, "rdi", "rsi", "rdx",
                                                     levels=2) for w in line.split()}  # fmt: skip
    assert {u for u in used if u.startswith("q_")} <= set(names)
