"""The scanner cores' contract is defined once (ptfast._corespec): the compiled classes, the
twin's records and the .pyi stubs must all carry exactly its field lists."""

import ast
import os
import types

import pytest

from ptfast import _corespec, _procscan_py

STUBS = os.path.join(os.path.dirname(_procscan_py.__file__), "_procscan.pyi")


def stub_fields(class_name: str) -> tuple:
    with open(STUBS) as handle:
        tree = ast.parse(handle.read())
    [cls] = [node for node in tree.body
             if isinstance(node, ast.ClassDef) and node.name == class_name]
    return tuple(node.target.id for node in cls.body if isinstance(node, ast.AnnAssign))


def compiled_fields(cls) -> set:
    return {name for name, value in vars(cls).items()
            if isinstance(value, types.GetSetDescriptorType)}


@pytest.mark.parametrize("name, fields", [("Process", _corespec.PROCESS_FIELDS),
                                          ("Socket", _corespec.SOCKET_FIELDS)])
def test_stubs_and_twin_carry_the_contract_fields_in_order(name, fields):
    assert stub_fields(name) == fields
    assert getattr(_procscan_py, name).__slots__ == fields


@pytest.mark.parametrize("name, fields", [("Process", _corespec.PROCESS_FIELDS),
                                          ("Socket", _corespec.SOCKET_FIELDS)])
def test_compiled_classes_carry_the_contract_fields(compiled_core, name, fields):
    assert compiled_fields(getattr(compiled_core, name)) == set(fields)


def test_state_tables_differ_only_where_datagrams_mean_unconnected():
    stream, dgram = _corespec.STREAM_STATE_NAMES, _corespec.DGRAM_STATE_NAMES
    assert len(stream) == len(dgram)
    assert [i for i, (a, b) in enumerate(zip(stream, dgram)) if a != b] == [7]
    assert stream[10] == "LISTEN" and dgram[7] == "UNCONN"


def test_stat_fields_are_read_by_name():
    line = b"42 (a) (b) S 1 42 42 0 -1 4194560 " + b" ".join(
        str(n).encode() for n in range(10, 53))
    fields = _corespec.parse_stat(line)
    assert _corespec.stat_field(fields, _corespec.STAT_PPID) == b"1"
    assert _corespec.stat_field(fields, _corespec.STAT_STARTTIME) == b"22"
    assert _corespec.stat_field(fields, _corespec.STAT_RSS) == b"24"
    assert _corespec.parse_stat(b"42 (x) S 1 2 3") is None      # too short to be one
