"""Register the ``DBManager`` servicer so that an undecodable request is INVALID_ARGUMENT.

The generated ``add_DBManagerServicer_to_server`` lets grpc decode each request; bytes that are
not a valid message (a string field holding invalid UTF-8, truncated or garbage data) then end
the call with INTERNAL "Exception deserializing request!", which reads as a server bug and tells
a client nothing. Here each method's deserializer never raises: it hands the servicer an
:class:`Undecodable` marker, and the call is answered INVALID_ARGUMENT naming the message type.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from katib.api import api_pb2
from katib.db.service import SERVICE_NAME

#: Method name -> (request type, reply type), as in ``api.proto``.
METHODS: dict[str, tuple[Any, Any]] = {
    "ReportObservationLog": (
        api_pb2.ReportObservationLogRequest,
        api_pb2.ReportObservationLogReply,
    ),
    "GetObservationLog": (api_pb2.GetObservationLogRequest, api_pb2.GetObservationLogReply),
    "DeleteObservationLog": (
        api_pb2.DeleteObservationLogRequest,
        api_pb2.DeleteObservationLogReply,
    ),
}


@dataclass(frozen=True)
class Undecodable:
    """A request whose bytes are not a valid message of the method's request type."""

    message: str


def _lenient(request_type: Any) -> Callable[[bytes], Any]:
    name = request_type.DESCRIPTOR.full_name

    def decode(data: bytes) -> Any:
        try:
            return request_type.FromString(data)
        except (DecodeError, ValueError) as exc:
            return Undecodable(
                f"the request is not a valid {name} message (is every string field valid "
                f"UTF-8?): {exc}"
            )

    return decode


def _guard(method: Callable[[Any, grpc.ServicerContext], Any]) -> Callable[..., Any]:
    def call(request: Any, context: grpc.ServicerContext) -> Any:
        if isinstance(request, Undecodable):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
        return method(request, context)

    return call


def add_db_manager(servicer: Any, server: grpc.Server) -> None:
    """Register ``servicer`` (a ``DBManagerServicer``) on ``server`` with lenient decoding."""
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            _guard(getattr(servicer, name)),
            request_deserializer=_lenient(request_type),
            response_serializer=reply_type.SerializeToString,
        )
        for name, (request_type, reply_type) in METHODS.items()
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),)
    )
    register = getattr(server, "add_registered_method_handlers", None)  # grpcio >= 1.62
    if register is not None:
        register(SERVICE_NAME, handlers)
