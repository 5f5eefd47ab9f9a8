"""Regenerate the Python modules for proto/corral/v1/*.proto.

    python proto/generate.py          # rewrite the generated modules
    python proto/generate.py --check  # exit 1 if the committed modules are stale

Generated files are never edited by hand.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent
PACKAGE_DIR = PROTO_ROOT / "corral" / "v1"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")
BIN = Path(sys.executable).parent


def generate(out_root: Path) -> list[Path]:
    sources = sorted(PACKAGE_DIR.glob("*.proto"))
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"--python_out={out_root}",
        f"--plugin=protoc-gen-mypy={BIN / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={BIN / 'protoc-gen-mypy_grpc'}",
        f"--mypy_out={out_root}",
        f"--mypy_grpc_out={out_root}",
        f"--grpc_python_out={out_root}",
        *[str(s.relative_to(PROTO_ROOT)) for s in sources],
    ]
    subprocess.run(cmd, check=True, cwd=PROTO_ROOT)
    return sorted(p for p in (out_root / "corral" / "v1").iterdir() if p.name.endswith(GENERATED_SUFFIXES))


def committed_files() -> list[Path]:
    return sorted(p for p in PACKAGE_DIR.iterdir() if p.name.endswith(GENERATED_SUFFIXES))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="fail if generated code is stale")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        if args.check:
            stale = []
            fresh_names = {p.name: p for p in fresh}
            committed_names = {p.name: p for p in committed_files()}
            for name in sorted(set(fresh_names) | set(committed_names)):
                a, b = fresh_names.get(name), committed_names.get(name)
                if a is None or b is None or a.read_bytes() != b.read_bytes():
                    stale.append(name)
            if stale:
                print("generated protobuf code is stale: " + ", ".join(stale), file=sys.stderr)
                print("fix: python proto/generate.py", file=sys.stderr)
                return 1
            print(f"generated protobuf code is current ({len(fresh)} files)")
            return 0
        for old in committed_files():
            old.unlink()
        for new in fresh:
            shutil.copy2(new, PACKAGE_DIR / new.name)
        print(f"wrote {len(fresh)} files to {PACKAGE_DIR.relative_to(PROTO_ROOT.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
