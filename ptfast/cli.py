"""``ptfast scan | check | run | tune``.

Exit status: 0 nothing found / all clean, 1 findings, 2 error.
"""

from __future__ import annotations

import argparse
import os
import sys

from . import __version__, config as config_mod, pignore, procfs
from .escape import escape_text
from .paths import (DEFAULT_EVENTS_FILE, DEFAULT_LOG_FILE, DEFAULT_STATE_DIR,
                    DEFAULT_TEMPLATE_DIR)
from .policy import CHECK_SUSPICIOUS, Policy, load_finding
from .report import finding_record, json_line, table
from .tune import DEFAULT_DURATION, DEFAULT_LIMITS, DEFAULT_SAMPLE
from .users import UserNames, accounts_to_track

EXIT_CLEAN, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2


def version_text() -> str:
    text = f"ptfast {__version__} ({procfs.CORE_NAME} core)"
    if procfs.CORE_FALLBACK_REASON:
        text += f"; {procfs.CORE_FALLBACK_REASON}"
    return text


def warn(message: str) -> None:
    print(f"ptfast: {message}", file=sys.stderr)


def add_input_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE",
                        help=f"csf.conf to read (default {config_mod.DEFAULT_CONFIG_PATH} when "
                             "it exists, else built-in defaults)")
    parser.add_argument("--override", metavar="FILE",
                        help="ptfast's own settings, read after csf.conf (default "
                             f"{config_mod.DEFAULT_OVERRIDE_PATH} when it exists)")
    parser.add_argument("--pignore", metavar="FILE",
                        help=f"ignore rules (default {pignore.DEFAULT_PIGNORE_PATH} when it "
                             "exists, else the built-in list)")
    parser.add_argument("--set", metavar="NAME=VALUE", action="append", default=[],
                        help="override one setting for this run (repeatable)")
    parser.add_argument("--proc-root", default="/proc", metavar="DIR",
                        help="procfs to read (default /proc; for prepared trees)")


def add_templates_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--templates", default=DEFAULT_TEMPLATE_DIR, metavar="DIR",
                        help="alert templates to use when present (default "
                             f"{DEFAULT_TEMPLATE_DIR}, lfd's); else ptfast's built-in ones")


def add_service_options(parser: argparse.ArgumentParser) -> None:
    add_templates_option(parser)
    parser.add_argument("--state-dir", default=DEFAULT_STATE_DIR, metavar="DIR",
                        help="reported processes, the mail spool and the lock (default "
                             f"{DEFAULT_STATE_DIR})")
    parser.add_argument("--log-file", default=DEFAULT_LOG_FILE, metavar="FILE",
                        help=f"lfd-format log lines (default {DEFAULT_LOG_FILE})")
    parser.add_argument("--events-file", default=DEFAULT_EVENTS_FILE, metavar="FILE",
                        help=f"one JSON line per alert (default {DEFAULT_EVENTS_FILE})")
    parser.add_argument("--quiet", action="store_true",
                        help="do not echo log messages to stderr")


def load_inputs(args):
    config = config_mod.load(args.config, args.set, override_path=args.override)
    rules = pignore.load(args.pignore)
    return config, rules


def unreadable_inputs(config, rules) -> list:
    """Problems that mean a file the admin named could not be read at all."""
    return [p for p in config.problems + rules.problems if p.line == 0 and p.path != "--set"]


def load_checked_inputs(args):
    """(config, rules) with every problem said on stderr; None when a named file is
    unreadable."""
    config, rules = load_inputs(args)
    for problem in config.problems + rules.problems:
        warn(escape_text(str(problem)))
    if unreadable_inputs(config, rules):
        return None
    return config, rules


def build_policy(config, rules) -> Policy:
    return Policy(config, rules, UserNames(), accounts_to_track(config))


def cmd_tune(args) -> int:
    from . import tune
    inputs = load_checked_inputs(args)
    if inputs is None:
        return EXIT_ERROR
    config, rules = inputs
    try:
        limits = sorted({int(text) for text in args.limits.split(",") if text.strip()})
    except ValueError:
        warn(f"--limits must be whole numbers separated by commas, not {args.limits!r}")
        return EXIT_ERROR
    if args.duration <= 0 or args.sample <= 0:
        warn("--duration and --sample must be positive")
        return EXIT_ERROR
    panel = accounts_to_track(config)
    user_names = UserNames()

    def make_policy(limit):      # the run's settings and rules, with PT_LIMIT replaced
        return Policy(config, rules, user_names, panel, limit=limit)

    pt_interval = config_mod.effective_interval(config)
    try:
        result = tune.watch(make_policy, args.proc_root, pt_interval, limits, args.duration,
                            args.sample, tune.terminal_progress(args.duration))
    except OSError as exc:
        warn(f"cannot read {escape_text(args.proc_root)}: {exc.strerror}")
        return EXIT_ERROR
    out = sys.stdout.buffer
    if args.json:
        out.write(json_line(result.as_dict()))
    else:
        out.write(tune.table(result).encode())
    out.flush()
    return EXIT_CLEAN


def cmd_scan(args) -> int:
    inputs = load_checked_inputs(args)
    if inputs is None:
        return EXIT_ERROR
    config, rules = inputs
    policy = build_policy(config, rules)
    problems_before = len(rules.problems)
    try:
        snapshot = procfs.scan(args.proc_root, policy.want_fds)
    except OSError as exc:
        warn(f"cannot read {escape_text(args.proc_root)}: {exc.strerror}")
        return EXIT_ERROR
    findings = policy.evaluate_all(snapshot)
    try:
        load = load_finding(config, procfs.read_loadavg(args.proc_root)[0], snapshot.taken_at)
    except (OSError, ValueError, IndexError):       # a prepared tree without loadavg
        load = None
    if load is not None:
        findings.append(load)
    for problem in rules.problems[problems_before:]:
        warn(escape_text(str(problem)))
    out = sys.stdout.buffer
    if args.json:
        for finding in findings:
            out.write(json_line(finding_record(finding)))
    else:
        out.write(table(findings).encode())
        stats = snapshot.stats
        suspicious = sum(1 for finding in findings if finding.check == CHECK_SUSPICIOUS)
        summary = (f"{suspicious} suspicious of {stats['processes']} processes, "
                   f"{len(findings) - suspicious} other findings "
                   f"({snapshot.core} core, {snapshot.duration * 1000:.0f} ms)")
        if not policy.enabled:
            summary += "; process tracking is disabled (PT_LIMIT = 0)"
        out.write((summary + "\n").encode())
    out.flush()
    if snapshot.stats["denied"]:
        advice = ("even as root: they belong to another user namespace or a security module "
                  "forbids it") if os.geteuid() == 0 else "run as root to see every process"
        warn(f"could not inspect {snapshot.stats['denied']} processes (permission denied): "
             f"{advice}")
    return EXIT_FINDINGS if findings else EXIT_CLEAN


def cmd_check(args) -> int:
    from .alerts import Templates
    config, rules = load_inputs(args)
    templates = Templates(args.templates)
    print(f"config:       {config.path or 'none found, built-in defaults'}")
    if config.override_path:
        print(f"override:     {config.override_path}")
    print(f"ignore rules: {', '.join(rules.sources) or 'none'} ({rules.rule_count()} rules)")
    sources = sorted({template.source for template in templates.by_check.values()})
    print(f"templates:    {', '.join(escape_text(source) for source in sources)}")
    print(f"core:         {version_text()}")
    print()
    width = max(len(name) for name in config_mod.SETTINGS)
    for name in config_mod.SETTINGS:
        value = escape_text(str(config[name]))
        print(f"{name:<{width}} = {value:<32} {config.sources[name]}")
    problems = config.problems + rules.problems + templates.problems
    if problems:
        print(f"\n{len(problems)} problem(s):")
        for problem in problems:
            print(f"  {escape_text(str(problem))}")
        return EXIT_ERROR
    print("\nno problems found")
    return EXIT_CLEAN


def cmd_run(args) -> int:
    from . import daemon
    return daemon.run(args)


def cmd_install_service(args) -> int:
    from . import install
    return install.run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ptfast", description="Fast, lfd-compatible process "
                                     "tracking for Linux servers.")
    parser.add_argument("--version", action="version", version=version_text())
    sub = parser.add_subparsers(dest="command", required=True)

    scan = sub.add_parser("scan", help="read-only audit: report what would be alerted now")
    add_input_options(scan)
    scan.add_argument("--json", action="store_true", help="one JSON object per finding")
    scan.set_defaults(handler=cmd_scan)

    check = sub.add_parser("check", help="validate the config, ignore rules and alert templates")
    add_input_options(check)
    add_templates_option(check)
    check.set_defaults(handler=cmd_check)

    run = sub.add_parser("run", help="the tracking service: scan every PT_INTERVAL seconds, "
                                     "alert by mail, log, run actions")
    add_input_options(run)
    add_service_options(run)
    run.add_argument("--once", action="store_true",
                     help="one full pass (alerts, actions, state, spool), then exit")
    run.set_defaults(handler=cmd_run)

    tune = sub.add_parser("tune", help="watch this host and measure what each PT_LIMIT would "
                                       "cost and report")
    add_input_options(tune)
    tune.add_argument("--duration", type=float, default=DEFAULT_DURATION, metavar="SECONDS",
                      help=f"how long to watch (default {DEFAULT_DURATION:g})")
    tune.add_argument("--sample", type=float, default=DEFAULT_SAMPLE, metavar="SECONDS",
                      help=f"seconds between samples (default {DEFAULT_SAMPLE:g}; spaced further "
                           "on a big host so tune itself stays under a quarter of a core)")
    tune.add_argument("--limits", default=",".join(map(str, DEFAULT_LIMITS)), metavar="LIST",
                      help="candidate PT_LIMIT values, comma separated")
    tune.add_argument("--json", action="store_true", help="the table as one JSON object")
    tune.set_defaults(handler=cmd_tune)

    service = sub.add_parser(
        "install-service", help="write the systemd unit (for this ptfast), a logrotate file, a "
                                "sample ptfast.conf, the man page and bash completion")
    service.add_argument("--dry-run", action="store_true",
                         help="show what would be written or removed; change nothing")
    service.add_argument("--uninstall", action="store_true",
                         help="stop and disable the service and remove these files "
                              "(ptfast.conf only while it is the untouched sample; the state "
                              "and the logs stay)")
    service.add_argument("--root", default="/", metavar="DIR",
                         help="write under DIR instead of / (packaging; systemctl is not run)")
    service.set_defaults(handler=cmd_install_service)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        return EXIT_ERROR
    except BrokenPipeError:       # `ptfast scan | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
