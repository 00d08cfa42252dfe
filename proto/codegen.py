"""Regenerates the checked-in protobuf Python code: ``python -m mensa.proto.codegen``.

The generated modules import each other as ``mensa.proto.*_pb2`` because protoc is run over a
temporary tree in which ``mensa/proto`` points at this folder. ``--check`` generates into a
temporary directory instead and exits non-zero when the checked-in files differ (the test suite
runs it, so stale generated code fails CI).
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTOS = sorted(p.name for p in HERE.glob("*.proto"))


def generate(out_dir: Path) -> list[Path]:
    """Runs protoc (grpcio-tools' bundled one) over every .proto here; writes into ``out_dir``."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        (src / "mensa" / "proto").mkdir(parents=True)
        for name in PROTOS:
            shutil.copy(HERE / name, src / "mensa" / "proto" / name)
        gen = Path(tmp) / "gen"
        gen.mkdir()
        cmd = [
            sys.executable, "-m", "grpc_tools.protoc", f"-I{src}",
            f"--python_out={gen}", f"--pyi_out={gen}",
            *(f"mensa/proto/{name}" for name in PROTOS),
        ]
        subprocess.run(cmd, check=True)
        written = []
        for path in sorted((gen / "mensa" / "proto").iterdir()):
            target = out_dir / path.name
            shutil.copy(path, target)
            written.append(target)
        return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if checked-in code is stale")
    args = parser.parse_args(argv)
    if not args.check:
        for path in generate(HERE):
            print(f"wrote {path.relative_to(HERE.parent)}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        stale = [p.name for p in generate(Path(tmp)) if not (HERE / p.name).exists()
                 or not filecmp.cmp(p, HERE / p.name, shallow=False)]
    if stale:
        print("stale generated code, run `python -m mensa.proto.codegen`: " + ", ".join(stale))
        return 1
    print("generated code is up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
