"""The scanner cores' contract is defined once (ptfast.scan._corespec): the compiled classes, the
twin's records and the .pyi stubs must all carry exactly its field lists, and every limit and
sentinel is _corespec's, in both cores and everywhere else."""

import ast
import os
import re
import subprocess
import sys
import types

import pytest

from ptfast.scan import _corespec, _procscan_py
from ptfast.foundation import config

from helpers.proctree import TCP_HEADER, stat_line, write

PACKAGE = os.path.dirname(_procscan_py.__file__)
PYX = os.path.join(PACKAGE, "..", "..", "src_pyx", "_procscan.pyx")
#: _corespec's constants: its upper-case names
CONTRACT_CONSTANTS = {name for name in vars(_corespec) if name.isupper()}

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


def test_no_module_defines_a_contract_constant_again():
    """A limit or sentinel lives once: no other module of ptfast assigns one of its names."""
    again = []
    for name in sorted(os.listdir(PACKAGE)):
        if not name.endswith(".py") or name == "_corespec.py":
            continue
        with open(os.path.join(PACKAGE, name)) as handle:
            tree = ast.parse(handle.read())
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else (
                [node.target] if isinstance(node, ast.AnnAssign) else [])
            again += [f"{name}: {target.id}" for target in targets
                      if isinstance(target, ast.Name) and target.id in CONTRACT_CONSTANTS]
    assert again == []


def test_the_compiled_core_takes_or_checks_every_contract_constant():
    """In the .pyx a contract name is either taken from _corespec or compiled in (a C array's
    size) and then listed in COMPILED_CONSTANTS, which its import compares with _corespec."""
    with open(PYX) as handle:
        source = handle.read()
    compiled_in = re.search(r"COMPILED_CONSTANTS = \{(.*?)\}", source, re.S).group(1)
    unchecked = []
    for match in re.finditer(r"^\s*(?:cdef [\w ]+ )?([A-Z][A-Z0-9_]*) = (.*)$", source, re.M):
        name, value = match.groups()
        if (name in CONTRACT_CONSTANTS and not re.match(rf"_corespec\.{name}\b", value)
                and f'"{name}"' not in compiled_in):
            unchecked.append(name)
    assert unchecked == []


def test_compiled_constants_equal_the_contract(compiled_core):
    constants = dict(compiled_core.COMPILED_CONSTANTS)
    # kcmp's number: the C headers' in the compiled core, the twin's own table in the twin
    assert constants.pop("SYS_kcmp") == _procscan_py.KCMP_SYSCALLS.get(os.uname().machine)
    assert constants == {name: getattr(_corespec, name) for name in constants}
    assert {"MAX_FD_TABLES", "SMALL_FILE_MAX", "LINK_MAX", "UPTIME_MAX"} <= constants.keys()


def test_the_twin_and_the_settings_use_the_contract_values():
    for name in ("PID_MAX_LIMIT", "MAX_FD_TABLES", "NETNS_UNKNOWN", "NO_PORT"):
        assert getattr(_procscan_py, name) is getattr(_corespec, name)
    assert config.PID_MAX_LIMIT is _corespec.PID_MAX_LIMIT


def test_the_twin_uses_only_public_names_of_the_probe():
    with open(_procscan_py.__file__) as handle:
        source = handle.read()
    assert re.findall(r"_sockprobe\._\w+", source) == []


def test_ports_exist_only_for_protocols_with_ports():
    for proto in ("tcp", "tcp6", "udp", "udp6", "udplite", "udplite6", "sctp", "mptcp6"):
        assert _corespec.has_ports(proto)
    for proto in ("raw", "raw6", "icmp", "icmp6", "packet", "af_vsock", "xdp", "unknown"):
        assert not _corespec.has_ports(proto)


def test_an_unreadable_network_namespace_is_the_same_sentinel_in_both_cores(core, tmp_path):
    """A process whose ns/net link names no namespace holds a socket in no table: neither core
    takes that for a namespace of its own to read (one core said -1, the other 0)."""
    root = str(tmp_path)
    write(f"{root}/uptime", "1000.50 1900.00\n")
    os.makedirs(f"{root}/self/ns")
    os.symlink("net:[4026531840]", f"{root}/self/ns/net")
    write(f"{root}/net/tcp", TCP_HEADER)
    base = f"{root}/4242"
    write(f"{base}/stat", stat_line(4242, "x", 1, 50))
    write(f"{base}/status", "Name:\tx\nUid:\t1000\t1000\t1000\t1000\n")
    write(f"{base}/cmdline", "x")
    write(f"{base}/net/tcp", TCP_HEADER + "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000"
          " 00:00000000 00000000  1000        0 777 1 0000000000000000 100 0 0 10 0\n")
    os.symlink("/bin/x", f"{base}/exe")
    os.makedirs(f"{base}/ns")
    os.symlink("net:[not-a-number]", f"{base}/ns/net")
    os.makedirs(f"{base}/fd")
    os.symlink("socket:[777]", f"{base}/fd/3")
    processes, table, stats = core.scan(root, True)
    [proc] = processes
    assert stats["namespaces"] == 1
    assert 777 not in table


def test_the_compiled_core_refuses_to_import_against_another_contract(compiled_core):
    """Its check is no assert: python -O keeps it."""
    code = ("from ptfast.scan import _corespec\n"
            "_corespec.MAX_FD_TABLES += 1\n"
            "try:\n"
            "    from ptfast.scan import _procscan\n"
            "except ImportError as exc:\n"
            "    print(exc)\n")
    result = subprocess.run([sys.executable, "-O", "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"MAX_FD_TABLES is {_corespec.MAX_FD_TABLES} here, {_corespec.MAX_FD_TABLES + 1} in ptfast.scan._corespec" in result.stdout
