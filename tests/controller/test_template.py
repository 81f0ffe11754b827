"""``$(VAR)`` expansion with Kubernetes' rules, shared by local runs and the fake kubelet."""

from __future__ import annotations

import pytest

from katib.controller.template import Command, expand_k8s_vars, render_command

ENV = {"A": "1", "B": "two", "y": "Y", "EMPTY": ""}


@pytest.mark.parametrize(
    ("text", "expanded"),
    [
        ("$(A)-$(B)", "1-two"),
        ("$(EMPTY)x", "x"),
        ("$(MISSING) $(A)", "$(MISSING) 1"),  # undefined: kept as written
        ("$$", "$"),
        ("$$(A)", "$(A)"),  # an escaped $ then plain text
        ("$$$(A)", "$1"),
        ("$$$$", "$$"),
        ("a $ b $", "a $ b $"),  # a $ that opens nothing is kept
        ("$x$(A)", "$x1"),
        ("$(A", "$(A"),  # never closed
        ("$($(A)", "$($(A)"),  # the name is "$(A": undefined
        ("$(x$(y))", "$(x$(y))"),  # the name is "x$(y"; references do not nest
        ("$(a b)", "$(a b)"),
        ("$()", "$()"),
        ("$(A)$(A)", "11"),
        ("", ""),
        ("$", "$"),
    ],
)
def test_kubernetes_expansion(text: str, expanded: str) -> None:
    assert expand_k8s_vars(text, ENV) == expanded


def test_values_are_not_expanded_again() -> None:
    assert expand_k8s_vars("$(A)", {"A": "$(B)", "B": "no"}) == "$(B)"
    assert expand_k8s_vars("$(x$(y)", {"x$(y": "odd names are looked up as read"}) == (
        "odd names are looked up as read"
    )


def test_a_local_run_expands_with_the_containers_earlier_env_only() -> None:
    command = Command(
        argv=("prog", "$(FIRST)", "$(SECOND)", "$(HOME)", "$(x$(FIRST))", "$$(FIRST)"),
        env=(("FIRST", "a"), ("SECOND", "$(FIRST)-$(THIRD)"), ("THIRD", "c")),
    )
    argv, env = render_command(command, {}, {"HOME": "/home/u", "KATIB_TRIAL_NAME": "t-1"})
    assert argv == ["prog", "a", "a-$(THIRD)", "$(HOME)", "$(x$(FIRST))", "$(FIRST)"]
    assert env["SECOND"] == "a-$(THIRD)" and env["HOME"] == "/home/u"
