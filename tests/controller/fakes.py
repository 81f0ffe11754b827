"""Loopback gRPC servicers with scripted answers: a Suggestion and an EarlyStopping service."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from typing import Any

import grpc

from katib.api import api_pb2 as pb
from katib.api import api_pb2_grpc
from katib.earlystopping.rules import SEMANTICS_KEY

Answer = Callable[[pb.GetSuggestionsRequest], pb.GetSuggestionsReply]


class ScriptedSuggestion(api_pb2_grpc.SuggestionServicer):
    """Answers GetSuggestions with ``answer(request)``; records every request."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[pb.GetSuggestionsRequest] = []

    def GetSuggestions(self, request: Any, context: Any) -> pb.GetSuggestionsReply:
        self.requests.append(request)
        return self.answer(request)

    def ValidateAlgorithmSettings(self, request: Any, context: Any) -> Any:
        return pb.ValidateAlgorithmSettingsReply()


class FixedRules(api_pb2_grpc.EarlyStoppingServicer):
    """Katib's EarlyStopping API returning fixed rules; records SetTrialStatus calls.

    Like Katib's service it answers in Katib's rule form, saying nothing, unless ``announce``
    names the form it echoes (``katib-rule-semantics``). ``rules`` may be a function of the
    request.
    """

    def __init__(
        self,
        rules: list[pb.EarlyStoppingRule] | Callable[[Any], list[pb.EarlyStoppingRule]],
        announce: str | None = None,
    ) -> None:
        self.rules = rules
        self.announce = announce
        self.rule_requests: list[pb.GetEarlyStoppingRulesRequest] = []
        self.stopped: list[str] = []

    def GetEarlyStoppingRules(self, request: Any, context: Any) -> Any:
        self.rule_requests.append(request)
        if self.announce is not None:
            context.set_trailing_metadata(((SEMANTICS_KEY, self.announce),))
        rules = self.rules(request) if callable(self.rules) else self.rules
        return pb.GetEarlyStoppingRulesReply(early_stopping_rules=rules)

    def SetTrialStatus(self, request: Any, context: Any) -> Any:
        self.stopped.append(request.trial_name)
        return pb.SetTrialStatusReply()

    def ValidateEarlyStoppingSettings(self, request: Any, context: Any) -> Any:
        return pb.ValidateEarlyStoppingSettingsReply()


@contextmanager
def serve(servicer: Any) -> Iterator[str]:
    """Serve ``servicer`` on a free loopback port; yields its address."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    if isinstance(servicer, api_pb2_grpc.SuggestionServicer):
        api_pb2_grpc.add_SuggestionServicer_to_server(servicer, server)
    else:
        api_pb2_grpc.add_EarlyStoppingServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)
