"""Every connect() on the host, with who made it: a cgroup BPF hook, so that a connection held
for a millisecond (a spam sender's SMTP session, a beacon's call home) is seen as surely as one
held for an hour. The socket dumps (decide.lifetimes) see only what is held when they run.

Two tiny programs (connect() over IPv4 and over IPv6), attached to the root of the cgroup v2
hierarchy, run in the caller's context on each connect() of a TCP or UDP socket and record
(process, peer address, peer port, protocol) -> (when, uid) in a bounded LRU hash map. They
never refuse a connect() (they return 1, "allow", on every path). ``drain`` takes the map's
entries and empties it in one batch system call; a burst to one peer between two drains is
one entry, and past MAX_ENTRIES the kernel forgets the least recently written entries first
(counted as a gap: ``overflowed``).

Prebuilt: the programs are eBPF instructions written out here (no compiler, no libbpf, no
kernel headers); the kernel's verifier checks them at load. They are attached through a BPF
link, which the kernel detaches when the link's file is closed, so a ptfast that dies leaves
nothing attached. Where the hook cannot load (no cgroup v2 hierarchy, a kernel before 5.7
(BPF links for cgroups), no CAP_BPF/CAP_SYS_ADMIN, a lockdown or seccomp policy, another
architecture), ``open_hook`` returns None and says why, and ptfast relies on the dumps alone.
"""

from __future__ import annotations

import ctypes
import errno
import ipaddress
import os
import socket
import struct
from typing import Iterable, Iterator, List, NamedTuple, Optional, Tuple

from ptfast.scan import procevents, procfs

#: the bpf() system call's number by architecture (asm-generic: 280)
SYS_BPF = {"x86_64": 321, "aarch64": 280, "i686": 357, "i386": 357, "ppc64le": 361,
           "s390x": 351}
BPF_MAP_CREATE = 0
BPF_PROG_LOAD = 5
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_PROG_QUERY = 16
BPF_MAP_LOOKUP_AND_DELETE_BATCH = 25
BPF_LINK_CREATE = 28
BPF_MAP_TYPE_HASH = 1
BPF_MAP_TYPE_LRU_HASH = 9
BPF_F_NO_PREALLOC = 1
BPF_MAP_UPDATE_ELEM = 2
BPF_PROG_TYPE_CGROUP_SOCK_ADDR = 18
BPF_CGROUP_INET4_CONNECT = 10
BPF_CGROUP_INET6_CONNECT = 11
BPF_PSEUDO_MAP_FD = 1
# helpers
BPF_FUNC_map_lookup_elem = 1
BPF_FUNC_map_update_elem = 2
BPF_FUNC_ktime_get_ns = 5
BPF_FUNC_get_current_pid_tgid = 14
BPF_FUNC_get_current_uid_gid = 15

#: processes x peers remembered between two drains (about 100 bytes each in the kernel)
MAX_ENTRIES = 16384
#: a drain this close to MAX_ENTRIES counts as an overflow: the kernel's LRU evicts before the
#: map is quite full (its per-CPU free lists hold some nodes back; 20,000 distinct connect()s
#: left 16,240 entries on a 2-CPU host)
NEAR_FULL = MAX_ENTRIES - 1024
#: host addresses the programs skip (no call: ptfast's own addresses); more are left out
MAX_HOST_ADDRESSES = 16384
#: key: tgid, peer port (network order), family (4 or 6), protocol, peer address (16 bytes)
_KEY = struct.Struct("=IHBB16s")
#: value: when (CLOCK_MONOTONIC ns, the kernel's ktime), uid and gid of the caller
_VALUE = struct.Struct("=QII")
# struct bpf_sock_addr (include/uapi/linux/bpf.h): the offsets the programs read
_USER_IP4, _USER_IP6, _USER_PORT, _PROTOCOL = 4, 8, 24, 36


class Connect(NamedTuple):
    """One process's connect()s to one peer since the last drain (the last one's time)."""
    pid: int            # the thread group id: the process
    uid: int
    proto: str          # "tcp", "tcp6", "udp", "udp6": the socket table it belongs in
    remote_ip: str
    remote_port: int
    monotonic: float    # when, on time.monotonic()'s clock (CLOCK_MONOTONIC)


class Unavailable(Exception):
    """The hook cannot run here; the message says why, for an admin."""


# -- the programs -------------------------------------------------------------------------------
def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("=BBhi", code, (src << 4) | dst, off, imm)


# opcodes (include/uapi/linux/bpf.h, bpf_common.h)
_MOV64_REG, _MOV64_IMM, _RSH64_IMM, _ADD64_IMM, _MOV32_REG = 0xBF, 0xB7, 0x77, 0x07, 0xBC
_LDX_W, _STX_W, _STX_DW, _ST_B, _ST_W, _ST_DW, _STX_H = 0x61, 0x63, 0x7B, 0x72, 0x62, 0x7A, 0x6B
_LDX_B, _LDX_H, _LDX_DW = 0x71, 0x69, 0x79
_JEQ_IMM, _JNE_IMM = 0x15, 0x55
_LD_IMM64, _CALL, _EXIT = 0x18, 0x85, 0x95
_R0, _R1, _R2, _R3, _R4, _R6, _R7, _FP = 0, 1, 2, 3, 4, 6, 7, 10
_KEY_AT, _VALUE_AT = -24, -40          # the key and the value on the program's stack
_PEER_AT = _KEY_AT + 8                 # the peer address within the key (16 bytes)
_ALLOW = "allow"


def _jump(code: int, dst: int, imm: int, label: str) -> tuple:
    return (code, dst, imm, label)


def program(family: int, map_fd: int, skip_fd: int = -1) -> bytes:
    """The connect() program for ``family`` 4 or 6: record, then allow. What can never be a
    call is not recorded, so that no account can fill the map (and evict another's calls
    before the drain) with connect()s that cost nothing and count for nothing: root's,
    loopback's (127/8, ::ffff:127/104) and, with ``skip_fd``, those to an address in that map
    (the host's own, ::1, the unspecified)."""
    code: list = [
        _insn(_MOV64_REG, _R6, _R1),                           # r6 = ctx
        _insn(_CALL, imm=BPF_FUNC_get_current_uid_gid),
        _insn(_MOV64_REG, _R7, _R0),                           # r7 = uid and gid, kept
        _insn(_MOV32_REG, _R1, _R0),                           # the uid
        _jump(_JEQ_IMM, _R1, 0, _ALLOW),                       # root's: never a call
        _insn(_CALL, imm=BPF_FUNC_get_current_pid_tgid),
        _insn(_RSH64_IMM, _R0, imm=32),                        # the tgid
        _insn(_STX_W, _FP, _R0, _KEY_AT),
        _insn(_LDX_W, _R1, _R6, _USER_PORT),
        _insn(_STX_H, _FP, _R1, _KEY_AT + 4),
        _insn(_ST_B, _FP, off=_KEY_AT + 6, imm=family),
        _insn(_LDX_W, _R1, _R6, _PROTOCOL),
        _insn(0x73, _FP, _R1, _KEY_AT + 7),                    # STX_B: the protocol
    ]
    if family == 4:
        code += [_insn(_LDX_W, _R1, _R6, _USER_IP4),
                 _insn(_STX_W, _FP, _R1, _PEER_AT),
                 _insn(_ST_W, _FP, off=_PEER_AT + 4, imm=0),
                 _insn(_ST_DW, _FP, off=_PEER_AT + 8, imm=0),
                 # byte by byte from the stack: the same test on either byte order
                 _insn(_LDX_B, _R1, _FP, _PEER_AT),
                 _jump(_JEQ_IMM, _R1, 127, _ALLOW)]           # 127/8: loopback
    else:
        for word in range(4):
            code += [_insn(_LDX_W, _R1, _R6, _USER_IP6 + 4 * word),
                     _insn(_STX_W, _FP, _R1, _PEER_AT + 4 * word)]
        code += [_insn(_LDX_DW, _R1, _FP, _PEER_AT),
                 _jump(_JNE_IMM, _R1, 0, "kept"),
                 _insn(_LDX_H, _R1, _FP, _PEER_AT + 8),
                 _jump(_JNE_IMM, _R1, 0, "kept"),
                 _insn(_LDX_H, _R1, _FP, _PEER_AT + 10),
                 _jump(_JNE_IMM, _R1, 0xFFFF, "kept"),          # ::ffff:0:0/96, v4-mapped
                 _insn(_LDX_B, _R1, _FP, _PEER_AT + 12),
                 _jump(_JEQ_IMM, _R1, 127, _ALLOW),             # ::ffff:127/104
                 ("label", "kept")]
    if skip_fd >= 0:
        code += [_insn(_LD_IMM64, _R1, BPF_PSEUDO_MAP_FD, imm=skip_fd), _insn(0),
                 _insn(_MOV64_REG, _R2, _FP), _insn(_ADD64_IMM, _R2, imm=_PEER_AT),
                 _insn(_CALL, imm=BPF_FUNC_map_lookup_elem),
                 _jump(_JNE_IMM, _R0, 0, _ALLOW)]              # one of the host's own
    code += [
        _insn(_CALL, imm=BPF_FUNC_ktime_get_ns),
        _insn(_STX_DW, _FP, _R0, _VALUE_AT),
        _insn(_STX_DW, _FP, _R7, _VALUE_AT + 8),
        _insn(_LD_IMM64, _R1, BPF_PSEUDO_MAP_FD, imm=map_fd), _insn(0),
        _insn(_MOV64_REG, _R2, _FP), _insn(_ADD64_IMM, _R2, imm=_KEY_AT),
        _insn(_MOV64_REG, _R3, _FP), _insn(_ADD64_IMM, _R3, imm=_VALUE_AT),
        _insn(_MOV64_IMM, _R4, imm=0),                         # BPF_ANY: the last one wins
        _insn(_CALL, imm=BPF_FUNC_map_update_elem),            # a full map evicts, never fails
        ("label", _ALLOW),
        _insn(_MOV64_IMM, _R0, imm=1),                         # allow, whatever happened
        _insn(_EXIT),
    ]
    return _assemble(code)


def _assemble(code: list) -> bytes:
    """Instructions and jumps to labels, as bytes (a jump's offset counts the slots after it)."""
    labels, slot = {}, 0
    for item in code:
        if isinstance(item, tuple) and item[0] == "label":
            labels[item[1]] = slot
        else:
            slot += 1
    out, slot = [], 0
    for item in code:
        if isinstance(item, bytes):
            out.append(item)
        elif item[0] != "label":
            opcode, dst, imm, label = item
            out.append(_insn(opcode, dst, off=labels[label] - slot - 1, imm=imm))
        else:
            continue
        slot += 1
    return b"".join(out)


# -- the system call ----------------------------------------------------------------------------
_libc = None


def _bpf(command: int, attr: ctypes.Array) -> int:
    global _libc
    number = SYS_BPF.get(os.uname().machine)
    if number is None:
        raise OSError(errno.ENOSYS, f"no bpf() system call number known for {os.uname().machine}")
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    result = _libc.syscall(number, command, ctypes.byref(attr), ctypes.sizeof(attr))
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return result


def _attr(size: int = 128) -> ctypes.Array:
    return ctypes.create_string_buffer(size)


def _address(buffer) -> int:
    return ctypes.addressof(buffer)


def cgroup2_root(mountinfo: str = "/proc/self/mountinfo") -> Optional[str]:
    """Where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified on
    a hybrid host), or None."""
    try:
        with open(mountinfo, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                fields = line.split()
                if " - cgroup2 " in line and len(fields) > 4 and fields[3] == "/":
                    return fields[4].replace("\\040", " ")
    except OSError:
        pass
    return None


class ConnectHook:
    """The attached programs and their map; ``drain`` reads what they recorded."""

    def __init__(self, cgroup_root: Optional[str] = None,
                 host_addresses: Iterable = ()) -> None:
        self._fds: List[int] = []           # every fd, closed together
        self._programs: List[int] = []
        self.drained = 0            # entries drained since the hook was opened
        self.overflowed = 0
        root = cgroup_root or cgroup2_root()
        if root is None:
            raise Unavailable("no cgroup v2 hierarchy is mounted (the hook attaches to its root)")
        try:
            self._map = self._create_map()
            self._fds.append(self._map)
            self._skip = self._create_skip_map(host_addresses)
            self._fds.append(self._skip)
            cgroup = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
            try:
                for family, attach_type in ((4, BPF_CGROUP_INET4_CONNECT),
                                            (6, BPF_CGROUP_INET6_CONNECT)):
                    prog = self._load(family, attach_type)
                    self._fds.append(prog)
                    self._programs.append(prog)
                    self._fds.append(self._link(prog, cgroup, attach_type))
            finally:
                os.close(cgroup)
        except OSError as exc:
            self.close()
            raise Unavailable(_error_reason(exc, root)) from exc
        self._keys = ctypes.create_string_buffer(_KEY.size * 1024)
        self._values = ctypes.create_string_buffer(_VALUE.size * 1024)

    @staticmethod
    def _create_map() -> int:
        attr = _attr()
        struct.pack_into("=IIIII", attr, 0, BPF_MAP_TYPE_LRU_HASH, _KEY.size, _VALUE.size,
                         MAX_ENTRIES, 0)
        struct.pack_into("16s", attr, 28, b"ptfast_connects")
        return _bpf(BPF_MAP_CREATE, attr)

    @staticmethod
    def _create_skip_map(host_addresses: Iterable) -> int:
        """The addresses a connect() to is no call: the host's own (and, for a v4 one, its
        v4-mapped v6 form), ::1, the unspecified (:: and 0.0.0.0 are the same key)."""
        attr = _attr()
        struct.pack_into("=IIIII", attr, 0, BPF_MAP_TYPE_HASH, 16, 1, MAX_HOST_ADDRESSES,
                         BPF_F_NO_PREALLOC)
        struct.pack_into("16s", attr, 28, b"ptfast_hosts")
        fd = _bpf(BPF_MAP_CREATE, attr)
        keys = {ipaddress.IPv6Address("::1").packed, bytes(16)}
        for address in host_addresses:
            if address.version == 4:
                keys.add(address.packed + bytes(12))
                keys.add(bytes(10) + b"\xff\xff" + address.packed)
            else:
                keys.add(address.packed)
        value = ctypes.create_string_buffer(b"\x01", 1)
        for key in sorted(keys)[:MAX_HOST_ADDRESSES]:
            buffer = ctypes.create_string_buffer(key, 16)
            attr = _attr()
            struct.pack_into("=IIQQQ", attr, 0, fd, 0, _address(buffer), _address(value), 0)
            try:
                _bpf(BPF_MAP_UPDATE_ELEM, attr)
            except OSError:
                os.close(fd)
                raise
        return fd

    def _load(self, family: int, attach_type: int) -> int:
        code = ctypes.create_string_buffer(program(family, self._map, self._skip))
        license_ = ctypes.create_string_buffer(b"Dual MIT/GPL")
        log = ctypes.create_string_buffer(65536)
        attr = _attr()
        struct.pack_into("=IIQQIIQ", attr, 0, BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
                         (len(code) - 1) // 8, _address(code), _address(license_), 0, 0, 0)
        struct.pack_into("16s", attr, 48, f"ptfast_conn{family}".encode())
        struct.pack_into("=I", attr, 68, attach_type)
        try:
            return _bpf(BPF_PROG_LOAD, attr)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.EACCES):
                raise
        # ask again with the verifier's log, so the reason names what it refused
        struct.pack_into("=IIQ", attr, 24, 1, len(log), _address(log))
        try:
            return _bpf(BPF_PROG_LOAD, attr)
        except OSError as exc:
            refused = log.value.decode(errors="replace").strip().splitlines()
            raise OSError(exc.errno, f"{exc.strerror}: the verifier said "
                                     f"{refused[-1] if refused else 'nothing'}") from None

    @staticmethod
    def _link(prog: int, cgroup: int, attach_type: int) -> int:
        attr = _attr()
        struct.pack_into("=IIII", attr, 0, prog, cgroup, attach_type, 0)
        return _bpf(BPF_LINK_CREATE, attr)

    def drain(self) -> List[Connect]:
        """What the programs recorded since the last drain, the map emptied."""
        found: List[Connect] = []
        batch_in = ctypes.create_string_buffer(8)
        batch_out = ctypes.create_string_buffer(8)
        first = True
        capacity = len(self._values) // _VALUE.size
        while True:
            attr = _attr(64)
            struct.pack_into("=QQQQII", attr, 0, 0 if first else _address(batch_in),
                             _address(batch_out), _address(self._keys), _address(self._values),
                             capacity, self._map)
            done = False
            try:
                _bpf(BPF_MAP_LOOKUP_AND_DELETE_BATCH, attr)
            except OSError as exc:
                if exc.errno != errno.ENOENT:       # ENOENT: the last batch (maybe empty)
                    raise
                done = True
            count = struct.unpack_from("=I", attr, 32)[0]
            found.extend(_records(self._keys.raw, self._values.raw, count))
            if done:
                break
            first = False
            ctypes.memmove(batch_in, batch_out, 8)
        if len(found) >= NEAR_FULL:
            self.overflowed += 1
        self.drained += len(found)
        return found

    def status(self) -> dict:
        """For the status file and the metrics."""
        return {"on": True, "reason": "", "connects": self.drained,
                "overflows": self.overflowed}

    def program_ids(self) -> List[int]:
        """The kernel's ids of the two programs (``bpftool prog show id N``)."""
        ids = []
        for prog in self._programs:
            info = ctypes.create_string_buffer(256)
            attr = _attr()
            struct.pack_into("=IIQ", attr, 0, prog, len(info), _address(info))
            _bpf(BPF_OBJ_GET_INFO_BY_FD, attr)
            ids.append(struct.unpack_from("=I", info, 4)[0])     # bpf_prog_info.id
        return ids

    def close(self) -> None:
        self._programs = []
        while self._fds:
            os.close(self._fds.pop())

    def __enter__(self) -> "ConnectHook":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


_PROTOCOLS = {socket.IPPROTO_TCP: "tcp", socket.IPPROTO_UDP: "udp"}


def _records(keys: bytes, values: bytes, count: int) -> Iterator[Connect]:
    for index in range(count):
        pid, port, family, protocol, address = _KEY.unpack_from(keys, index * _KEY.size)
        when, uid, _gid = _VALUE.unpack_from(values, index * _VALUE.size)
        name = _PROTOCOLS.get(protocol)
        if name is None:
            continue
        if family == 4:
            ip = socket.inet_ntop(socket.AF_INET, address[:4])
        else:
            ip = socket.inet_ntop(socket.AF_INET6, address)
            if ip.startswith("::ffff:") and "." in ip:
                ip = ip[7:]             # a mapped IPv4 peer: its IPv4 address, as the tables
            name += "6"
        yield Connect(pid, uid, name, ip, socket.ntohs(port), when / 1e9)


def _error_reason(exc: OSError, root: str) -> str:
    if exc.errno in (errno.EPERM, errno.EACCES):
        return (f"the kernel refused the BPF connect hook ({exc.strerror}; it needs CAP_BPF "
                "and CAP_NET_ADMIN or CAP_SYS_ADMIN, and no lockdown or seccomp policy)")
    if exc.errno in (errno.ENOSYS, errno.EINVAL, errno.E2BIG, errno.EOPNOTSUPP):
        return (f"this kernel cannot run the BPF connect hook ({exc.strerror}; it needs "
                "Linux 5.7 or newer with CONFIG_BPF_SYSCALL and CONFIG_CGROUP_BPF)")
    return f"the BPF connect hook failed on {root} ({exc.strerror or exc})"


def attached_program_ids(root: str) -> set:
    """The ids of the programs attached to connect() on the cgroup ``root`` itself, any
    owner's: what an admin asks with ``bpftool cgroup show``."""
    found: set = set()
    cgroup = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for attach_type in (BPF_CGROUP_INET4_CONNECT, BPF_CGROUP_INET6_CONNECT):
            ids = (ctypes.c_uint32 * 64)()
            attr = _attr()
            struct.pack_into("=IIIIQI", attr, 0, cgroup, attach_type, 0, 0,
                             ctypes.addressof(ids), len(ids))
            _bpf(BPF_PROG_QUERY, attr)
            found.update(ids[:struct.unpack_from("=I", attr, 24)[0]])
    finally:
        os.close(cgroup)
    return found


def off_status(reason: str) -> dict:
    return {"on": False, "reason": reason}


def open_hook(cgroup_root: Optional[str] = None) -> Tuple[Optional[ConnectHook], str]:
    """The hook and "", or None and why it does not run."""
    if os.environ.get("PTFAST_NO_CONNECT_HOOK") == "1":
        return None, "PTFAST_NO_CONNECT_HOOK=1 turned it off"
    pid_ns = procevents.namespace_inode("pid")
    if pid_ns is not None and pid_ns != procevents.INITIAL_PID_NS:
        # the programs see the host's process ids, which mean nothing in here
        return None, "it runs in a pid namespace other than the host's (a container?)"
    try:
        return ConnectHook(cgroup_root, procfs.host_addresses()), ""
    except Unavailable as exc:
        return None, str(exc)
