"""The topology diff and reload plan (herdctl.topodiff): pure, on parsed YAML, no processes."""

from __future__ import annotations

from pathlib import Path

from herdctl.topodiff import NodeChange, Plan, compare, fixed_changes, plan
from node.config import HerdConfig, parse_config

BASE = """
nodes:
  Goloman: {port: 12000}
  Hands: {port: 12001}
  Holiday: {port: 12002}
  Welsh: {port: 12003}
  Wilkes: {port: 12004}
links:
  - [Goloman, Hands]
  - [Goloman, Holiday]
  - [Goloman, Wilkes]
  - [Hands, Wilkes]
  - [Holiday, Welsh]
  - [Holiday, Wilkes]
"""


def config(text: str) -> HerdConfig:
    return parse_config(text, Path("/herd/topology.yaml"))


def test_the_same_file_is_no_change() -> None:
    diff = compare(config(BASE), config(BASE + "# a comment\n"))
    assert diff.empty and diff.lines() == []
    assert plan(config(BASE), config(BASE)) == Plan()
    assert plan(config(BASE), config(BASE)).empty


def test_a_new_port_restarts_the_node_and_the_neighbours_that_dial_it() -> None:
    new = config(BASE.replace("12003", "12013"))
    diff = compare(config(BASE), new)
    assert diff.changed == (NodeChange("Welsh", ("port 12003 -> 12013",)),)
    assert diff.lines() == ["node Welsh: port 12003 -> 12013"]
    assert plan(config(BASE), new).restart == (
        ("Holiday", "neighbour Welsh moved"),
        ("Welsh", "port 12003 -> 12013"),
    )


def test_a_new_bind_address_restarts_only_that_node() -> None:
    new = config(BASE.replace("Welsh: {port: 12003}", "Welsh: {port: 12003, bind: 0.0.0.0}"))
    change = compare(config(BASE), new).changed
    assert change == (NodeChange("Welsh", ("bind 127.0.0.1 -> 0.0.0.0",)),)
    assert not change[0].moved
    assert plan(config(BASE), new).restart == (("Welsh", "bind 127.0.0.1 -> 0.0.0.0"),)


def test_links_added_and_removed_restart_both_ends() -> None:
    new = config(BASE.replace("[Hands, Wilkes]", "[Hands, Welsh]"))
    diff = compare(config(BASE), new)
    assert (diff.links_added, diff.links_removed) == ((("Hands", "Welsh"),), (("Hands", "Wilkes"),))
    assert dict(plan(config(BASE), new).restart) == {
        "Hands": "links +Welsh -Wilkes",
        "Welsh": "links +Hands",
        "Wilkes": "links -Hands",
    }


def test_a_link_written_the_other_way_round_is_the_same_link() -> None:
    new = config(BASE.replace("[Holiday, Welsh]", "[Welsh, Holiday]"))
    assert compare(config(BASE), new).empty


def test_a_node_added_and_one_removed() -> None:
    text = BASE.replace("  Welsh: {port: 12003}\n", "  Zed: {port: 12005}\n")
    new = config(text.replace("[Holiday, Welsh]", "[Holiday, Zed]"))
    diff = compare(config(BASE), new)
    assert (diff.added, diff.removed) == (("Zed",), ("Welsh",))
    assert diff.lines() == [
        "node Zed added",
        "node Welsh removed",
        "link [Holiday, Zed] added",
        "link [Holiday, Welsh] removed",
    ]
    assert plan(config(BASE), new) == Plan(
        stop=("Welsh",), start=("Zed",), restart=(("Holiday", "links +Zed -Welsh"),)
    )


def test_a_herd_wide_setting_restarts_every_node() -> None:
    new = config(BASE + "limits: {peer_timeout: 20}\n")
    assert compare(config(BASE), new).settings == ("limits",)
    restart = plan(config(BASE), new).restart
    assert [name for name, _ in restart] == ["Goloman", "Hands", "Holiday", "Welsh", "Wilkes"]
    assert {why for _, why in restart} == {"limits changed"}


def test_the_scheduling_setting_restarts_every_node() -> None:
    new = config(BASE + "scheduling: {quiet_slice_us: 0}\n")
    assert compare(config(BASE), new).settings == ("scheduling",)
    assert {why for _, why in plan(config(BASE), new).restart} == {"scheduling changed"}


def test_the_dashboard_is_the_supervisors_and_restarts_no_node() -> None:
    new = config(BASE + "dashboard: {port: 12110}\n")
    diff = compare(config(BASE), new)
    assert diff.settings == ("dashboard",) and diff.lines() == ["dashboard changed"]
    assert plan(config(BASE), new).empty and fixed_changes(diff) == ()


def test_run_dir_cannot_change_under_a_running_herd() -> None:
    new = config(BASE + "run_dir: elsewhere\n")
    diff = compare(config(BASE), new)
    assert fixed_changes(diff) == ("run_dir",)
    assert fixed_changes(compare(config(BASE), config(BASE + "data_dir: d2\n"))) == ()


def test_reasons_add_up() -> None:
    text = BASE.replace("Holiday: {port: 12002}", "Holiday: {port: 12012}")
    new = config(text.replace("  - [Holiday, Wilkes]\n", ""))
    assert dict(plan(config(BASE), new).restart) == {
        "Goloman": "neighbour Holiday moved",
        "Holiday": "port 12002 -> 12012; links -Wilkes",
        "Welsh": "neighbour Holiday moved",
        "Wilkes": "links -Holiday",
    }
