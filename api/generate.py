"""Regenerate the Python modules for ``api.proto``.

Run from anywhere after editing the proto::

    python -m katib.api.generate        # or: python api/generate.py

The proto is compiled as ``katib/api/api.proto`` so the generated gRPC module imports
``katib.api.api_pb2`` (Katib's own stubs use a bare ``import api_pb2``, which needs ``sys.path``
tricks). ``tests/api/test_generated.py`` fails when the committed modules are stale.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

API_DIR = Path(__file__).resolve().parent
PROTO = API_DIR / "api.proto"
GENERATED = ("api_pb2.py", "api_pb2.pyi", "api_pb2_grpc.py")


def generate(out_dir: Path) -> list[Path]:
    """Compile ``api.proto`` into ``out_dir`` and return the generated files."""
    from grpc_tools import protoc  # build-time dependency only

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        package_dir = root / "katib" / "api"
        package_dir.mkdir(parents=True)
        shutil.copy(PROTO, package_dir / "api.proto")
        well_known = Path(protoc.__file__).parent / "_proto"
        status = protoc.main(
            [
                "grpc_tools.protoc",
                f"-I{root}",
                f"-I{well_known}",
                f"--python_out={root}",
                f"--pyi_out={root}",
                f"--grpc_python_out={root}",
                str(package_dir / "api.proto"),
            ]
        )
        if status != 0:
            raise RuntimeError(f"protoc failed with exit status {status}")
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for name in GENERATED:
            target = out_dir / name
            shutil.copy(package_dir / name, target)
            written.append(target)
        return written


def main() -> int:
    """Regenerate the modules beside the proto."""
    for path in generate(API_DIR):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
