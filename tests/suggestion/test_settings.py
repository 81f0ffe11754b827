"""The shared settings parser."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from katib.api.errors import InvalidArgument
from katib.api.settings import describe_settings, parse_settings, setting


@dataclass(frozen=True)
class Demo:
    gamma: float = setting(0.25, gt=0, lt=1)
    n_ei_candidates: int = setting(24, ge=1, aliases=("n_EI_candidates",))
    random_state: int | None = setting(None, ge=0)
    strategy: str = setting("ipop", choices=("ipop", "bipop", "none"))
    verbose: bool = setting(False)


def test_defaults_and_conversion():
    assert parse_settings(Demo, [], "demo") == Demo()
    got = parse_settings(
        Demo,
        [
            ("gamma", "0.5"),
            ("n_EI_candidates", "48"),
            ("random_state", "3"),
            ("strategy", "bipop"),
            ("verbose", "true"),
        ],
        "demo",
    )
    assert got == Demo(
        gamma=0.5, n_ei_candidates=48, random_state=3, strategy="bipop", verbose=True
    )


def test_later_pairs_win_like_katibs_overlay():
    assert parse_settings(Demo, [("gamma", "0.1"), ("gamma", "0.2")], "demo").gamma == 0.2


def test_none_for_optional():
    assert parse_settings(Demo, [("random_state", "None")], "demo").random_state is None


def test_every_problem_reported_at_once():
    with pytest.raises(InvalidArgument) as err:
        parse_settings(
            Demo,
            [
                ("gamma", "1.5"),
                ("n_ei_candidates", "2.5"),
                ("random_state", "-1"),
                ("strategy", "x"),
                ("bogus", "1"),
                ("verbose", "maybe"),
            ],
            "demo",
        )
    problems = err.value.problems
    assert len(problems) == 6
    text = str(err.value)
    assert "setting 'gamma': must be in (0, 1), got 1.5" in text
    assert "setting 'n_ei_candidates': expected an integer" in text
    assert "setting 'random_state': must be in [0, inf), got -1" in text
    assert "must be one of ipop, bipop, none" in text
    assert "unknown setting 'bogus' for algorithm 'demo'" in text
    assert "expected true or false" in text


def test_describe_lists_types_and_ranges():
    rows = {r["name"]: r for r in describe_settings(Demo)}
    assert rows["random_state"]["type"] == "int | None"
    assert rows["gamma"]["gt"] == 0 and rows["n_ei_candidates"]["aliases"] == ("n_EI_candidates",)
