"""Stopping rules in Katib's form, and how a controller evaluates them.

A rule is Katib's ``EarlyStoppingRule{name, value, comparison, start_step}``: "stop when the
metric ``name`` compares ``comparison`` to ``value`` at its ``start_step``-th report or later";
for the objective the compared value is the trial's best so far. Katib's controller attaches the
list returned by ``GetEarlyStoppingRules`` to each new trial. Two evaluations exist, and the
client says which one it applies in the request metadata :data:`SEMANTICS_KEY`:

``katib`` (default, no metadata)
    Katib's metrics collector: a met rule is dropped and the trial stops once *every* rule was
    met; a rule is checked once, at exactly its ``start_step``-th report, and rules on the same
    metric share one step counter. Only a single rule per metric is safe there, so the service
    returns the first rule only (the median at ``start_step``; the lowest ASHA rung).
``any``
    The evaluation of :class:`RuleEvaluator`: a trial stops as soon as *any* rule with
    ``start_step <= step`` holds, checked at every report. The service then returns one rule per
    step (median) or per rung (ASHA) whose threshold is a new low, which reproduces the online
    rule exactly for the history the rules were computed from (see
    :func:`katib.earlystopping.curves.records`).

A service that applies ``any`` says so: it echoes :data:`SEMANTICS_KEY` in its reply's
trailing metadata. Katib's own service never does, so a reply without the echo holds rules in
Katib's form whatever the client asked, and a client must evaluate them that way
(:class:`RuleSet` carries the form with the rules).

Rules are computed from the trials in the request, so they go stale as trials finish. A client
may call ``GetEarlyStoppingRules`` again at any time (the service keeps no state) and give the
new list to its running trials with :meth:`RuleEvaluator.replace`; it is then judged by the
current best against thresholds from the newer history, which can stop a trial for a step it
has already passed if the newer history moved that step's threshold.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum, StrEnum

#: gRPC metadata key in which a client names its rule evaluation (:class:`Semantics`).
SEMANTICS_KEY = "katib-rule-semantics"


class Comparison(IntEnum):
    """Katib's ``ComparisonType`` (same numbers as the proto enum)."""

    EQUAL = 1
    LESS = 2
    GREATER = 3


class Semantics(StrEnum):
    """How the client evaluates a rule list (see the module docstring)."""

    KATIB = "katib"
    ANY = "any"


@dataclass(frozen=True)
class Rule:
    """One rule: stop when metric ``name`` compares ``comparison`` to ``value`` from report
    ``start_step`` on (``start_step`` 0 or 1: from the first report)."""

    name: str
    value: float
    comparison: Comparison
    start_step: int

    def holds(self, observed: float) -> bool:
        """Whether ``observed`` meets the rule's comparison."""
        if self.comparison is Comparison.LESS:
            return observed < self.value
        if self.comparison is Comparison.GREATER:
            return observed > self.value
        return observed == self.value


@dataclass(frozen=True)
class RuleSet:
    """The rules a service answered, and the evaluation they were computed for."""

    rules: tuple[Rule, ...] = ()
    semantics: Semantics = Semantics.ANY

    def evaluator(self, objective: str, maximize: bool) -> RuleEvaluator:
        """A fresh evaluator of these rules for one trial."""
        return RuleEvaluator(self.rules, objective, maximize, self.semantics)


class RuleEvaluator:
    """One trial's rules, fed row by row.

    For each numeric row of a metric some rule names, the metric's report count goes up by one;
    the objective's value is replaced by its best so far (lower for minimise, higher for
    maximise). Under :attr:`Semantics.ANY` (the default) :meth:`add` returns ``True`` once any
    rule with ``start_step <= count`` holds; the verdict then sticks. One binary search per row,
    however many rules.

    Under :attr:`Semantics.KATIB` a rule that holds at its ``start_step``-th report or a later
    one is set aside, and the trial stops once every rule was set aside (Katib checks only at
    exactly that report, a quirk not copied). A list without rules never stops a trial.

    >>> rules = [Rule("loss", 0.5, Comparison.GREATER, 2)]
    >>> ev = RuleEvaluator(rules, objective="loss", maximize=False)
    >>> [ev.add("loss", v) for v in (0.9, 0.7, 0.4)]
    [False, True, True]
    """

    def __init__(
        self,
        rules: Iterable[Rule],
        objective: str,
        maximize: bool,
        semantics: Semantics = Semantics.ANY,
    ) -> None:
        self.objective = objective
        self.maximize = maximize
        self.semantics = semantics
        self.counts: dict[str, int] = {}
        self.best: float | None = None
        self.stopped_by: Rule | None = None
        self.rules: tuple[Rule, ...] = ()
        self.replace(rules)

    @property
    def stop(self) -> bool:
        """Whether a rule has held."""
        return self.stopped_by is not None

    def replace(self, rules: Iterable[Rule], semantics: Semantics | None = None) -> None:
        """Swap in a fresher rule list (counts and best value are kept; under ``katib``
        every new rule has to be met again). ``semantics`` changes the evaluation too."""
        if semantics is not None:
            self.semantics = semantics
        self.rules = tuple(sorted(rules, key=lambda r: r.start_step))
        self._pending = list(self.rules)
        self._index: dict[tuple[str, Comparison], _Bound] = {}
        for rule in self.rules:
            self._index.setdefault((rule.name, rule.comparison), _Bound()).add(rule)
        self._names = {r.name for r in self.rules}

    def add(self, name: str, value: float | str) -> bool:
        """Evaluate one reported row; ``True`` when the trial must stop."""
        if self.stopped_by is not None:
            return True
        if name not in self._names and name != self.objective:
            return False
        try:
            number = float(value)
        except (TypeError, ValueError):
            return False
        if math.isnan(number):
            return False
        if name == self.objective:
            if self.best is None or (number > self.best if self.maximize else number < self.best):
                self.best = number
            number = self.best
        count = self.counts[name] = self.counts.get(name, 0) + 1
        if self.semantics is Semantics.KATIB:
            return self._add_all(name, number, count)
        for comparison in Comparison:
            bound = self._index.get((name, comparison))
            if bound is not None:
                self.stopped_by = bound.holding(number, count)
                if self.stopped_by is not None:
                    return True
        return False

    def _add_all(self, name: str, number: float, count: int) -> bool:
        """Katib's evaluation: set met rules aside; stop when none is left."""
        if not self._pending:
            return False
        last = None
        keep = []
        for rule in self._pending:
            if rule.name == name and rule.start_step <= count and rule.holds(number):
                last = rule
            else:
                keep.append(rule)
        self._pending = keep
        if last is not None and not keep:
            self.stopped_by = last
            return True
        return False


class _Bound:
    """Rules of one metric and comparison, by start step, with the loosest active threshold.

    For ``GREATER`` some active rule holds iff the value exceeds the *lowest* active threshold
    (``LESS``: is below the highest), so each row costs one binary search, whatever the number
    of rules. ``EQUAL`` rules are checked one by one.
    """

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.rules: list[Rule] = []
        self.extreme: list[Rule] = []  # extreme[i]: the loosest of rules[: i + 1]

    def add(self, rule: Rule) -> None:
        self.steps.append(rule.start_step)
        self.rules.append(rule)
        if self.extreme and not _looser(rule, self.extreme[-1]):
            self.extreme.append(self.extreme[-1])
        else:
            self.extreme.append(rule)

    def holding(self, value: float, count: int) -> Rule | None:
        active = bisect.bisect_right(self.steps, count)
        if active == 0:
            return None
        if self.rules[0].comparison is Comparison.EQUAL:
            return next((r for r in self.rules[:active] if r.holds(value)), None)
        rule = self.extreme[active - 1]
        return rule if rule.holds(value) else None


def _looser(rule: Rule, than: Rule) -> bool:
    """Whether ``rule`` holds for more values than ``than`` (same comparison)."""
    if rule.comparison is Comparison.GREATER:
        return rule.value < than.value
    return rule.value > than.value


def for_semantics(rules: Sequence[Rule], semantics: Semantics) -> list[Rule]:
    """The rule list to send a client: all of it for ``any``, the first rule for ``katib``."""
    ordered = sorted(rules, key=lambda r: r.start_step)
    return ordered if semantics is Semantics.ANY else ordered[:1]
