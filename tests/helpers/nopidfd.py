"""A kernel without pidfds, for one child process: a seccomp filter makes ``pidfd_open`` and
``pidfd_send_signal`` fail with ENOSYS, exactly as they do on Linux before 5.1/5.3 (AlmaLinux
and CloudLinux 8 run 4.18). Pass ``without_pidfds`` as ``preexec_fn`` to subprocess."""

from __future__ import annotations

import ctypes
import errno
import platform

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
BPF_LD_W_ABS = 0x20
BPF_JEQ_K = 0x15
BPF_RET_K = 0x06
# the syscall numbers of the pidfd calls are the same on every architecture (new-style table)
PIDFD_SEND_SIGNAL, PIDFD_OPEN = 424, 434
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}.get(platform.machine())
SUPPORTED = AUDIT_ARCH is not None


class SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                ("k", ctypes.c_uint)]


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]


def _program() -> list:
    return [
        (BPF_LD_W_ABS, 0, 0, 4),                       # seccomp_data.arch
        (BPF_JEQ_K, 0, 3, AUDIT_ARCH),                 # another ABI: allow
        (BPF_LD_W_ABS, 0, 0, 0),                       # seccomp_data.nr
        (BPF_JEQ_K, 2, 0, PIDFD_OPEN),
        (BPF_JEQ_K, 1, 0, PIDFD_SEND_SIGNAL),
        (BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
        (BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | errno.ENOSYS),
    ]


def without_pidfds() -> None:
    """Install the filter in the calling process (and so in everything it execs)."""
    install(_program())


def install(program: list) -> None:
    """Install a seccomp filter of (code, jt, jf, k) entries in the calling process (and so in
    everything it execs)."""
    filters = (SockFilter * len(program))(*[SockFilter(*entry) for entry in program])
    fprog = SockFprog(len(program), filters)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_SECCOMP")
