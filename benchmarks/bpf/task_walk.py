"""Load task_walk.bpf.o through libbpf (ctypes on libbpf.so.1) and read its iterators.

A prototype measured against ptfast's /proc walk (see README.md beside this file); ptfast does
not import it. Needs root (or CAP_BPF + CAP_PERFMON + CAP_SYS_ADMIN for d_path and task
iterators on most kernels), a kernel with BTF (/sys/kernel/btf/vmlinux) and BPF iterators.

    python3 benchmarks/bpf/task_walk.py            # prints what one walk found, and its times
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import struct
import sys
import time
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
OBJECT = os.path.join(HERE, "build", "task_walk.bpf.o")

# task_walk.bpf.c's records, little-endian, no padding; their sizes are asserted on both sides
PROC_REC = struct.Struct("<8I4Q6I16s")
CMDLINE_REC = struct.Struct("<4I")
FILE_REC = struct.Struct("<4IQ3H2B2I2HI16s16s")
assert (PROC_REC.size, FILE_REC.size, CMDLINE_REC.size) == (104, 80, 16)
PROCESS, SOCKET, OPEN_FILE, CMDLINE = 1, 2, 3, 4
KIND = struct.Struct("<I")
PF_KTHREAD = 0x00200000
NSEC_PER_TICK = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGESIZE")
DELETED_SUFFIX = " (deleted)"
AF_UNIX, AF_NETLINK = 1, 16
READ_SIZE = 1 << 20


class LibbpfError(OSError):
    pass


def _libbpf() -> ctypes.CDLL:
    name = ctypes.util.find_library("bpf") or "libbpf.so.1"
    lib = ctypes.CDLL(name, use_errno=True)
    vp, cp, i = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
    for fn, restype, argtypes in (
            ("bpf_object__open_file", vp, [cp, vp]),
            ("bpf_object__load", i, [vp]),
            ("bpf_object__close", None, [vp]),
            ("bpf_object__find_program_by_name", vp, [vp, cp]),
            ("bpf_program__set_autoload", i, [vp, ctypes.c_bool]),
            ("bpf_program__attach_iter", vp, [vp, vp]),
            ("bpf_link__fd", i, [vp]),
            ("bpf_link__destroy", i, [vp]),
            ("bpf_iter_create", i, [i])):
        getattr(lib, fn).restype = restype
        getattr(lib, fn).argtypes = argtypes
    return lib


def _failed(what: str) -> LibbpfError:
    number = ctypes.get_errno()
    return LibbpfError(number, f"{what}: {os.strerror(number)}")


class Iterators:
    """The loaded object and one link per iterator; ``read(name)`` runs one walk."""

    PROGRAMS = ("dump_processes", "dump_sockets", "dump_files", "dump_cmdlines", "visit_tasks",
                "visit_files")

    def __init__(self, object_path: str = OBJECT, programs=("dump_processes", "dump_sockets")):
        self.lib = _libbpf()
        self.obj = self.lib.bpf_object__open_file(object_path.encode(), None)
        if not self.obj:
            raise _failed(f"open {object_path}")
        self.links = {}
        try:
            for name in self.PROGRAMS:
                prog = self.lib.bpf_object__find_program_by_name(self.obj, name.encode())
                if not prog:
                    raise _failed(f"program {name}")
                self.lib.bpf_program__set_autoload(prog, name in programs)
            if self.lib.bpf_object__load(self.obj):
                raise _failed("load (the kernel's verifier log is on stderr)")
            for name in programs:
                prog = self.lib.bpf_object__find_program_by_name(self.obj, name.encode())
                link = self.lib.bpf_program__attach_iter(prog, None)
                if not link:
                    raise _failed(f"attach {name}")
                self.links[name] = link
        except BaseException:
            self.close()
            raise

    def read(self, name: str) -> bytes:
        """One walk: a new iterator instance read to its end."""
        fd = self.lib.bpf_iter_create(self.lib.bpf_link__fd(self.links[name]))
        if fd < 0:
            raise _failed(f"iterator {name}")
        try:
            chunks = []
            while True:
                chunk = os.read(fd, READ_SIZE)
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)
        finally:
            os.close(fd)

    def close(self) -> None:
        for link in self.links.values():
            self.lib.bpf_link__destroy(link)
        self.links = {}
        if self.obj:
            self.lib.bpf_object__close(self.obj)
            self.obj = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class Proc:
    pid: int
    ppid: int
    pgrp: int
    session: int
    uid: int
    start_time: int             # clock ticks after boot, as /proc/PID/stat
    threads: int
    vm_size_bytes: int
    vm_rss_bytes: int
    exe: str
    exe_deleted: bool
    exe_dev: int                # st_dev's encoding
    exe_ino: int
    exe_nlink: int
    exe_uid: int
    exe_mode: int
    comm: str
    zombie: bool
    cmdline: str = ""
    sockets: dict = field(default_factory=dict)      # inode -> SockInfo
    open_files: dict = field(default_factory=dict)   # path -> None, in fd order


@dataclass
class SockInfo:
    inode: int
    family: int
    type: int
    protocol: int
    state: int
    uid: int
    netns: int
    local: tuple
    remote: tuple


def _user_dev(kernel_dev: int) -> int:
    """The kernel's dev_t (MAJOR << 20 | MINOR) as stat()'s st_dev (new_encode_dev)."""
    major, minor = kernel_dev >> 20, kernel_dev & 0xFFFFF
    return (minor & 0xFF) | (major << 8) | ((minor & ~0xFF) << 12)


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def parse_processes(data: bytes) -> dict:
    """pid -> Proc, kernel threads left out (as ptfast's scan does)."""
    found = {}
    offset, end, size = 0, len(data), PROC_REC.size
    while offset < end:
        (kind, tgid, ppid, pgrp, sid, uid, flags, threads, start_ns, exe_ino, vm_pages,
         rss_pages, exe_dev, exe_nlink, exe_uid, exe_mode, exit_state, exe_len,
         comm) = PROC_REC.unpack_from(data, offset)
        if kind != PROCESS:
            raise ValueError(f"record kind {kind} at {offset}: not a process record")
        offset += size
        exe = _text(data[offset:offset + exe_len]) if exe_len else ""
        offset += exe_len
        if flags & PF_KTHREAD:
            continue
        # deleted: no link left to the file (ptfast also checks a suffix against the path)
        deleted = exe_len > 0 and exe_nlink == 0
        if deleted and exe.endswith(DELETED_SUFFIX):
            exe = exe[:-len(DELETED_SUFFIX)]
        found[tgid] = Proc(tgid, ppid, pgrp, sid, uid, start_ns // NSEC_PER_TICK, threads,
                           vm_pages * PAGE_SIZE, rss_pages * PAGE_SIZE, exe, deleted,
                           _user_dev(exe_dev), exe_ino, exe_nlink, exe_uid, exe_mode,
                           _text(comm), exit_state != 0 or not exe_len)
    return found


def parse_cmdlines(data: bytes, processes: dict) -> None:
    """Sets each process's cmdline as ptfast normalises it (NULs as spaces, stripped)."""
    offset, end, size = 0, len(data), CMDLINE_REC.size
    while offset < end:
        kind, tgid, length, _pad = CMDLINE_REC.unpack_from(data, offset)
        if kind != CMDLINE:
            raise ValueError(f"record kind {kind} at {offset}: not a cmdline record")
        offset += size
        proc = processes.get(tgid)
        if proc is not None:
            raw = data[offset:offset + length]
            proc.cmdline = raw.rstrip(b"\0").replace(b"\0", b" ").rstrip().decode(
                "utf-8", "surrogateescape")
        offset += length


def parse_files(data: bytes, processes: dict) -> None:
    """Adds every fd record to its process (threads with a table of their own included)."""
    offset, end, size = 0, len(data), FILE_REC.size
    while offset < end:
        (kind, tgid, _tid, _fd, ino, family, sock_type, protocol, state, _pad, sk_uid, netns,
         lport, rport, path_len, laddr, raddr) = FILE_REC.unpack_from(data, offset)
        offset += size
        proc = processes.get(tgid)
        if kind == SOCKET:
            if proc is not None and ino not in proc.sockets:
                proc.sockets[ino] = SockInfo(ino, family, sock_type, protocol, state, sk_uid,
                                             netns, (laddr, lport), (raddr, rport))
        elif kind == OPEN_FILE:
            if proc is not None and path_len:
                proc.open_files.setdefault(_text(data[offset:offset + path_len]), None)
            offset += path_len
        else:
            raise ValueError(f"record kind {kind}: not a file record")


def network_sockets(proc: Proc) -> set:
    """Inodes of the sockets ptfast counts as network ones: all but unix and netlink."""
    return {ino for ino, sock in proc.sockets.items()
            if sock.family not in (AF_UNIX, AF_NETLINK)}


def walk(iterators: Iterators, files: str = "dump_sockets", cmdlines: bool = False) -> dict:
    processes = parse_processes(iterators.read("dump_processes"))
    parse_files(iterators.read(files), processes)
    if cmdlines:
        parse_cmdlines(iterators.read("dump_cmdlines"), processes)
    return processes


def main() -> int:
    started = time.perf_counter()
    with Iterators() as iterators:
        loaded = time.perf_counter()
        raw_procs = iterators.read("dump_processes")
        raw_files = iterators.read("dump_sockets")
        read = time.perf_counter()
        processes = parse_processes(raw_procs)
        parse_files(raw_files, processes)
        parsed = time.perf_counter()
    holders = [p for p in processes.values() if network_sockets(p)]
    print(f"{len(processes)} processes, {len(holders)} hold "
          f"{sum(len(network_sockets(p)) for p in holders)} network sockets; "
          f"{len(raw_procs) + len(raw_files)} bytes")
    print(f"load+attach {1000 * (loaded - started):.1f} ms, read {1000 * (read - loaded):.1f} ms,"
          f" parse {1000 * (parsed - read):.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
