"""The generated modules match the proto, and the proto matches Katib's on the wire."""

from __future__ import annotations

import json
from pathlib import Path

from google.protobuf import descriptor_pb2

from katib.api import api_pb2
from katib.api.generate import API_DIR, GENERATED, generate
from tests.katib_stubs import run_with_katib_stubs


def test_generated_modules_are_fresh(tmp_path: Path) -> None:
    generate(tmp_path)
    for name in GENERATED:
        fresh = (tmp_path / name).read_text()
        committed = (API_DIR / name).read_text()
        assert fresh == committed, f"api/{name} is stale: run `python -m katib.api.generate`"


_DUMP_KATIB = """
import json
from google.protobuf import descriptor_pb2
from kubeflow.katib import katib_api_pb2
fd = descriptor_pb2.FileDescriptorProto()
katib_api_pb2.DESCRIPTOR.CopyToProto(fd)
print(fd.SerializeToString().hex())
"""


def _shape(fd: descriptor_pb2.FileDescriptorProto) -> dict[str, object]:
    """Everything that decides the wire format and the RPC paths, nothing cosmetic."""
    shape: dict[str, object] = {"package": fd.package}

    def message(prefix: str, m: descriptor_pb2.DescriptorProto) -> None:
        shape[f"message {prefix}{m.name}"] = sorted(
            (f.number, f.name, f.label, f.type, f.type_name) for f in m.field
        )
        for e in m.enum_type:
            shape[f"enum {prefix}{m.name}.{e.name}"] = sorted((v.number, v.name) for v in e.value)
        for nested in m.nested_type:
            message(f"{prefix}{m.name}.", nested)

    for m in fd.message_type:
        message("", m)
    for e in fd.enum_type:
        shape[f"enum {e.name}"] = sorted((v.number, v.name) for v in e.value)
    for s in fd.service:
        shape[f"service {s.name}"] = sorted(
            (r.name, r.input_type, r.output_type) for r in s.method
        )
    return shape


def test_proto_is_wire_identical_to_katib() -> None:
    theirs = descriptor_pb2.FileDescriptorProto.FromString(
        bytes.fromhex(run_with_katib_stubs(_DUMP_KATIB).strip())
    )
    ours = descriptor_pb2.FileDescriptorProto()
    api_pb2.DESCRIPTOR.CopyToProto(ours)
    mine, katib = _shape(ours), _shape(theirs)
    assert json.dumps(mine, sort_keys=True) == json.dumps(katib, sort_keys=True)
    assert len(katib) > 50  # the comparison really covered the whole API
