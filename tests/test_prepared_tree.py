"""The configurable procfs root: a prepared tree for what cannot be made for real."""

import os

from ptfast.scan import procfs

from helpers.proctree import TCP_HEADER, stat_line, tcp_line, write

def build_tree(root):
    write(f"{root}/uptime", "1000.50 1900.00\n")
    write(f"{root}/net/tcp", TCP_HEADER +
          tcp_line("0100007F:1F90", "00000000:0000", "0A", 111) +
          tcp_line("0A00A8C0:C350", "0B00A8C0:01BB", "01", 222))   # 192.168.0.10 -> .11:443
    write(f"{root}/net/tcp6", TCP_HEADER +
          tcp_line("0000000000000000FFFF00000100007F:0050", "00000000000000000000000000000000:0000",
                   "0A", 333) +
          tcp_line("B80D0120000000000000000001000000:0016", "00000000000000000000000000000000:0000",
                   "0A", 444))
    for proto in ("udp", "udp6", "raw", "raw6"):
        write(f"{root}/net/{proto}", TCP_HEADER)
    pid = 4242
    base = f"{root}/{pid}"
    write(f"{base}/stat", stat_line(pid, "a) (b", 1, 50))   # comm with ") (" inside
    write(f"{base}/status", "Name:\tx\nUid:\t1000\t1001\t1002\t1003\nGid:\t0\t0\t0\t0\n")
    write(f"{base}/cmdline", b"/tmp/x\0-l\0\0", "wb")
    os.symlink("/tmp/x (deleted)/bin", f"{base}/exe")            # not deleted: a name
    os.makedirs(f"{base}/fd")
    for fd, target in enumerate(["socket:[111]", "socket:[222]", "socket:[333]", "socket:[444]",
                                 "socket:[999]", "pipe:[5]", "/var/log/x.log"]):
        os.symlink(target, f"{base}/fd/{fd}")
    write(f"{root}/77/stat", stat_line(77, "kworker/0:1", 2, 1, flags=0x00200000))
    os.makedirs(f"{root}/78")                                     # vanished: no files left
    return pid


def test_prepared_tree(core, tmp_path):
    pid = build_tree(str(tmp_path))
    snapshot = procfs.scan(str(tmp_path), True, core=core)
    assert [proc.pid for proc in snapshot.processes] == [pid]
    proc = snapshot.processes[0]
    assert (proc.ppid, proc.pgrp, proc.session, proc.uid) == (1, pid, pid, 1003)
    assert proc.start_time == 50
    assert proc.age == 1000.50 - 50 / os.sysconf("SC_CLK_TCK")
    assert proc.vm_size_bytes == 8192000
    assert proc.vm_rss_bytes == 100 * os.sysconf("SC_PAGESIZE")
    assert proc.exe == "/tmp/x (deleted)/bin" and not proc.exe_deleted
    assert proc.cmdline == "/tmp/x -l"
    assert proc.open_files == ("/var/log/x.log",)
    assert sorted((s.proto, s.local_ip, s.local_port, s.remote_ip, s.remote_port, s.state)
                  for s in proc.sockets) == [
        ("tcp", "127.0.0.1", 8080, "0.0.0.0", 0, "LISTEN"),
        ("tcp", "192.168.0.10", 50000, "192.168.0.11", 443, "ESTABLISHED"),
        ("tcp6", "127.0.0.1", 80, "::", 0, "LISTEN"),
        ("tcp6", "2001:db8::1", 22, "::", 0, "LISTEN"),
    ]
    assert snapshot.stats["kernel_threads"] == 1
    assert snapshot.stats["vanished"] == 1


def test_a_socket_table_larger_than_the_parse_chunk_is_read_whole_and_alike(tmp_path, core):
    """The compiled core parses /proc/net tables a chunk at a time (so that 200,000 sockets do
    not cost 30 MB); every line across the chunks' edges is read, the last one without its
    newline too."""
    root = str(tmp_path)
    build_tree(root)
    lines = [tcp_line(f"0100007F:{port:04X}", "00000000:0000", "0A", 100000 + port)
             for port in range(1024, 1024 + 5000)]
    write(f"{root}/net/tcp", TCP_HEADER + "".join(lines).rstrip("\n"))
    assert len(TCP_HEADER + "".join(lines)) > 4 * 65536
    snapshot = procfs.scan(root, True, core=core)
    assert {inode for inode in snapshot.socket_table if inode >= 100000} == \
        {100000 + port for port in range(1024, 1024 + 5000)}
