"""`ptfast run` timed inside the process, with no interpreter start and warm caches (what the
daemon pays every PT_INTERVAL). Run by benchmarks/run.py, as root; prints seconds.

    python3 benchmarks/warm_pass.py warm PT_LIMIT   # the floor's job: scan and decide on
                                                    # everything, nothing remembered as reported
    python3 benchmarks/warm_pass.py pass PT_LIMIT   # a steady pass: everything found is
                                                    # already reported (no fd walk for it)

With --handshake after them, it prints "set up" once the first pass is done and waits for a
line on its standard input before the timed part (the runner refills its TIME_WAIT sockets
then: the first pass can outlast them).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

from ptfast.commands import daemon
from ptfast.scan import procfs
from ptfast.commands.cli import build_parser
from ptfast.decide.judgement import Judgement
from ptfast.decide.policy import build_policy


def main() -> int:
    mode, limit = sys.argv[1], sys.argv[2]
    handshake = sys.argv[3:] == ["--handshake"]
    with tempfile.TemporaryDirectory() as scratch:
        args = build_parser().parse_args([
            "run", "--quiet", "--config", os.devnull, "--override", os.devnull,
            "--set", f"PT_LIMIT={limit}", "--set", "PT_LOAD=0", "--set", "SENDMAIL=/bin/true",
            "--state-dir", os.path.join(scratch, "state"),
            "--log-file", os.path.join(scratch, "log"),
            "--events-file", os.path.join(scratch, "events"),
            "--templates", os.path.join(scratch, "no-templates")])
        service = daemon.Service(args)
        service.start()
        # The first pass alerts on everything: past PT_DIGEST_AFTER that is one digest mail,
        # not one sendmail per alert (13,000 of those once took 15 minutes at 50,000 processes)
        try:
            service.run_pass()          # the first pass alerts on everything and warms caches
            if handshake:
                print("set up", flush=True)
                sys.stdin.readline()
            started = time.perf_counter()
            if mode == "warm":
                # nothing remembered as reported, the service's warm caches
                judgement = Judgement(build_policy(service.config, service.settings.rules,
                                                   user_names=service.tracker.user_names))
                judgement.findings(procfs.scan(args.proc_root, judgement.want_fds))
            else:
                service.run_pass()
            elapsed = time.perf_counter() - started
        finally:
            service.stop()
    print(f"{elapsed:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
