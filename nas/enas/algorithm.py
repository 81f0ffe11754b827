"""``enas``: Katib's ENAS suggestion, on a torch LSTM controller trained on evaluated trials.

Every suggested trial gets Katib's two assignments, JSON with ``'`` quotes:

* ``architecture``: ``[[op], [op, skip_0], [op, skip_0, skip_1], ...]`` (one row per layer);
* ``nn_config``: ``{num_layers, input_sizes, output_sizes, embedding: {op_id: {opt_id,
  opt_type, opt_params}}}`` for the ops the architecture uses.

State: the controller is *rebuilt from the history* on every call, so a restarted or second
replica answers the same request identically. Each trial is labelled with the batch it was
suggested in (``katib.nas/enas-batch``) and its place in it (``katib.nas/enas-index``). The
controller starts from weights drawn from the seed (``random_state``, else a CRC-32 of the
experiment name), then replays, in batch order, one REINFORCE update per batch whose trials have
all finished, on the architectures those trials evaluated and their own rewards (the objective,
negated for minimise; failed trials are left out). A per-process cache keyed by experiment and
the replayed batches skips work already done; it never changes an answer. New architectures are
sampled with a torch generator seeded from the seed and the history.

Usage, in an Experiment: ``algorithm: {algorithmName: enas}`` with a ``nasConfig`` (see
``examples/enas.yaml``).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from katib.api.errors import FailedPrecondition, InvalidArgument
from katib.api.settings import setting
from katib.api.trials import Trial, TrialState
from katib.nas.config import NasConfig, check_config, quote, unquote
from katib.suggestion.base import Algorithm, ExperimentInfo, Suggestion, SuggestResult
from katib.suggestion.history import History

logger = logging.getLogger(__name__)

BATCH_LABEL = "katib.nas/enas-batch"
INDEX_LABEL = "katib.nas/enas-index"


@dataclass(frozen=True)
class ENASSettings:
    """Katib's ENAS settings (KATIB_REFERENCE §2.7), plus ``random_state``."""

    controller_hidden_size: int = setting(64, ge=1, doc="LSTM hidden size")
    controller_temperature: float | None = setting(5.0, gt=0, doc="logit temperature; None: off")
    controller_tanh_const: float | None = setting(2.25, gt=0, doc="tanh bound; None: off")
    controller_entropy_weight: float | None = setting(1e-5, gt=0, doc="entropy bonus")
    controller_baseline_decay: float = setting(0.999, gt=0, le=1, doc="EMA baseline decay")
    controller_learning_rate: float = setting(5e-5, gt=0, le=1, doc="Adam learning rate")
    controller_skip_target: float = setting(0.4, gt=0, le=1, doc="target skip rate")
    controller_skip_weight: float | None = setting(0.8, gt=0, doc="skip-rate KL penalty")
    controller_train_steps: int = setting(50, ge=1, doc="Adam steps per evaluated batch")
    controller_log_every_steps: int = setting(10, ge=1, doc="accepted for compatibility")
    random_state: int | None = setting(None, ge=0, doc="seed; None: CRC-32 of the experiment")


def import_torch() -> Any:
    """torch, or ``FailedPrecondition`` saying how to install it."""
    try:
        import torch
    except ImportError as exc:
        raise FailedPrecondition(
            "the enas and darts algorithms need torch: pip install 'katib-py[nas]'"
        ) from exc
    return torch


@dataclass(frozen=True)
class Batch:
    """One replayed batch: its evaluated architectures and their rewards (maximised)."""

    index: int
    names: tuple[str, ...]
    arcs: tuple[str, ...]
    rewards: tuple[float, ...]


class ENAS(Algorithm):
    """ENAS macro search (Pham et al. 2018) with a REINFORCE-trained LSTM controller."""

    name = "enas"
    settings_class = ENASSettings
    nas = True

    @classmethod
    def check(cls, experiment: ExperimentInfo, settings: Any) -> None:
        """The experiment needs a complete nasConfig whose operations expand to >= 1 op."""
        config = check_config(experiment.nas_config, cls.name, need_sizes=True)
        if not config.op_choices():
            raise InvalidArgument("experiment.spec.nas_config.operations expand to no op ids")
        import_torch()

    @property
    def config(self) -> NasConfig:
        """The checked NAS config."""
        assert self.experiment.nas_config is not None
        return self.experiment.nas_config

    def suggest(self, history: History, count: int) -> SuggestResult:
        """``count`` architectures from the controller trained on the finished batches."""
        torch = import_torch()
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # a small LSTM: more threads only contend
        try:
            return self._suggest(torch, history, count)
        finally:
            torch.set_num_threads(threads)

    def _suggest(self, torch: Any, history: History, count: int) -> SuggestResult:
        batches = finished_batches(history, self.experiment.direction.value == "minimize")
        trainer = _trainer_for(self, batches)
        generator = torch.Generator().manual_seed(
            int(self.rng(history, "enas-sample", seed=self.stable_seed).integers(2**62))
        )
        choices = self.config.op_choices()
        batch = next_batch_index(history)
        suggestions = []
        with torch.no_grad():
            for i in range(count):
                arc = trainer.controller(generator=generator).arc
                nn_config = {
                    "num_layers": self.config.num_layers,
                    "input_sizes": list(self.config.input_sizes),
                    "output_sizes": list(self.config.output_sizes),
                    "embedding": {row[0]: choices[row[0]].as_dict() for row in arc},
                }
                point = {"architecture": quote(arc), "nn_config": quote(nn_config)}
                labels = {BATCH_LABEL: str(batch), INDEX_LABEL: str(i)}
                suggestions.append(Suggestion(point, labels))
        return SuggestResult(suggestions)


def next_batch_index(history: History) -> int:
    """One past the largest batch label in the history (0 for a new experiment)."""
    indices = [_int_label(t, BATCH_LABEL) for t in history.trials]
    return max((i for i in indices if i is not None), default=-1) + 1


def finished_batches(history: History, minimize: bool) -> list[Batch]:
    """Labelled batches with no trial pending, in batch order, with their evaluated trials.

    A trial's reward is its objective value (negated when minimising); trials that failed or
    reported no value are left out, and so is a batch none of whose trials has a value.
    """
    groups: dict[int, list[Trial]] = {}
    for trial in history.trials:
        index = _int_label(trial, BATCH_LABEL)
        if index is not None:
            groups.setdefault(index, []).append(trial)
    batches = []
    for index in sorted(groups):
        trials = sorted(groups[index], key=lambda t: (_int_label(t, INDEX_LABEL) or 0, t.name))
        if any(t.state is TrialState.PENDING for t in trials):
            continue
        done = [t for t in trials if t.value is not None and t.point and _arc_of(t)]
        if not done:
            continue
        rewards = tuple(-float(t.value) if minimize else float(t.value) for t in done)  # type: ignore[arg-type]
        arcs = tuple(str(t.point["architecture"]) for t in done)  # type: ignore[index]
        batches.append(Batch(index, tuple(t.name for t in done), arcs, rewards))
    return batches


def _int_label(trial: Trial, key: str) -> int | None:
    try:
        return int(trial.labels[key])
    except (KeyError, ValueError):
        return None


def _arc_of(trial: Trial) -> bool:
    if trial.state not in (TrialState.SUCCEEDED, TrialState.EARLY_STOPPED):
        return False
    try:
        arc = unquote(str((trial.point or {}).get("architecture", "")))
    except ValueError:
        logger.warning("trial %s: unreadable architecture ignored", trial.name)
        return False
    return isinstance(arc, list)


class _Trainer:
    """A controller, its optimiser and baseline, and the batches already replayed into it."""

    def __init__(self, algorithm: ENAS) -> None:
        torch = import_torch()
        from katib.nas.enas.controller import Controller, ControllerConfig, ReinforceConfig

        s: ENASSettings = algorithm.settings
        cfg = algorithm.config
        init = torch.Generator().manual_seed(algorithm.stable_seed)
        self.controller = Controller(
            ControllerConfig(
                num_layers=cfg.num_layers,
                num_ops=len(cfg.op_choices()),
                hidden_size=s.controller_hidden_size,
                temperature=s.controller_temperature,
                tanh_const=s.controller_tanh_const,
                skip_target=s.controller_skip_target,
            ),
            init,
        )
        self.optimizer = torch.optim.Adam(
            self.controller.parameters(), lr=s.controller_learning_rate
        )
        self.reinforce = ReinforceConfig(
            learning_rate=s.controller_learning_rate,
            entropy_weight=s.controller_entropy_weight,
            skip_weight=s.controller_skip_weight,
            baseline_decay=s.controller_baseline_decay,
            train_steps=s.controller_train_steps,
        )
        self.baseline: float | None = None
        self.replayed: list[Batch] = []

    def replay(self, batches: list[Batch]) -> None:
        """Apply the batches after those already replayed (``batches`` extends them)."""
        from katib.nas.enas.controller import reinforce_step

        for batch in batches[len(self.replayed) :]:
            arcs = [unquote(a) for a in batch.arcs]
            self.baseline = reinforce_step(
                self.controller,
                self.optimizer,
                arcs,
                list(batch.rewards),
                self.baseline,
                self.reinforce,
            )
            self.replayed.append(batch)


_CACHE: OrderedDict[tuple[Any, ...], _Trainer] = OrderedDict()
_CACHE_SIZE = 16
_CACHE_LOCK = threading.Lock()


def _trainer_for(algorithm: ENAS, batches: list[Batch]) -> _Trainer:
    """A trainer replayed over ``batches``, continuing a cached one when it is a prefix."""
    key = (
        algorithm.experiment.name,
        algorithm.stable_seed,
        repr(algorithm.settings),
        repr(algorithm.config),
    )
    with _CACHE_LOCK:
        trainer = _CACHE.pop(key, None)
    if trainer is None or batches[: len(trainer.replayed)] != trainer.replayed:
        trainer = _Trainer(algorithm)
    trainer.replay(batches)
    with _CACHE_LOCK:
        _CACHE[key] = trainer
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return trainer
