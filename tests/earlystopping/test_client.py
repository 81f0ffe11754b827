"""EarlyStoppingClient against the real service and DB service."""

from __future__ import annotations

from concurrent import futures
from typing import Any

import grpc
import pytest

from katib.api import api_pb2 as pb
from katib.api import api_pb2_grpc
from katib.api.errors import InvalidArgument, Unavailable
from katib.db.testing import free_port
from katib.earlystopping.client import EarlyStoppingClient, rule_from_proto
from katib.earlystopping.rules import Comparison, Rule, RuleEvaluator, RuleSet, Semantics
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
        assert es.rule_set(exp, trials, db_server.address) == RuleSet(tuple(rules), Semantics.ANY)
    with EarlyStoppingClient(es_server.address, semantics=Semantics.KATIB) as es:
        assert es.rules(exp, trials, db_server.address) == rules[:1]
        answer = es.rule_set(exp, trials, db_server.address)
        assert answer == RuleSet(tuple(rules[:1]), Semantics.KATIB)


class SilentRules(api_pb2_grpc.EarlyStoppingServicer):
    """Katib's service: two rules, and no word about their form."""

    def GetEarlyStoppingRules(self, request: Any, context: Any) -> Any:
        reply = pb.GetEarlyStoppingRulesReply()
        reply.early_stopping_rules.add(name="loss", value="1", comparison=pb.GREATER, start_step=1)
        reply.early_stopping_rules.add(name="acc", value="0.5", comparison=pb.LESS, start_step=2)
        return reply


def test_a_service_that_does_not_echo_answered_in_katibs_form():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    api_pb2_grpc.add_EarlyStoppingServicer_to_server(SilentRules(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with EarlyStoppingClient(f"127.0.0.1:{port}") as es:  # asks for "any"
            answer = es.rule_set(pb.Experiment(), [], "127.0.0.1:1")
    finally:
        server.stop(None)
    assert answer.semantics is Semantics.KATIB and len(answer.rules) == 2
    # Katib's form: the trial stops once both rules were met, not at the first
    evaluator = answer.evaluator("loss", maximize=False)
    assert [evaluator.add("loss", 2.0), evaluator.add("acc", 0.9)] == [False, False]
    assert evaluator.add("acc", 0.4) and evaluator.stopped_by == answer.rules[1]


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


class Stopping(api_pb2_grpc.EarlyStoppingServicer):
    """Cancels every call unrun, as gRPC does to calls that reach a server in its graceful stop."""

    def ValidateEarlyStoppingSettings(self, request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.CANCELLED, "CANCELLED")


def test_a_call_cancelled_by_a_stopping_service_is_unavailable():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    api_pb2_grpc.add_EarlyStoppingServicer_to_server(Stopping(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with (
            EarlyStoppingClient(f"127.0.0.1:{port}", timeout=10) as es,
            pytest.raises(Unavailable, match="CANCELLED"),
        ):
            es.validate("medianstop")
    finally:
        server.stop(None)
