"""Cells and shards: a shard is a stable partition of the sorted cells."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qtrace.errors import UsageError
from qtrace.matrix import Cell, MachineSpec, Shard, parse_machines, plan_cells

PC, Q35 = MachineSpec("pc"), MachineSpec("q35")


def test_parse_machines_keeps_order_drops_duplicates_and_reads_topologies() -> None:
    assert parse_machines("q35, pc,q35,q35:root-port") == [
        Q35,
        PC,
        MachineSpec("q35", "root-port"),
    ]


@pytest.mark.parametrize("text", ["", " , ", "isapc", "q35:bad topology"])
def test_parse_machines_refuses_what_capture_cannot_run(text: str) -> None:
    with pytest.raises(UsageError):
        parse_machines(text)


def test_plan_is_every_combination_sorted_by_key() -> None:
    cells = plan_cells(["edu", "e1000"], [Q35, PC], ["10.2.2"])
    assert [c.key for c in cells] == [
        "e1000@pc/10.2.2",
        "e1000@q35/10.2.2",
        "edu@pc/10.2.2",
        "edu@q35/10.2.2",
    ]


def test_cell_key_and_slug_name_the_topology() -> None:
    cell = Cell("nvme", "q35", "10.2.2", "root-port")
    assert cell.key == "nvme@q35:root-port/10.2.2"
    assert cell.slug == "nvme-q35-root-port-10.2.2"


@pytest.mark.parametrize("text", ["0/3", "4/3", "1", "a/b", "1/0", "-1/2"])
def test_bad_shards_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError):
        Shard.parse(text)


def test_shard_takes_every_nth_cell() -> None:
    cells = plan_cells([f"d{i}" for i in range(5)], [PC], ["10.2.2"])
    assert [c.device for c in Shard.parse("2/3").select(cells)] == ["d1", "d4"]
    assert str(Shard.parse(" 2 / 3 ")) == "2/3"


_cells = st.lists(
    st.builds(
        Cell,
        device=st.text("abcdefgh-", min_size=1, max_size=6),
        machine=st.sampled_from(["pc", "q35"]),
        qemu_version=st.sampled_from(["7.2", "10.2.2"]),
        topology=st.sampled_from([None, "root-port"]),
    ),
    max_size=40,
)


@given(cells=_cells, count=st.integers(1, 7), data=st.data())
def test_shards_partition_the_cells_whatever_their_order(
    cells: list[Cell], count: int, data: st.DataObject
) -> None:
    shuffled = data.draw(st.permutations(cells))
    shards = [Shard(k, count).select(cells) for k in range(1, count + 1)]
    assert sorted(c.key for shard in shards for c in shard) == sorted({c.key for c in cells})
    assert [Shard(k, count).select(shuffled) for k in range(1, count + 1)] == shards
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1
