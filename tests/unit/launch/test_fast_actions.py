"""The agent's actions: what each hit sets and collects, and that no register is collected."""

from __future__ import annotations

from qtrace.launch.fast.actions import RAW_STACK_BYTES, hit_actions, variables

SLOTS = {"rdi": -0x28, "rsi": -0x30, "rcx": -0x3C}


def test_a_read_sets_its_values_and_collects_them_and_the_stack_block() -> None:
    lines = hit_actions("read", SLOTS, "rcx")
    assert lines[0] == "teval $q_nop += (0) - $q_nop"  # the agent skips the first teval
    assert "teval $q_mr += (*(unsigned long *)($rbp + -40)) - $q_mr" in lines
    assert "teval $q_size += (*(unsigned int *)($rbp + -60)) - $q_size" in lines
    assert "teval $q_val += ($rcx) - $q_val" in lines
    collects = [line for line in lines if line.startswith("collect")]
    assert collects == [
        "collect $q_mr, $q_off, $q_size, $q_sp, $q_bp, $q_val, $trace_timestamp",
        f"collect *(unsigned char (*)[{RAW_STACK_BYTES}])$q_sp",  # at a variable: no register
    ]
    assert all(" = " not in line for line in lines)  # gdb 13.1 aborts on teval $v = x


def test_a_write_collects_what_its_value_points_at_and_the_shift_and_mask() -> None:
    lines = hit_actions("write", SLOTS, "rdi", "rsi", "rdx")
    assert "teval $q_val += (*(unsigned long *)$rdi) - $q_val" in lines
    assert "$q_shift, $q_mask" in next(line for line in lines if "$q_mr," in line)


def test_the_marker_records_the_hit_alone_and_every_variable_is_defined() -> None:
    assert hit_actions("arm", {}) == [
        "teval $q_nop += (0) - $q_nop", "teval $q_sp += ($rsp) - $q_sp",
        "collect $q_sp, $trace_timestamp",
    ]
    used = {w.strip("$(),") for line in hit_actions("write", SLOTS, "rdi", "rsi", "rdx")
            for w in line.split()}  # fmt: skip
    assert {u for u in used if u.startswith("q_")} <= set(variables())
