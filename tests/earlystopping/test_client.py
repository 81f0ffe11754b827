"""EarlyStoppingClient against the real service and DB service."""

from __future__ import annotations

import pytest

from katib.api import api_pb2 as pb
from katib.api.errors import InvalidArgument, Unavailable
from katib.db.testing import free_port
from katib.earlystopping.client import EarlyStoppingClient, rule_from_proto
from katib.earlystopping.rules import Comparison, Rule, RuleEvaluator, Semantics
from tests.earlystopping.conftest import experiment, trial


def test_client_round_trip(es_server, db_server, report):
    names = [report("loss", [4, 2, 1]), report("loss", [6, 4, 3]), report("loss", [2, 2, 2])]
    exp = experiment(settings=[("start_step", "1")])
    trials = [trial(n) for n in names]
    with EarlyStoppingClient(es_server.address) as es:
        es.wait_ready(timeout=10)
        es.validate("medianstop", [("start_step", "2")])
        with pytest.raises(InvalidArgument, match="start_step must be greater or equal"):
            es.validate("medianstop", [("start_step", "0")])
        rules = es.rules(exp, trials, db_server.address)
        # running means (4 3 7/3) (6 5 13/3) (2 2 2): medians 4, 3, 7/3
        assert rules == [
            Rule("loss", 4.0, Comparison.GREATER, 1),
            Rule("loss", 3.0, Comparison.GREATER, 2),
            Rule("loss", pytest.approx(7 / 3), Comparison.GREATER, 3),
        ]
        evaluator = RuleEvaluator(rules, "loss", maximize=False)
        assert [evaluator.add("loss", v) for v in (3.5, 3.2)] == [False, True]
        es.set_trial_status("stopped-trial")
    with EarlyStoppingClient(es_server.address, semantics=Semantics.KATIB) as es:
        assert es.rules(exp, trials, db_server.address) == rules[:1]


def test_client_errors(es_server):
    with EarlyStoppingClient(f"127.0.0.1:{free_port()}", timeout=5) as es:
        with pytest.raises(Unavailable):
            es.validate("medianstop")
        with pytest.raises(TimeoutError):
            es.wait_ready(timeout=0.5)
    bad = pb.EarlyStoppingRule(name="loss", value="high", comparison=pb.GREATER, start_step=1)
    with pytest.raises(InvalidArgument, match="value 'high' is not a number"):
        rule_from_proto(bad)
    unknown = pb.EarlyStoppingRule(name="loss", value="1", start_step=0)
    assert rule_from_proto(unknown).comparison is Comparison.EQUAL
