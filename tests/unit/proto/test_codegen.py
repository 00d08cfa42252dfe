"""The checked-in generated protobuf code matches the .proto files."""

from __future__ import annotations

from mensa.proto import codegen


def test_generated_code_is_up_to_date() -> None:
    assert codegen.main(["--check"]) == 0, "run `python -m mensa.proto.codegen` and commit the result"


def test_every_proto_has_generated_modules() -> None:
    for name in codegen.PROTOS:
        stem = name.removesuffix(".proto")
        assert (codegen.HERE / f"{stem}_pb2.py").exists()
        assert (codegen.HERE / f"{stem}_pb2.pyi").exists()
