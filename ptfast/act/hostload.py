"""What a load alert attaches: the load, the processes, memory and CPU, the network connections
and the web server's status page, gathered with psutil (no ps, vmstat or netstat binaries)."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
import uuid

import psutil

from ptfast.foundation.config import LoadSettings
from ptfast.foundation.escape import escape_block, escape_text

STATUS_TIMEOUT = 5.0
# a busy host has thousands of processes and sockets: the mail lists the busiest, within bounds
MAX_PROCESS_ROWS = 300
MAX_CONNECTION_ROWS = 1000
STATUS_MAX_BYTES = 1 << 20


def process_list(sample: float = 0.5) -> str:
    """Every process, busiest (CPU over ``sample`` seconds) first."""
    procs = list(psutil.process_iter())
    for proc in procs:
        try:
            proc.cpu_percent(None)          # the first call only starts the measurement
        except psutil.Error:
            pass
    time.sleep(sample)
    entries = []
    for proc in procs:
        try:
            with proc.oneshot():
                memory = proc.memory_info()
                entries.append((proc.cpu_percent(None), proc.pid, proc.username(),
                                proc.memory_percent(), memory.rss, proc.status(),
                                " ".join(proc.cmdline()) or f"[{proc.name()}]"))
        except psutil.Error:                # gone, or a zombie without details
            continue
    rows = [f"{'PID':>7} {'USER':<12} {'%CPU':>5} {'%MEM':>5} {'RSS MB':>8} {'STATE':<9} COMMAND"]
    busiest = sorted(entries, key=lambda e: -e[0])
    for cpu, pid, user, mem, rss, status, command in busiest[:MAX_PROCESS_ROWS]:
        rows.append(f"{pid:>7} {escape_text(user)[:12]:<12} {cpu:>5.1f} {mem:>5.1f} "
                    f"{rss / (1 << 20):>8.1f} {status:<9} {escape_text(command[:400])}")
    if len(busiest) > MAX_PROCESS_ROWS:
        rows.append(f"... {len(busiest) - MAX_PROCESS_ROWS} more processes, less busy")
    return "\n".join(rows)


def memory_cpu_summary() -> str:
    memory, swap = psutil.virtual_memory(), psutil.swap_memory()
    cpu = psutil.cpu_times_percent(interval=0.5)
    mib = 1 << 20
    return "\n".join([
        f"memory: total {memory.total // mib} MB, available {memory.available // mib} MB, "
        f"used {memory.percent:.1f}%",
        f"swap:   total {swap.total // mib} MB, used {swap.used // mib} MB, "
        f"swapped in {swap.sin // mib} MB, out {swap.sout // mib} MB since boot",
        f"cpu:    {psutil.cpu_count()} cores; user {cpu.user:.1f}%, system {cpu.system:.1f}%, "
        f"iowait {getattr(cpu, 'iowait', 0.0):.1f}%, idle {cpu.idle:.1f}%, "
        f"steal {getattr(cpu, 'steal', 0.0):.1f}%",
    ])


def connections() -> str:
    rows = [f"{'PROTO':<6} {'LOCAL':<45} {'REMOTE':<45} {'STATE':<12} PID"]
    # who holds what first: on a busy host thousands of TIME_WAIT and ownerless sockets would
    # otherwise fill the rows before the connections of the processes behind the load
    found = sorted(psutil.net_connections(kind="inet"),
                   key=lambda conn: (not conn.pid, conn.status == "TIME_WAIT"))
    for conn in found[:MAX_CONNECTION_ROWS]:
        proto = ("tcp" if conn.type == 1 else "udp") + ("6" if conn.family == 10 else "")
        local = f"{conn.laddr.ip}:{conn.laddr.port}" if conn.laddr else "-"
        remote = f"{conn.raddr.ip}:{conn.raddr.port}" if conn.raddr else "-"
        rows.append(f"{proto:<6} {local:<45} {remote:<45} {conn.status:<12} {conn.pid or '-'}")
    if len(found) > MAX_CONNECTION_ROWS:
        rows.append(f"... {len(found) - MAX_CONNECTION_ROWS} more connections")
    return "\n".join(rows)


def status_page(url: str) -> str:
    if not url.strip():
        return "(PT_APACHESTATUS is empty)"
    if not url.startswith(("http://", "https://")):
        return f"(PT_APACHESTATUS {escape_text(url)} is not an http(s) URL)"
    try:
        with urllib.request.urlopen(url, timeout=STATUS_TIMEOUT) as response:
            return escape_block(response.read(STATUS_MAX_BYTES).decode("utf-8", "replace"))
    except (OSError, urllib.error.URLError, ValueError) as exc:
        return f"(the status page {escape_text(url)} did not answer: {escape_text(str(exc))})"


def load_alert_values(load: LoadSettings, hostname: str, loadavg: tuple, totprocs: str,
                      minutes: int) -> dict:
    """The placeholders of loadalert.txt (lfd's names); ``minutes``: the load average the
    check chose (PT_LOAD_AVG in force)."""
    return {
        "hostname": hostname,
        "loadavg": str(minutes),
        "reportload": f"{loadavg[(1, 5, 15).index(minutes)]:.2f}",
        "loadavg1": f"{loadavg[0]:.2f}", "loadavg5": f"{loadavg[1]:.2f}",
        "loadavg15": f"{loadavg[2]:.2f}",
        "totprocs": totprocs,
        "processlist": process_list(),
        "vmstat": memory_cpu_summary(),
        "netstat": connections(),
        "apache": status_page(load.PT_APACHESTATUS),
        "boundary": f"ptfast-{uuid.uuid4().hex}-{int(time.time())}",
    }
