"""A host where sock_diag netlink fails, for one child process: a seccomp filter refuses the
netlink socket itself (as an LSM or a container's profile may), the request, or the reply (as a
socket that overran its buffer). Pass one of ``REFUSALS`` as ``preexec_fn`` to subprocess."""

from __future__ import annotations

import errno
import platform

from .nopidfd import (AUDIT_ARCH, BPF_JEQ_K, BPF_LD_W_ABS, BPF_RET_K, SECCOMP_RET_ALLOW,
                      SECCOMP_RET_ERRNO, SUPPORTED, install)

AF_NETLINK = 16
#: system call numbers by machine: socket, sendto, sendmsg, recvfrom, recvmsg
_NUMBERS = {"x86_64": (41, 44, 46, 45, 47), "aarch64": (198, 206, 211, 207, 212)}
SOCKET, SENDTO, SENDMSG, RECVFROM, RECVMSG = _NUMBERS.get(platform.machine(), (-1,) * 5)
# offsets in struct seccomp_data; args[0]'s low 32 bits on a little-endian machine
_NR, _ARCH, _ARG0 = 0, 4, 16

__all__ = ["REFUSALS", "SUPPORTED"]


def _refuse_calls(numbers: tuple, error: int) -> list:
    """Every call of ``numbers`` fails with ``error``."""
    count = len(numbers)
    return ([(BPF_LD_W_ABS, 0, 0, _ARCH), (BPF_JEQ_K, 0, count + 1, AUDIT_ARCH),
             (BPF_LD_W_ABS, 0, 0, _NR)]
            + [(BPF_JEQ_K, count - i, 0, number) for i, number in enumerate(numbers)]
            + [(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
               (BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | error)])


def _refuse_netlink_socket() -> list:
    """socket(AF_NETLINK, ...) fails with EACCES; every other socket is made."""
    return [
        (BPF_LD_W_ABS, 0, 0, _ARCH),
        (BPF_JEQ_K, 0, 4, AUDIT_ARCH),                 # another ABI: allow
        (BPF_LD_W_ABS, 0, 0, _NR),
        (BPF_JEQ_K, 0, 2, SOCKET),
        (BPF_LD_W_ABS, 0, 0, _ARG0),
        (BPF_JEQ_K, 1, 0, AF_NETLINK),
        (BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
        (BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | errno.EACCES),
    ]


def without_netlink_socket() -> None:
    install(_refuse_netlink_socket())


def without_request() -> None:
    install(_refuse_calls((SENDTO, SENDMSG), errno.EPERM))


def without_reply() -> None:
    install(_refuse_calls((RECVFROM, RECVMSG), errno.ENOBUFS))


REFUSALS = {"socket": without_netlink_socket, "request": without_request,
            "reply": without_reply}
