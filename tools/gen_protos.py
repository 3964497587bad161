"""Generate Python gRPC stubs (+ .pyi types) for every proto under proto/.

Output goes to libs/contracts/src, so ``proto/inbox/presence/v1/presence.proto`` becomes the
importable module ``inbox.presence.v1.presence_pb2``. Run: ``make proto``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
OUT_DIR = ROOT / "libs" / "contracts" / "src"


def main() -> int:
    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    if not protos:
        print("no protos found", file=sys.stderr)
        return 1
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{include}",
        f"--python_out={OUT_DIR}",
        f"--grpc_python_out={OUT_DIR}",
        f"--mypy_out={OUT_DIR}",
        f"--mypy_grpc_out={OUT_DIR}",
        *protos,
    ]
    if code := protoc.main(args):
        return int(code)
    for package_dir in {(OUT_DIR / p).parent for p in protos}:
        while package_dir != OUT_DIR:
            (package_dir / "__init__.py").touch()
            package_dir = package_dir.parent
    print(f"generated stubs for {len(protos)} protos into {OUT_DIR.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
