"""``darts``: Katib's DARTS suggestion, which hands the search configuration to the trial.

DARTS searches inside one trial (:mod:`katib.nas.darts.search`); the suggestion only gives each
requested trial Katib's three assignments (JSON with ``'`` quotes):

* ``algorithm-settings``: every setting with its default or the user's value (``None`` -> null);
* ``search-space``: the primitive names, ``skip_connection`` as is and ``<op>_<k>x<k>`` for each
  value of an operation's first parameter;
* ``num-layers``: the graph's ``num_layers``.

Unlike Katib's service, it answers any number of calls (Katib's raises on the second), and
unknown settings are rejected rather than passed through.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from katib.api.errors import InvalidArgument
from katib.api.settings import setting
from katib.nas.config import NasConfig, check_config, quote
from katib.suggestion.base import Algorithm, ExperimentInfo, Suggestion, SuggestResult
from katib.suggestion.history import History


@dataclass(frozen=True)
class DARTSSettings:
    """Katib's DARTS settings, defaults and ranges (KATIB_REFERENCE §2.8)."""

    num_epochs: int = setting(50, gt=0, doc="search epochs")
    w_lr: float = setting(0.025, ge=0, doc="network weights' initial learning rate")
    w_lr_min: float = setting(0.001, ge=0, doc="cosine schedule's final learning rate")
    w_momentum: float = setting(0.9, ge=0, doc="SGD momentum of the weights")
    w_weight_decay: float = setting(3e-4, ge=0, doc="weight decay of the weights")
    w_grad_clip: float = setting(5.0, ge=0, doc="gradient-norm clip of the weights")
    alpha_lr: float = setting(3e-4, ge=0, doc="Adam learning rate of the architecture weights")
    alpha_weight_decay: float = setting(1e-3, ge=0, doc="weight decay of alpha")
    batch_size: int | None = setting(128, ge=1, doc="mini-batch size; None: the trial's own")
    num_workers: int = setting(4, ge=0, doc="data-loader workers")
    init_channels: int = setting(16, ge=1, doc="channels of the first cell")
    print_step: int = setting(50, ge=1, doc="log every this many steps")
    num_nodes: int = setting(4, ge=1, doc="intermediate nodes per cell")
    stem_multiplier: int = setting(3, ge=1, doc="stem channels = multiplier x init_channels")


class DARTS(Algorithm):
    """DARTS (Liu et al. 2019): every trial gets the same search configuration."""

    name = "darts"
    settings_class = DARTSSettings
    uses_objective = False
    nas = True

    @classmethod
    def check(cls, experiment: ExperimentInfo, settings: Any) -> None:
        """The experiment needs nasConfig operations with at least one parameter each."""
        config = check_config(experiment.nas_config, cls.name, need_sizes=False)
        if not config.darts_primitives():
            raise InvalidArgument("experiment.spec.nas_config.operations give no primitives")

    def suggest(self, history: History, count: int) -> SuggestResult:
        """``count`` identical assignments of the search configuration."""
        config: NasConfig | None = self.experiment.nas_config
        assert config is not None
        point = {
            "algorithm-settings": quote(dataclasses.asdict(self.settings)),
            "search-space": quote(config.darts_primitives()),
            "num-layers": str(config.num_layers),
        }
        return SuggestResult([Suggestion(dict(point)) for _ in range(count)])
