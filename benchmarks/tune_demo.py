"""A shared-hosting-like workload for `ptfast tune`, then the tune run itself.

    sudo python3 benchmarks/tune_demo.py --size 5000 --duration 180

Starts the benchmark population (benchmarks/population.c: SIZE sleeping processes over 300 uids
of a block no account or process uses,
10% with an established loopback connection, 1% listening; they stand for long-lived daemons
and intruders) and, beside it, a churn of short-lived socket holders standing for PHP/CGI
requests and cron jobs: every CHURN_EVERY seconds a process of a random customer uid opens a
loopback connection and holds it for a lifetime drawn from WORKER_LIVES. Then it runs
`ptfast tune` on the built-in ignore list and prints its table. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import encodings.idna  # noqa: F401  (workers cannot read the stdlib once they drop root)
import os
import random
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from host import free_uid_block, kill_uid_block  # noqa: E402
from run import start_population, stop_population  # noqa: E402

CHURN_EVERY = 0.25
# (share, shortest, longest) seconds: quick requests, slow API calls, long cron jobs
WORKER_LIVES = ((0.80, 0.5, 4.0), (0.17, 6.0, 25.0), (0.03, 40.0, 100.0))
POPULATION_UIDS = 300
WORKER_UIDS = 200       # after the population's, in the same free block


def worker_life(rng: random.Random) -> float:
    draw = rng.random()
    for share, shortest, longest in WORKER_LIVES:
        if draw < share:
            return rng.uniform(shortest, longest)
        draw -= share
    return WORKER_LIVES[-1][2]


def churn(port: int, seed: int, worker_uids: range) -> None:
    """Forks short-lived socket holders until killed (runs in its own process group)."""
    rng = random.Random(seed)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)        # the kernel reaps the workers
    while True:
        life, uid = worker_life(rng), rng.choice(worker_uids)
        if os.fork() == 0:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            connection = socket.create_connection(("127.0.0.1", port))
            time.sleep(life)
            connection.close()
            os._exit(0)
        time.sleep(CHURN_EVERY)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=5000)
    parser.add_argument("--duration", type=float, default=180)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
    port = listener.getsockname()[1]
    base_uid = free_uid_block(POPULATION_UIDS + WORKER_UIDS)
    population = start_population(args.size, POPULATION_UIDS, base_uid)
    server = os.fork()
    if server == 0:                      # accepts the workers' connections and keeps them
        os.setpgid(0, 0)
        kept = []
        while True:
            kept.append(listener.accept()[0])
    worker_parent = os.fork()
    if worker_parent == 0:
        os.setpgid(0, 0)
        churn(port, args.seed, range(base_uid + POPULATION_UIDS,
                                     base_uid + POPULATION_UIDS + WORKER_UIDS))
    try:
        time.sleep(30)                   # let the churn reach its steady state
        command = [sys.executable, "-m", "ptfast", "tune", "--config", os.devnull,
                   "--override", os.devnull, "--duration", str(args.duration)]
        return subprocess.run(command).returncode
    finally:
        for pid in (worker_parent, server):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
        stop_population(population)
        kill_uid_block(base_uid, POPULATION_UIDS + WORKER_UIDS)


if __name__ == "__main__":
    sys.exit(main())
