"""The scanner's own namespace's tcp and udp tables come through sock_diag netlink on the live
/proc, with exactly the records /proc/net gives; /proc/net is read when netlink fails, and a
prepared tree's tables are its own files."""

import json
import os
import subprocess
import sys

import pytest

from ptfast.scan import procfs
from ptfast.scan._corespec import SOCK_DIAG_TABLES, SOCKET_FIELDS
from helpers import nonetlink
from helpers.proctree import TCP_HEADER, stat_line, tcp_line, write
from helpers.procs import start_python
from helpers.uids import uid_for

pytestmark = pytest.mark.needs_root

# Every kind of tcp and udp socket /proc/net/{tcp,udp}[6] lists with an inode: listening,
# connected both ways, half-closed (CLOSE_WAIT), IPv4, IPv6 and IPv4-mapped IPv6, unconnected
# and connected datagram sockets. Also one TCP socket bound but never listening or connecting,
# which /proc/net/tcp does not list (sock_diag does, asked for every state): in neither table.
# And enough listeners that the kernel's answer takes several datagrams.
SOCKETS_SETUP = """
many = [listen(socket.AF_INET6, "::1") for _ in range(400)]
l4 = listen(socket.AF_INET, "0.0.0.0")
l6 = listen(socket.AF_INET6, "::1")
server, client, accepted = connect_pair(socket.AF_INET, "127.0.0.1")
v6server, v6client, v6accepted = connect_pair(socket.AF_INET6, "::1")
mapped = listen(socket.AF_INET6, "::")
m = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
m.connect(("::ffff:127.0.0.1", mapped.getsockname()[1])); KEEP.append(m)
KEEP.append(mapped.accept()[0])
half_server, half_client, half_accepted = connect_pair(socket.AF_INET, "127.0.0.1")
KEEP.remove(half_accepted); half_accepted.close()
for _ in range(1000):       # the peer's FIN arrives asynchronously, even on loopback
    if half_client.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] == 8:   # CLOSE_WAIT
        break
    time.sleep(0.01)
bound = socket.socket(socket.AF_INET, socket.SOCK_STREAM); bound.bind(("127.0.0.1", 0))
KEEP.append(bound)
u4 = listen(socket.AF_INET, "127.0.0.1", socket.SOCK_DGRAM)
uc = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); uc.connect(("127.0.0.1", 9)); KEEP.append(uc)
u6 = listen(socket.AF_INET6, "::1", socket.SOCK_DGRAM)
uc6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); uc6.connect(("::1", 9)); KEEP.append(uc6)
um = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); um.connect(("::ffff:127.0.0.1", 9))
KEEP.append(um)
port = lambda s: s.getsockname()[1]
info.update(l4=port(l4), l6=port(l6), server=port(server), client=port(client),
            v6server=port(v6server), v6client=port(v6client), mapped=port(mapped), m=port(m),
            half_server=port(half_server), half_client=port(half_client), bound=port(bound),
            u4=port(u4), uc=port(uc), u6=port(u6), uc6=port(uc6), um=port(um),
            bound_inode=os.fstat(bound.fileno()).st_ino, many=[port(s) for s in many])
"""


def expected_endpoints(info):
    return {
        ("tcp", "0.0.0.0", info["l4"], "0.0.0.0", 0, "LISTEN"),
        ("tcp6", "::1", info["l6"], "::", 0, "LISTEN"),
        ("tcp", "127.0.0.1", info["server"], "0.0.0.0", 0, "LISTEN"),
        ("tcp", "127.0.0.1", info["client"], "127.0.0.1", info["server"], "ESTABLISHED"),
        ("tcp", "127.0.0.1", info["server"], "127.0.0.1", info["client"], "ESTABLISHED"),
        ("tcp6", "::1", info["v6server"], "::", 0, "LISTEN"),
        ("tcp6", "::1", info["v6client"], "::1", info["v6server"], "ESTABLISHED"),
        ("tcp6", "::1", info["v6server"], "::1", info["v6client"], "ESTABLISHED"),
        ("tcp6", "::", info["mapped"], "::", 0, "LISTEN"),
        ("tcp6", "127.0.0.1", info["m"], "127.0.0.1", info["mapped"], "ESTABLISHED"),
        ("tcp6", "127.0.0.1", info["mapped"], "127.0.0.1", info["m"], "ESTABLISHED"),
        ("tcp", "127.0.0.1", info["half_server"], "0.0.0.0", 0, "LISTEN"),
        ("tcp", "127.0.0.1", info["half_client"], "127.0.0.1", info["half_server"],
         "CLOSE_WAIT"),
        ("udp", "127.0.0.1", info["u4"], "0.0.0.0", 0, "UNCONN"),
        ("udp", "127.0.0.1", info["uc"], "127.0.0.1", 9, "ESTABLISHED"),
        ("udp6", "::1", info["u6"], "::", 0, "UNCONN"),
        ("udp6", "::1", info["uc6"], "::1", 9, "ESTABLISHED"),
        ("udp6", "127.0.0.1", info["um"], "127.0.0.1", 9, "ESTABLISHED"),
    } | {("tcp6", "::1", port, "::", 0, "LISTEN") for port in info["many"]}


def record(sock) -> tuple:
    return tuple(getattr(sock, name) for name in SOCKET_FIELDS)


def records_of_uid(snapshot, uid) -> dict:
    return {inode: record(sock) for inode, sock in snapshot.socket_table.items()
            if sock.uid == uid}


def endpoints(records) -> set:
    return {(proto, local_ip, local_port, remote_ip, remote_port, state)
            for _, proto, local_ip, local_port, remote_ip, remote_port, state, _, _ in records}


def test_sock_diag_gives_the_records_proc_net_gives(core, children, tmp_path):
    uid = uid_for(900)
    child = start_python(SOCKETS_SETUP, uid=uid)
    children.append(child)
    # the same procfs under another name is read as a prepared tree: its /proc/net files.
    # No fd walk: a socket the tables do not show would be identified from its fd and added.
    files_root = tmp_path / "proc"
    files_root.symlink_to("/proc")
    netlink = procfs.scan("/proc", False, core=core)
    files = procfs.scan(str(files_root), False, core=core)
    assert netlink.stats["sock_diag"] == len(SOCK_DIAG_TABLES)
    assert files.stats["sock_diag"] == 0
    from_netlink = records_of_uid(netlink, uid)
    assert from_netlink == records_of_uid(files, uid)
    assert endpoints(from_netlink.values()) == expected_endpoints(child.info)
    assert len(from_netlink) == len(expected_endpoints(child.info))
    assert child.info["bound_inode"] not in netlink.socket_table
    host_ns = os.stat("/proc/self/ns/net").st_ino
    assert {(sock_uid, netns) for *_, sock_uid, netns in from_netlink.values()} == {(uid, host_ns)}
    # the process holds those, and the bound socket, identified from its fd
    [proc] = procfs.scan("/proc", lambda proc: proc.pid == child.pid, core=core,
                         pids=[child.pid]).processes
    held = {sock.inode: record(sock) for sock in proc.sockets}
    assert held.keys() == from_netlink.keys() | {child.info["bound_inode"]}
    assert all(held[inode] == from_netlink[inode] for inode in from_netlink)


def test_a_prepared_tree_reads_its_own_tables_not_the_hosts(core, children, tmp_path):
    root = str(tmp_path)
    write(f"{root}/uptime", "1000.50 1900.00\n")
    write(f"{root}/net/tcp", TCP_HEADER + tcp_line("0100007F:1F90", "00000000:0000", "0A", 111))
    write(f"{root}/net/udp6", TCP_HEADER + tcp_line(
        "0000000000000000FFFF00000100007F:0035", "00000000000000000000000000000000:0000", "07",
        222))
    write(f"{root}/4242/stat", stat_line(4242, "x", 1, 50))
    write(f"{root}/4242/status", "Name:\tx\nUid:\t1000\t1000\t1000\t1000\n")
    os.symlink("/tmp/x", f"{root}/4242/exe")
    os.makedirs(f"{root}/4242/fd")
    os.symlink("socket:[111]", f"{root}/4242/fd/3")
    host = start_python('info["port"] = listen(socket.AF_INET, "127.0.0.1").getsockname()[1]',
                        uid=uid_for(901))
    children.append(host)
    snapshot = procfs.scan(root, True, core=core)
    assert snapshot.stats["sock_diag"] == 0
    assert sorted(map(record, snapshot.socket_table.values())) == [
        (111, "tcp", "127.0.0.1", 8080, "0.0.0.0", 0, "LISTEN", 1000, 0),
        (222, "udp6", "127.0.0.1", 53, "::", 0, "UNCONN", 1000, 0),
    ]
    assert [record(sock)[0] for sock in snapshot.processes[0].sockets] == [111]


SCAN_IN_CHILD = """
import json, sys
from ptfast.scan import procfs, _procscan_py
from ptfast.scan._corespec import SOCKET_FIELDS
core = _procscan_py if sys.argv[1] == "pure-python" else __import__("ptfast.scan._procscan").scan.\\
    _procscan
uid = int(sys.argv[2])
snapshot = procfs.scan("/proc", False, core=core)
record = lambda sock: [getattr(sock, name) for name in SOCKET_FIELDS]
print(json.dumps({"stats": snapshot.stats,
                  "table": [record(s) for s in snapshot.socket_table.values() if s.uid == uid]}))
"""


@pytest.mark.skipif(not nonetlink.SUPPORTED, reason="seccomp filter for x86_64 and aarch64 only")
@pytest.mark.parametrize("refusal", sorted(nonetlink.REFUSALS))
def test_proc_net_is_read_when_netlink_fails(core, children, refusal):
    uid = uid_for(902)
    child = start_python(SOCKETS_SETUP, uid=uid)
    children.append(child)
    core_name = "pure-python" if core.__name__.endswith("_py") else "compiled"
    result = subprocess.run([sys.executable, "-c", SCAN_IN_CHILD, core_name, str(uid)],
                            capture_output=True, text=True, timeout=120,
                            preexec_fn=nonetlink.REFUSALS[refusal])
    assert result.returncode == 0, result.stderr
    refused = json.loads(result.stdout)
    netlink = procfs.scan("/proc", False, core=core)
    assert refused["stats"]["sock_diag"] == 0
    assert netlink.stats["sock_diag"] == len(SOCK_DIAG_TABLES)
    from_netlink = records_of_uid(netlink, uid)
    assert sorted(map(tuple, refused["table"])) == sorted(from_netlink.values())
    assert endpoints(from_netlink.values()) == expected_endpoints(child.info)
