"""What each process of the bed holds, read from /proc independently of ptfast: its uid, exe,
command line and every inet socket with the ``uid`` column of ``/proc/net/*`` (the uid that
created the socket), so the report can say who owns what."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field

TCP_STATES = {"01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1",
              "05": "FIN_WAIT2", "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT",
              "09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING"}
TABLES = ("tcp", "tcp6", "udp", "udp6")


@dataclass
class SocketFact:
    proto: str
    local_ip: str
    local_port: int
    remote_ip: str
    remote_port: int
    state: str
    uid: int            # the /proc/net uid column: who created the socket
    inode: int

    def endpoint(self, which: str) -> str:
        ip, port = ((self.local_ip, self.local_port) if which == "local"
                    else (self.remote_ip, self.remote_port))
        return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"

    def text(self) -> str:
        return (f"{self.proto} {self.endpoint('local')} -> {self.endpoint('remote')} "
                f"{self.state} (socket uid {self.uid})")


@dataclass
class ProcessFact:
    pid: int
    ppid: int
    pgrp: int
    uid: int
    exe: str
    cmdline: str
    netns: int
    sockets: list = field(default_factory=list)

    @property
    def exe_name(self) -> str:
        return os.path.basename(self.exe.replace(" (deleted)", ""))


def _address(hex_text: str) -> str:
    raw = bytes.fromhex(hex_text)
    # the kernel prints each 32-bit word in host (little-endian) order
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(words)
    if address.version == 6 and address.ipv4_mapped:
        return str(address.ipv4_mapped)
    return str(address)


def read_socket_table(pid: int) -> dict:
    """inode -> SocketFact for every inet socket of the network namespace of ``pid``."""
    table = {}
    for proto in TABLES:
        try:
            with open(f"/proc/{pid}/net/{proto}") as handle:
                lines = handle.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote, state, uid, inode = fields[1], fields[2], fields[3], fields[7], fields[9]
            local_ip, local_port = local.split(":")
            remote_ip, remote_port = remote.split(":")
            state_name = TCP_STATES.get(state, state) if proto.startswith("tcp") else (
                "UNCONN" if state == "07" else "ESTABLISHED")
            table[int(inode)] = SocketFact(proto, _address(local_ip), int(local_port, 16),
                                           _address(remote_ip), int(remote_port, 16),
                                           state_name, int(uid), int(inode))
    return table


def _netns(pid: int) -> int:
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def read_process(pid: int, tables: dict) -> ProcessFact | None:
    """The facts of ``pid``; ``tables`` caches socket tables by network namespace. None when
    the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
        after = stat[stat.rfind(b")") + 2:].split()
        with open(f"/proc/{pid}/status", "rb") as handle:
            uid = next(int(line.split()[1]) for line in handle if line.startswith(b"Uid:"))
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            cmdline = handle.read().rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            exe = ""
        netns = _netns(pid)
        if netns not in tables:
            tables[netns] = read_socket_table(pid)
        fact = ProcessFact(pid, int(after[1]), int(after[2]), uid, exe, cmdline, netns)
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                sock = tables[netns].get(int(target[8:-1]))
                if sock is not None:
                    fact.sockets.append(sock)
        return fact
    except (OSError, StopIteration, IndexError):
        return None


def read_processes(pids) -> dict:
    """pid -> ProcessFact for those of ``pids`` still alive."""
    tables: dict = {}
    facts = {}
    for pid in pids:
        fact = read_process(pid, tables)
        if fact is not None:
            facts[pid] = fact
    return facts
