"""Regenerate the gRPC stubs of protocol/*.proto with the pinned grpcio-tools.

`python scripts/gen_protos.py` rewrites the checked-in stubs; `--check` regenerates into a
temporary tree and fails if anything differs (the test suite runs that). Each proto is mapped
into its package with a virtual include path, so the generated modules import each other by
package name and need no editing afterwards.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
# proto file in protocol/ -> the package its stubs live in
STUBS = {
    "agent.proto": "aetherfs/agent/proto",
    "hub.proto": "aetherfs/hub/grpc_gen",
}


def generate(out_root: Path) -> None:
    for proto, package in STUBS.items():
        (out_root / package).mkdir(parents=True, exist_ok=True)
        args = [
            "protoc",
            f"-I{package}={ROOT / 'protocol'}",
            f"-I{Path(protoc.__file__).parent / '_proto'}",
            f"--python_out={out_root}",
            f"--pyi_out={out_root}",
            f"--grpc_python_out={out_root}",
            f"{package}/{proto}",
        ]
        if protoc.main(args) != 0:
            raise SystemExit(f"protoc failed on protocol/{proto}")


def generated_files(package: str, proto: str) -> list[str]:
    stem = proto.removesuffix(".proto")
    return [
        f"{package}/{stem}_pb2.py",
        f"{package}/{stem}_pb2.pyi",
        f"{package}/{stem}_pb2_grpc.py",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the stubs are stale")
    args = parser.parse_args()
    if not args.check:
        generate(ROOT)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        stale = [
            name
            for proto, package in STUBS.items()
            for name in generated_files(package, proto)
            if not (ROOT / name).exists() or not filecmp.cmp(Path(tmp) / name, ROOT / name, False)
        ]
    if stale:
        print("stale gRPC stubs (run python scripts/gen_protos.py):", *stale, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
