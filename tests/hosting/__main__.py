"""Build the bed, measure ptfast on it, print the table, tear down.

    sudo python3 -m tests.hosting [--no-install] [--json FILE]     (from the checkout's root)
    sudo python3 -m tests.hosting --service [--limit 10 --interval 60 --window 150] ...

--service runs ``ptfast run`` of the checkout on the bed and plants the attacks while it runs:
time to each attack's first alert, false positives within the window, then one-shot scans.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time

from .attacks import Planter, settle
from .bed import Bed, remove_stale_bed
from .live import run_service, service_table
from .measure import details, measure, socket_ownership, table
from .packages import BedError, Unavailable


def _terminate(signum, frame):
    raise KeyboardInterrupt       # SIGTERM tears the bed down as Ctrl-C does


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m tests.hosting", description=__doc__)
    parser.add_argument("--no-install", action="store_true",
                        help="do not apt-get install missing daemons: fail instead")
    parser.add_argument("--json", metavar="FILE", help="also write the outcomes as JSON")
    parser.add_argument("--cleanup", action="store_true",
                        help="only remove what a bed killed outright left behind (every run "
                             "does this first)")
    parser.add_argument("--service", action="store_true",
                        help="measure `ptfast run` with the attacks planted while it runs")
    parser.add_argument("--limit", type=int, default=10, help="PT_LIMIT of --service (10)")
    parser.add_argument("--interval", type=int, default=60,
                        help="PT_INTERVAL of --service (60)")
    parser.add_argument("--window", type=float, default=150,
                        help="seconds --service runs, and counts false positives in (150)")
    parser.add_argument("--spacing", type=float, default=4,
                        help="seconds between two attacks planted by --service (4)")
    args = parser.parse_args(argv)
    if args.service and not 0 < args.window <= 600:
        parser.error("--window: 1 to 600 seconds (the bed's run stays bounded)")
    if args.cleanup:
        remove_stale_bed()
        return 0
    signal.signal(signal.SIGTERM, _terminate)
    bed = Bed(progress=lambda text: print(text, file=sys.stderr, flush=True))
    began = time.monotonic()
    try:
        bed.start(install=not args.no_install)
        built = time.monotonic()
        if args.service:
            results = run_service(bed, Planter(bed), args.limit, args.interval, args.window,
                                  args.spacing, progress=bed.progress).results
            print(service_table(results))
            print(f"build: {built - began:.1f} s")
            if args.json:
                with open(args.json, "w") as handle:
                    json.dump(results, handle, indent=1)
            return 0
        planter = Planter(bed)
        planter.plant_all()
        settle(2.0)            # every process older than PT_LIMIT=1
        outcomes, samples = measure(bed, planter)
        print(table(outcomes))
        print(details(outcomes))
        print("who holds which socket (uid column of /proc/net/*):")
        print(socket_ownership(bed, planter, samples))
        print(f"install: {sum(bed.install_timings.values()):.0f} s "
              f"{json.dumps({k: round(v, 1) for k, v in bed.install_timings.items()})}")
        print(f"build: {built - began - sum(bed.install_timings.values()):.1f} s "
              f"{json.dumps({k: round(v, 1) for k, v in bed.timings.items()})}")
        print("planted:")
        for planted in planter.attacks + planter.customer_apps:
            print(f"  {planted.name}: {planted.title} ({planted.account}, pid "
                  f"{', '.join(map(str, planted.pids))})")
        print(f"web load: {bed.load_requests} requests during the scans, "
              f"{len(bed.load_errors)} errors {bed.load_errors[:3]}")
        if args.json:
            with open(args.json, "w") as handle:
                json.dump([outcome.as_dict() for outcome in outcomes], handle, indent=1)
    except Unavailable as exc:
        print(f"hosting bed unavailable: {exc}", file=sys.stderr)
        return 2
    except BedError as exc:
        print(f"hosting bed broken: {exc}", file=sys.stderr)
        return 1
    finally:
        teardown_began = time.monotonic()
        problems = bed.teardown()
        phases = {k: round(v, 1) for k, v in bed.timings.items() if k.startswith("teardown")}
        print(f"teardown: {'clean' if not problems else problems} in "
              f"{time.monotonic() - teardown_began:.1f} s {json.dumps(phases)}"
              f"(whole run {time.monotonic() - began:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
