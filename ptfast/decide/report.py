"""Findings as text for people (a table) and for programs (one JSON object per line).

Every attacker-chosen string passes through ``escape_text`` first, in both forms.
"""

from __future__ import annotations

from ptfast.foundation.bounds import MAX_LIST_ITEMS, bounded_lines, bounded_text
from ptfast.decide.checks.shown import shown_exe
from ptfast.decide.checks.sockets import judged_socket_text, socket_endpoints
from ptfast.foundation.escape import escape_text


def judged_socket_records(finding) -> list:
    """Each socket of the finding's process, and whether it counted toward the finding and
    why (checks.suspicious.judge_sockets); sockets no check judged are listed as they are."""
    if finding.judged_sockets:
        return [{**socket_record(sock), "counted": counts, "why": why}
                for sock, counts, why in finding.judged_sockets]
    return [socket_record(sock) for sock in finding.sockets]


def socket_record(sock) -> dict:
    local, remote = socket_endpoints(sock)
    return {"proto": sock.proto, "local": local, "remote": remote, "state": sock.state,
            "inode": sock.inode, "uid": sock.uid, "netns": sock.netns}


def process_record(proc) -> dict:
    return {"pid": proc.pid, "ppid": proc.ppid, "uid": proc.uid, "exe": escape_text(proc.exe),
            "exe_deleted": proc.exe_deleted, "cmdline": bounded_text(proc.cmdline),
            "uptime": int(proc.age), "start_time": proc.start_time, "session": proc.session,
            "vm_size_mb": proc.vm_size_bytes >> 20, "vm_rss_mb": proc.vm_rss_bytes >> 20,
            "threads": proc.threads, "incomplete": proc.incomplete}


def finding_record(finding) -> dict:
    """One finding of any check; process fields at the top level when it concerns one
    process, "count" and "pids" when it concerns a user's or a session's processes, and under
    "response" what ``ptfast run`` does about it."""
    record = {"check": finding.check, "reasons": list(finding.reasons),
              "user": escape_text(finding.user)}
    if finding.level:
        record["level"] = finding.level
    proc = finding.process
    if proc is not None and not finding.processes:
        record.update(process_record(proc))
        sockets = judged_socket_records(finding)
        record["sockets"] = sockets[:MAX_LIST_ITEMS]
        if len(sockets) > MAX_LIST_ITEMS:
            record["sockets_left_out"] = len(sockets) - MAX_LIST_ITEMS
        record["open_files"] = bounded_lines(finding.open_files, bounded_text)
    elif proc is None and finding.judged_sockets:      # a listener held by no process
        record["uid"] = finding.details["uid"]
        record["sockets"] = judged_socket_records(finding)
    if finding.processes:       # a user's or a session's: the PIDs (each has its own record
        record["count"] = len(finding.processes)     # in `scan` when it is suspicious itself)
        record["pids"] = [p.pid for p in finding.processes[:MAX_LIST_ITEMS]]
    record["response"] = finding.response.as_record()
    return record


def json_line(record: dict) -> bytes:
    import orjson      # here: a table needs none of it (and orjson loads uuid)
    return orjson.dumps(record) + b"\n"


def table(findings: list) -> str:
    """A readable table: one header row per finding, then its details."""
    if not findings:
        return ""
    rows = [f"{'PID':>7}  {'USER':<12} {'UPTIME':>8}  {'WHY':<34} EXE"]
    for finding in findings:
        proc = finding.process
        why = ", ".join(finding.reasons)
        if finding.level:
            why += f" ({finding.level})"
        if proc is None or finding.processes:
            count = f"{len(finding.processes)} processes" if finding.processes else ""
            rows.append(f"{'-':>7}  {escape_text(finding.user) or '-':<12} {'':>8}  "
                        f"{finding.check}: {why}  {count}")
            for member in finding.processes:
                rows.append(f"{'':>9}PID {member.pid} {escape_text(member.exe)} "
                            f"cmd: {bounded_text(member.cmdline)}")
            continue
        rows.append(f"{proc.pid:>7}  {escape_text(finding.user):<12} {int(proc.age):>7}s  "
                    f"{why:<34} {shown_exe(proc)}")
        rows.append(f"{'':>9}cmd: {bounded_text(proc.cmdline)}")
        if proc.incomplete:
            rows.append(f"{'':>9}not fully inspected: {proc.incomplete}")
        for sock, counts, why in finding.judged_sockets or ((s, True, "") for s in
                                                            finding.sockets):
            rows.append(f"{'':>9}{judged_socket_text(sock, counts, why)}")
    return "\n".join(rows) + "\n"
