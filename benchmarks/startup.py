"""What `ptfast scan` spends before it scans: the interpreter's start and ptfast's imports.

    python3 benchmarks/startup.py                 # 10 rounds, the 15 costliest imports
    python3 benchmarks/startup.py --rounds 20 --top 25

Times, interleaved, ROUNDS times: `python -S -c pass` (the bare interpreter), `python -c pass`
(with site, which also runs the .pth hooks of site-packages, e.g. an editable install's),
`python -m ptfast --version` (every import the command line does) and `python -m ptfast scan
--json` on this host (a few hundred processes: mostly start-up). Then runs the scan under
`-X importtime` ROUNDS times and lists, by median over the rounds, the costliest imports that
ptfast's own modules make (cumulative: what not importing them would save; a module imported by
several is listed under the first), what site imports before ptfast starts, and the costliest
modules by their own time. Prints min / median / max and writes benchmarks/results/startup-*.json.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from record import (compile_tree, environment, results_path, spread,  # noqa: E402
                    write_results)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCAN = ["-m", "ptfast", "scan", "--json", "--config", os.devnull, "--override", os.devnull,
        "--set", "PT_LIMIT=1"]
COMMANDS = {
    "python -S -c pass": ["-S", "-c", "pass"],
    "python -c pass": ["-c", "pass"],
    "ptfast --version": ["-m", "ptfast", "--version"],
    "ptfast scan --json": SCAN,
}


def wall(arguments: list) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, *arguments], cwd=REPO, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def import_times() -> list:
    """(depth, module, self µs, cumulative µs) per line of -X importtime, in its order (a
    module's imports come before it, one level deeper)."""
    stderr = subprocess.run([sys.executable, "-X", "importtime", *SCAN], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True).stderr
    rows = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, cumulative, name = line[len("import time:"):].split("|")
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2
        rows.append((depth, name.strip(), int(own), int(cumulative)))
    return rows


def importer(rows: list, index: int) -> str:
    """The module whose import caused ``rows[index]``: the next row one level up."""
    depth = rows[index][0]
    for row in rows[index + 1:]:
        if row[0] < depth:
            return row[1]
    return "(top level)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    compile_tree()

    walls: dict = {name: [] for name in COMMANDS}
    own: dict = {}
    cumulative: dict = {}
    imported_by: dict = {}
    totals = []
    for _ in range(args.rounds):
        for name, arguments in COMMANDS.items():
            walls[name].append(wall(arguments))
        rows = import_times()
        totals.append(sum(row[2] for row in rows))
        for index, (_depth, module, self_us, cumulative_us) in enumerate(rows):
            own.setdefault(module, []).append(self_us)
            cumulative.setdefault(module, []).append(cumulative_us)
            imported_by[module] = importer(rows, index)

    def median_ms(values):
        return statistics.median(values) / 1000

    # what ptfast's modules pull in: the candidates for a lazy import
    by_ptfast = sorted(((median_ms(cumulative[m]), m, imported_by[m]) for m in cumulative
                        if imported_by[m].startswith("ptfast") and not m.startswith("ptfast")),
                       reverse=True)
    ptfast_modules = sorted(((median_ms(cumulative[m]), m, imported_by[m]) for m in cumulative
                             if m.startswith("ptfast")), reverse=True)
    by_site = sorted(((median_ms(cumulative[m]), m, imported_by[m]) for m in cumulative
                      if imported_by[m] == "site" or m == "site"), reverse=True)
    by_self = sorted(((median_ms(own[m]), m, imported_by[m]) for m in own), reverse=True)

    document = {"environment": environment(), "options": vars(args),
                "wall": {name: spread(v) for name, v in walls.items()},
                "imports_total_self": spread([t / 1e6 for t in totals]),
                "imports": {m: {"self_ms": median_ms(own[m]),
                                "cumulative_ms": median_ms(cumulative[m]),
                                "imported_by": imported_by[m]} for m in own}}
    path = results_path("startup", document)
    write_results(path, document)

    print(f"== start-up, {args.rounds} rounds, ms      min   median      max")
    for name, values in walls.items():
        print(f"   {name:<24}{min(values) * 1000:9.1f}{statistics.median(values) * 1000:9.1f}"
              f"{max(values) * 1000:9.1f}")
    total = document["imports_total_self"]
    print(f"   {'all imports (-X importtime)':<24}{total['min'] * 1000:9.1f}"
          f"{total['median'] * 1000:9.1f}{total['max'] * 1000:9.1f}")

    def listing(title, entries):
        print(f"== {title}")
        for ms, module, by in entries[:args.top]:
            print(f"   {ms:7.1f} ms  {module:<40} imported by {by}")

    listing("imports that ptfast's modules make, by cumulative median", by_ptfast)
    listing("ptfast's modules, by cumulative median", ptfast_modules)
    listing("what site imports before ptfast runs (.pth hooks: an editable install's finder "
            "costs here, a regular install's does not)", by_site)
    listing("every module, by its own median time", by_self)
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
