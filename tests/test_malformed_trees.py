"""Malformed prepared procfs trees (``--proc-root``) fed to both cores: the same results, in
bounded time.

Rootless: it reads only files it writes. Each core scans in a worker subprocess of its own, so a
core that loops for ever (the compiled one can, with the GIL released, where Ctrl-C does nothing)
is killed after ``SCAN_TIMEOUT`` and reported instead of hanging the suite. An exception is a
result like any other: both cores must raise the same kind (every OSError counts as one kind,
which is what the callers catch).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile

import pytest
from hypothesis import HealthCheck, Phase, given, settings, strategies as st

from ptfast.scan._corespec import PF_FORKNOEXEC

from helpers.proctree import TCP_HEADER, stat_line, tcp_line
from helpers.scan import CORES, core_env

SCAN_TIMEOUT = 5.0       # seconds; a scan of these few files takes milliseconds

WORKER = r"""
import json, sys
from ptfast.scan import _procscan_py
if sys.argv[1] == "compiled":
    from ptfast.scan import _procscan as core
else:
    core = _procscan_py

def plain(value):
    # a record of either core as a dict of its public attributes, whatever they are: a field
    # one core has and the other lacks is a difference too
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return {name: plain(getattr(value, name)) for name in dir(value)
            if not name.startswith("_") and not callable(getattr(value, name))}

for line in sys.stdin:
    try:
        processes, table, stats = core.scan(line.rstrip("\n"), True)
    except Exception as exc:    # only the core's own failure is a result; any other one ends
        outcome = {"error": "OSError" if isinstance(exc, OSError) else type(exc).__name__}
    else:
        outcome = {
            "processes": sorted(plain(processes), key=lambda proc: proc["pid"]),
            "sockets": sorted(plain(list(table.values())), key=lambda sock: sock["inode"]),
            "stats": stats,
        }
    sys.stdout.write(json.dumps(outcome, sort_keys=True) + "\n")
    sys.stdout.flush()
"""


class CoreWorker:
    """One core scanning the trees it is sent, in its own process."""

    def __init__(self, core: str) -> None:
        self.core = core
        self.popen = None
        self.popen_stderr = ""

    def _start(self) -> None:
        self.popen = subprocess.Popen([sys.executable, "-c", WORKER, self.core],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, env=core_env(self.core),
                                      text=True)

    def scan(self, root: str) -> dict:
        if self.popen is None:
            self._start()
        self.popen.stdin.write(root + "\n")
        self.popen.stdin.flush()
        ready, _, _ = select.select([self.popen.stdout], [], [], SCAN_TIMEOUT)
        line = self.popen.stdout.readline() if ready else ""
        if line:
            return json.loads(line)
        self.close()
        if not ready:
            return {"hung": f"no result within {SCAN_TIMEOUT:g} s"}
        return {"crashed": self.popen_stderr}

    def close(self) -> None:
        if self.popen is not None:
            self.popen.kill()
            self.popen.wait()
            self.popen_stderr = self.popen.stderr.read()
            for stream in (self.popen.stdin, self.popen.stdout, self.popen.stderr):
                stream.close()
            self.popen = None


@pytest.fixture(scope="module")
def workers():
    started = {core: CoreWorker(core) for core in CORES}
    yield started
    for worker in started.values():
        worker.close()


# -- the well-formed tree every case starts from -------------------------------------------

PID = "4242"
CONTAINER_PID = "4343"


def status_text(uid: str = "1000") -> bytes:
    return f"Name:\tx\nState:\tS (sleeping)\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nGid:\t0\t0\t0\t0\n" \
        .encode()


def well_formed_tree() -> tuple[dict, dict]:
    """(files, links) of a small procfs: relative path -> bytes content, -> link target."""
    empty_table = TCP_HEADER.encode()
    files = {
        "uptime": b"1000.50 1900.00\n",
        "net/tcp": (TCP_HEADER + tcp_line("0100007F:1F90", "00000000:0000", "0A", 111)
                    + tcp_line("0A00A8C0:C350", "0B00A8C0:01BB", "01", 222)).encode(),
        "net/tcp6": (TCP_HEADER + tcp_line("0000000000000000FFFF00000100007F:0050",
                                           "00000000000000000000000000000000:0000", "0A", 333)
                     ).encode(),
        "net/udp": (TCP_HEADER + tcp_line("00000000:0035", "00000000:0000", "07", 444)).encode(),
        "net/udp6": empty_table, "net/raw": empty_table, "net/raw6": empty_table,
        f"{PID}/stat": stat_line(PID, "a) (b", 1, 50, flags=PF_FORKNOEXEC).encode(),
        f"{PID}/status": status_text(),
        f"{PID}/cmdline": b"/tmp/x\0-l\0\0",
        f"{CONTAINER_PID}/stat": stat_line(CONTAINER_PID, "srv", 1, 70).encode(),
        f"{CONTAINER_PID}/status": status_text("1001"),
        f"{CONTAINER_PID}/cmdline": b"srv\0",
        # its own network namespace: a socket found in no host table is looked up here
        f"{CONTAINER_PID}/net/tcp": (TCP_HEADER + tcp_line("0100007F:0016", "00000000:0000",
                                                           "0A", 555)).encode(),
        "77/stat": stat_line(77, "kworker/0:1", 2, 1, flags=0x00200000).encode(),
    }
    links = {
        f"{PID}/exe": "/tmp/x",
        f"{PID}/fd/0": "socket:[111]", f"{PID}/fd/1": "socket:[222]",
        f"{PID}/fd/2": "socket:[333]", f"{PID}/fd/3": "socket:[444]",
        f"{PID}/fd/4": "socket:[999]", f"{PID}/fd/5": "pipe:[5]", f"{PID}/fd/6": "/var/log/x",
        f"{CONTAINER_PID}/exe": "/usr/sbin/srv",
        f"{CONTAINER_PID}/ns/net": "net:[4026532999]",
        f"{CONTAINER_PID}/fd/0": "socket:[555]",
    }
    return files, links


def parent_dirs(paths) -> set:
    dirs = set()
    for path in paths:
        path = os.path.dirname(path)
        while path:
            dirs.add(path)
            path = os.path.dirname(path)
    return dirs


class PreparedTree:
    """One directory rewritten in place for each tree a test scans: only what differs from the
    tree before is removed or written. A fresh directory per tree cost more than both scans
    (creating and removing its ten directories: 2 s of CPU over the 150 random trees)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.entries: dict = {}         # path: ("file", content) or ("link", target)

    def write(self, files: dict, links: dict) -> str:
        assert not set(files) & set(links), "a path is a file and a link"
        wanted = {path: ("file", content) for path, content in files.items()}
        wanted.update((path, ("link", target)) for path, target in links.items())
        old_dirs, new_dirs = parent_dirs(self.entries), parent_dirs(wanted)
        for path, entry in self.entries.items():
            if wanted.get(path) != entry:
                os.unlink(os.path.join(self.root, path))
        for path in sorted(old_dirs - new_dirs, key=lambda path: path.count("/"), reverse=True):
            os.rmdir(os.path.join(self.root, path))
        for path in sorted(new_dirs - old_dirs, key=lambda path: path.count("/")):
            os.mkdir(os.path.join(self.root, path))
        for path, entry in wanted.items():
            if self.entries.get(path) != entry:
                full = os.path.join(self.root, path)
                if entry[0] == "link":
                    os.symlink(entry[1], full)
                else:
                    with open(full, "wb") as handle:
                        handle.write(entry[1])
        self.entries = wanted
        return self.root


@pytest.fixture(scope="module")
def tree():
    with tempfile.TemporaryDirectory(prefix="ptfast-tree-") as root:
        yield PreparedTree(root)


def rename_process(files: dict, links: dict, old: str, new: str) -> None:
    for table in (files, links):
        for path in [path for path in table if path.startswith(old + "/")]:
            table[new + path[len(old):]] = table.pop(path)


def identities(items: list) -> list:
    return [item.get("pid", item.get("inode")) if isinstance(item, dict) else item
            for item in items]


def first_difference(compiled, twin, path: str = "result") -> str:
    """Where two outcomes first differ, in a line (pytest's diff of nested dicts is unreadable)."""
    if isinstance(compiled, dict) and isinstance(twin, dict):
        for key in sorted(set(compiled) | set(twin), key=str):
            if key not in compiled or key not in twin:
                return f"{path}.{key}: only the {'compiled' if key in compiled else 'twin'} " \
                       f"core has it: {compiled.get(key, twin.get(key))!r}"
            difference = first_difference(compiled[key], twin[key], f"{path}.{key}")
            if difference:
                return difference
        return ""
    if isinstance(compiled, list) and isinstance(twin, list):
        if identities(compiled) != identities(twin):
            return f"{path}: compiled {identities(compiled)} != twin {identities(twin)}"
        for left, right in zip(compiled, twin):
            difference = first_difference(left, right, f"{path}[{identities([left])[0]}]")
            if difference:
                return difference
        return ""
    return "" if compiled == twin else f"{path}: compiled {compiled!r} != twin {twin!r}"


def scan_both(workers, tree: PreparedTree, files: dict, links: dict) -> dict:
    root = tree.write(files, links)
    outcomes = {core: workers[core].scan(root) for core in CORES}
    for core, outcome in outcomes.items():
        assert "hung" not in outcome and "crashed" not in outcome, (core, outcome)
    compiled, twin = outcomes["compiled"], outcomes["pure-python"]
    assert compiled == twin, first_difference(compiled, twin)
    return compiled


def test_the_well_formed_tree_is_read_alike(workers, tree, compiled_core):
    """The starting point is sound (and so is the worker: an outcome that is an error for every
    tree would make every comparison pass): both cores see both processes and every socket."""
    outcome = scan_both(workers, tree, *well_formed_tree())
    assert [proc["pid"] for proc in outcome["processes"]] == [int(PID), int(CONTAINER_PID)]
    assert {sock["inode"] for sock in outcome["sockets"]} == {111, 222, 333, 444, 555}
    assert outcome["stats"]["kernel_threads"] == 1
    assert [proc["fork_no_exec"] for proc in outcome["processes"]] == [True, False]


# -- one case for each kind of damage named in issue 12, and their neighbours ---------------

def replace_file(path: str, content: bytes):
    def mutate(files, links):
        files[path] = content
    return mutate


def remove(path: str):
    def mutate(files, links):
        files.pop(path, None)
        links.pop(path, None)
    return mutate


def replace_link(path: str, target: str):
    def mutate(files, links):
        links[path] = target
    return mutate


def tcp_table(*lines: str) -> bytes:
    return (TCP_HEADER + "".join(lines)).encode()


HUGE = "99999999999999999999999"           # beyond any 64-bit field
STAT_FIELDS = stat_line(PID, "x", 1, 50).split(") ", 1)[1].split()

CASES = {
    "truncated stat": replace_file(f"{PID}/stat", f"{PID} (x) S 1 {PID}".encode()),
    "stat cut in the middle of the start time":
        replace_file(f"{PID}/stat", stat_line(PID, "x", 1, 123456).encode()[:-60]),
    "stat without a closing parenthesis": replace_file(f"{PID}/stat", b"4242 (x S 1 4242 4242"),
    "empty stat": replace_file(f"{PID}/stat", b""),
    "non-digit Uid": replace_file(f"{PID}/status", status_text("1000x")),
    "Uid made of letters": replace_file(f"{PID}/status", b"Name:\tx\nUid:\tabc\tdef\n"),
    "empty Uid line": replace_file(f"{PID}/status", b"Name:\tx\nUid:\n"),
    "negative Uid": replace_file(f"{PID}/status", status_text("-5")),
    "huge Uid": replace_file(f"{PID}/status", status_text(HUGE)),
    "Uid line beyond 4096 bytes":
        replace_file(f"{PID}/status", b"Name:\tx\n" + b"Pad:\t" + b"x" * 5000 + b"\n"
                     + status_text()),
    "no Uid line": replace_file(f"{PID}/status", b"Name:\tx\n"),
    "bad state hex in net/tcp":
        replace_file("net/tcp", tcp_table(tcp_line("0100007F:1F90", "00000000:0000", "ZZ", 111))),
    "state out of range in net/tcp":
        replace_file("net/tcp", tcp_table(tcp_line("0100007F:1F90", "00000000:0000", "FF", 111))),
    "non-numeric inode in net/tcp":
        replace_file("net/tcp", tcp_table(tcp_line("0100007F:1F90", "00000000:0000", "0A",
                                                   "12ab"))),
    "huge inode in net/tcp":
        replace_file("net/tcp", tcp_table(tcp_line("0100007F:1F90", "00000000:0000", "0A", HUGE))),
    "short line in net/tcp":
        replace_file("net/tcp", tcp_table("   0: 0100007F:1F90 00000000:0000 0A\n")),
    "bad address in net/tcp":
        replace_file("net/tcp", tcp_table(tcp_line("0100007G:1F90", "00000000:0000", "0A", 111))),
    "port wider than 16 bits":
        replace_file("net/tcp", tcp_table(tcp_line("0100007F:1FFFFF", "00000000:0000", "0A",
                                                   111))),
    "net/tcp without a header newline": replace_file("net/tcp", TCP_HEADER.encode().rstrip()),
    "empty net/tcp": replace_file("net/tcp", b""),
    "non-numeric socket inode in an fd link": replace_link(f"{PID}/fd/0", "socket:[abc]"),
    "empty socket inode in an fd link": replace_link(f"{PID}/fd/0", "socket:[]"),
    "huge socket inode in an fd link": replace_link(f"{PID}/fd/0", f"socket:[{HUGE}]"),
    "missing status": remove(f"{PID}/status"),
    "missing stat": remove(f"{PID}/stat"),
    "missing cmdline": remove(f"{PID}/cmdline"),
    "missing exe": remove(f"{PID}/exe"),
    "missing net/tcp": remove("net/tcp"),
    "missing uptime": remove("uptime"),
    "uptime not a number": replace_file("uptime", b"abc def\n"),
    "empty uptime": replace_file("uptime", b""),
    "exe a regular file": lambda files, links: (links.pop(f"{PID}/exe"),
                                                files.__setitem__(f"{PID}/exe", b"x")),
    "fd a regular file": lambda files, links: (
        [links.pop(path) for path in list(links) if path.startswith(f"{PID}/fd/")],
        files.__setitem__(f"{PID}/fd", b"x")),
    "huge start time": replace_file(f"{PID}/stat", stat_line(PID, "x", 1, HUGE).encode()),
    "start time just past 64 bits":
        replace_file(f"{PID}/stat", stat_line(PID, "x", 1, 2 ** 64).encode()),
    "huge ppid": replace_file(f"{PID}/stat", stat_line(PID, "x", HUGE, 50).encode()),
    "ppid past 32 bits": replace_file(f"{PID}/stat", stat_line(PID, "x", 2 ** 32 + 7, 50).encode()),
    "negative start time": replace_file(f"{PID}/stat", stat_line(PID, "x", 1, -50).encode()),
    "letters in the flags": replace_file(
        f"{PID}/stat", f"{PID} (x) S 1 {PID} {PID} 0 -1 abc ".encode()
        + " ".join(STAT_FIELDS[7:]).encode()),
    "pid past 32 bits": lambda files, links: rename_process(files, links, PID, "4294967297"),
    "huge pid": lambda files, links: rename_process(files, links, PID, HUGE),
    "binary garbage stat": replace_file(f"{PID}/stat",
                                        bytes(range(256)) + b")" + bytes(range(256))),
    "binary garbage status": replace_file(f"{PID}/status", b"\xff\xfe\x00Uid:\t\xff\x80\n\x00"),
    "binary garbage net/tcp": replace_file("net/tcp", b"\x00\xff\n" + bytes(range(256)) * 4),
    "binary garbage cmdline": replace_file(f"{PID}/cmdline", bytes(range(256))),
    "binary exe link": replace_link(f"{PID}/exe", "/tmp/\udcff\udcfe (deleted)"),
    "garbage namespace link": replace_link(f"{CONTAINER_PID}/ns/net", "net:[x]"),
    "huge namespace inode": replace_link(f"{CONTAINER_PID}/ns/net", f"net:[{HUGE}]"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_tree_gives_equal_results(workers, tree, compiled_core, case):
    files, links = well_formed_tree()
    CASES[case](files, links)
    scan_both(workers, tree, files, links)


def on_disk(root: str) -> tuple[dict, set]:
    """(entries as PreparedTree keeps them, directories) of what is under root."""
    entries, dirs = {}, set()
    for top, subdirs, names in os.walk(root):
        for name in subdirs + names:
            full = os.path.join(top, name)
            path = os.path.relpath(full, root)
            if os.path.islink(full):
                entries[path] = ("link", os.readlink(full))
            elif os.path.isdir(full):
                dirs.add(path)
            else:
                with open(full, "rb") as handle:
                    entries[path] = ("file", handle.read())
    return entries, dirs


def test_a_rewritten_tree_holds_exactly_the_new_tree(tree):
    """Every tree rewritten over the one before is on disk as written afresh: nothing of the
    tree before is left (a process renamed away, a removed file, a directory that is a file
    now) and nothing is missing."""
    trees = [well_formed_tree()]
    for case in sorted(CASES):
        files, links = well_formed_tree()
        CASES[case](files, links)
        trees.append((files, links))
    trees.append(well_formed_tree())
    for files, links in trees:
        tree.write(files, links)
        wanted = {path: ("file", content) for path, content in files.items()}
        wanted.update((path, ("link", target)) for path, target in links.items())
        assert on_disk(tree.root) == (wanted, parent_dirs(wanted))


# -- random damage ---------------------------------------------------------------------------

FILE_PATHS = sorted(well_formed_tree()[0])
LINK_PATHS = sorted(well_formed_tree()[1])
HOSTILE_FIELDS = [b"", b"x", b"-1", b"-", b"+5", b"0x10", b"1e9", HUGE.encode(),
                  b"18446744073709551616", b"4294967296", b"\xff\xfe", b"ZZ", b"00000000:0000",
                  b":", b"[", b")", b"\n", b"\t"]
NO_NUL = st.binary(min_size=1, max_size=80).map(lambda raw: raw.replace(b"\0", b"_"))


def replace_field(content: bytes, index: int, value: bytes) -> bytes:
    fields = content.split(b" ")
    fields[index % len(fields)] = value
    return b" ".join(fields)


def apply_damage(files: dict, links: dict, damage: tuple) -> None:
    kind, path = damage[0], damage[1]
    if kind == "truncate" and path in files:
        files[path] = files[path][:damage[2]]
    elif kind == "replace":
        files[path] = damage[2]
    elif kind == "splice" and path in files:
        position = damage[2] % (len(files[path]) + 1)
        files[path] = files[path][:position] + damage[3] + files[path][position:]
    elif kind == "field" and path in files:
        files[path] = replace_field(files[path], damage[2], damage[3])
    elif kind == "remove":
        files.pop(path, None)
        links.pop(path, None)
    elif kind == "link" and path in links:
        links[path] = os.fsdecode(damage[2])
    elif kind == "rename":
        rename_process(files, links, PID, damage[2])


DAMAGE = st.one_of(
    st.tuples(st.just("truncate"), st.sampled_from(FILE_PATHS), st.integers(0, 300)),
    st.tuples(st.just("replace"), st.sampled_from(FILE_PATHS), st.binary(max_size=400)),
    st.tuples(st.just("splice"), st.sampled_from(FILE_PATHS), st.integers(0, 400),
              st.binary(min_size=1, max_size=24)),
    st.tuples(st.just("field"), st.sampled_from(FILE_PATHS), st.integers(0, 60),
              st.sampled_from(HOSTILE_FIELDS)),
    st.tuples(st.just("remove"), st.sampled_from(FILE_PATHS + LINK_PATHS)),
    st.tuples(st.just("link"), st.sampled_from(LINK_PATHS), NO_NUL),
    st.tuples(st.just("rename"), st.just(PID),
              st.sampled_from(["1", "2147483648", "4294967297", HUGE])),
)


@settings(max_examples=150, deadline=None, database=None, derandomize=True,
          # no shrinking: a hang costs SCAN_TIMEOUT per try; the example is printed as found
          phases=(Phase.explicit, Phase.generate),
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(damages=st.lists(DAMAGE, min_size=1, max_size=3))
def test_randomly_damaged_tree_gives_equal_results(workers, tree, compiled_core, damages):
    files, links = well_formed_tree()
    for damage in damages:
        apply_damage(files, links, damage)
    scan_both(workers, tree, files, links)
