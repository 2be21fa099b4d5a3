"""``ptfast scan | check | run | tune``.

Exit status: 0 nothing found / all clean, 1 findings, 2 error. A ``scan`` or ``tune`` not run as
root cannot see other users' processes: it says so on stderr and exits 2 rather than 0 (a scan
with findings still exits 1), so a cron job never takes a partial view for a clean host. Root
denied a few processes (another user namespace, a security module; the test host shows one now
and then) gets the warning only: an error every few runs would teach admins to ignore the exit
status.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from ptfast import __version__
from ptfast.foundation import config as config_mod
from ptfast.foundation.config import Settings
from ptfast.decide import pignore
from ptfast.scan import procfs
from ptfast.foundation.escape import escape_line, escape_text
from ptfast.decide.findings import CHECK_SUSPICIOUS, process_key
from ptfast.decide.lifetimes import Lifetimes
from ptfast.foundation.problems import Problem
from ptfast.foundation.paths import (DEFAULT_EVENTS_FILE, DEFAULT_LOG_FILE, DEFAULT_STATE_DIR,
                                     DEFAULT_TEMPLATE_DIR)
from ptfast.decide.judgement import Judgement, load_finding
from ptfast.decide.policy import build_policy
from ptfast.decide.report import finding_record, json_line, table
from ptfast.commands.settings import Loaded, load_settings
from ptfast.commands.tune import DEFAULT_DURATION, DEFAULT_LIMITS, DEFAULT_SAMPLE
from ptfast.foundation.users import UserNames, customer_code_user_problems
from ptfast.foundation.words import counted

EXIT_CLEAN, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2
EXIT_INTERRUPTED = 128 + 2          # SIGINT, as a shell reports it
#: what each command's exit status means, shown by its --help (the README and the man page say
#: the same); a wrong command line is 2 for every command
EXIT_STATUS_HELP = {
    "scan": "0 nothing found, 1 findings, 2 an error (an unreadable file, an unknown setting "
            "name, a refused --set) or an incomplete view (not run as root)",
    "baseline": "0 the draft was printed, 2 an error",
    "check": "0 no problems found (warnings, such as double tracking, may be shown), 2 a "
             "problem (each named with its file and line)",
    "run": "0 stopped by a signal, or with --once a pass that ran and delivered every alert; "
           "2 not started (a fatal settings problem, a path it cannot write, another ptfast), "
           "or with --once a failed pass, a log line or event not written, or alerts left in "
           "the spool",
    "status": "0 healthy, 1 degraded, 2 not running, no status, or the state cannot be read",
    "tune": "0 done, 2 an error or not run as root, 130 interrupted by Ctrl-C (the table of "
            "what was measured is printed)",
    "install-service": "0 done, 2 an error",
}


def version_text() -> str:
    text = f"ptfast {__version__} ({procfs.CORE_NAME} core)"
    if procfs.CORE_FALLBACK_REASON:
        text += f"; {procfs.CORE_FALLBACK_REASON}"
    return text


class VersionAction(argparse.Action):
    """--version, printed as it is (argparse's own wraps it at the terminal's width)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                 help="show the version, which core runs and why, then exit"):
        super().__init__(option_strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_text())
        parser.exit()


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
    add_path_options(parser)
    parser.add_argument("--quiet", action="store_true",
                        help="do not echo log messages to stderr")


def add_path_options(parser: argparse.ArgumentParser) -> None:
    """Where `run` writes; `check` takes them too, to say whether they are safe."""
    parser.add_argument("--state-dir", default=DEFAULT_STATE_DIR, metavar="DIR",
                        help="reported processes, the mail spool and the lock (default "
                             f"{DEFAULT_STATE_DIR})")
    parser.add_argument("--log-file", default=DEFAULT_LOG_FILE, metavar="FILE",
                        help=f"lfd-format log lines (default {DEFAULT_LOG_FILE})")
    parser.add_argument("--events-file", default=DEFAULT_EVENTS_FILE, metavar="FILE",
                        help=f"one JSON line per alert (default {DEFAULT_EVENTS_FILE})")


def load_checked_settings(args) -> Loaded | None:
    """Settings with every problem said on stderr; None when one of them is fatal (a file
    unreadable, an unknown setting name, a refused --set)."""
    settings = load_settings(args)
    for problem in settings.problems:
        warn(escape_line(str(problem)))
    return None if settings.fatal() else settings


def not_root_warning(denied: int | None) -> str | None:
    """Why a run not as root saw only part of the host (None as root): other users' exe links
    and fds are closed to it, and with hidepid their processes are not even listed.
    ``denied``: how many it was refused, when known."""
    if os.geteuid() == 0:
        return None
    counted = f"{denied} denied; " if denied is not None else ""
    return (f"not running as root: other users' processes could not be inspected ({counted}"
            "with hidepid they are not even listed), so the result is incomplete; run as root")


def cmd_tune(args) -> int:
    from ptfast.commands import tune
    not_root = not_root_warning(None)
    if not_root:        # its recommendation would rest on this user's processes alone
        warn(f"tune cannot measure this host: {not_root}")
        return EXIT_ERROR
    settings = load_checked_settings(args)
    if settings is None:
        return EXIT_ERROR
    config, rules = settings.config, settings.rules
    try:
        limits = sorted({int(text) for text in args.limits.split(",") if text.strip()})
    except ValueError:
        warn(f"--limits must be whole numbers separated by commas, not {args.limits!r}")
        return EXIT_ERROR
    if args.duration <= 0 or args.sample <= 0:
        warn("--duration and --sample must be positive")
        return EXIT_ERROR
    user_names = UserNames()

    def make_policy(limit):      # the run's settings and rules, with PT_LIMIT replaced
        return build_policy(config, rules, limit=limit, user_names=user_names)

    pt_interval = config.settings.service.interval
    try:
        result = tune.watch(make_policy, args.proc_root, pt_interval, limits, args.duration,
                            args.sample, tune.terminal_progress(args.duration))
    except OSError as exc:
        warn(f"cannot read {escape_text(args.proc_root)}: {exc.strerror}")
        return EXIT_ERROR
    incomplete = not_root_warning(None)
    out = sys.stdout.buffer
    if args.json:
        document = result.as_dict()
        if incomplete:
            document["incomplete"] = incomplete
        out.write(json_line(document))
    else:
        out.write(tune.table(result).encode())
        if incomplete:
            out.write(f"INCOMPLETE: {incomplete}\n".encode())
    out.flush()
    if incomplete:
        warn(incomplete)
        return EXIT_ERROR
    return EXIT_INTERRUPTED if result.interrupted else EXIT_CLEAN


def open_connect_hook():
    """The connect hook for a scan that waits PT_CONN_AGE (None where it cannot run)."""
    # imported only then: ctypes and socket are 8% of a scan's instructions
    from ptfast.scan.connecthook import open_hook
    return open_hook()[0]


def cmd_scan(args) -> int:
    # here, not at the top: the other commands never look twice (a tenth of their start-up)
    from ptfast.act.looking import nameservers, warm_up
    settings = load_checked_settings(args)
    if settings is None:
        return EXIT_ERROR
    rules = settings.rules
    # a first look, as ptfast run's: connections are judged by how long they were held
    lifetimes = Lifetimes(lambda: procfs.host_addresses(args.proc_root), nameservers)
    first_look = build_policy(settings.config, rules)
    try:
        # the connect hook, as the service's, sees the short calls made while the scan waits
        warm_up(lifetimes, first_look, args.proc_root, open_hook=open_connect_hook)
    except OSError:
        pass                            # said below, by the scan itself
    policy = build_policy(settings.config, rules, lifetimes=lifetimes)
    judgement = Judgement(policy)
    try:
        snapshot = procfs.scan(args.proc_root, judgement.want_fds)
        lifetimes.observe(snapshot.socket_table.values(), time.time(),
                          lambda uid: policy.tracked_user(uid) is not None, dump=False)
        lifetimes.attribute(snapshot.processes, process_key)
    except OSError as exc:
        warn(f"cannot read {escape_text(args.proc_root)}: {exc.strerror}")
        return EXIT_ERROR
    findings = judgement.findings(snapshot)
    try:
        loadavg, processes = procfs.read_loadavg(args.proc_root)
        load = load_finding(policy, loadavg, processes, snapshot.taken_at)
    except (OSError, ValueError, IndexError):       # a prepared tree without loadavg
        load = None
    if load is not None:
        findings.append(load)
    for problem in rules.take_match_problems():
        warn(escape_line(str(problem)))
    out = sys.stdout.buffer
    if args.json:
        for finding in findings:
            out.write(json_line(finding_record(finding)))
    else:
        out.write(table(findings).encode())
        stats = snapshot.stats
        suspicious = sum(1 for finding in findings if finding.check == CHECK_SUSPICIOUS)
        summary = (f"{suspicious} suspicious of "
                   f"{counted(stats['processes'], 'process', 'processes')}, "
                   f"{counted(len(findings) - suspicious, 'other finding')} "
                   f"({snapshot.core} core, {snapshot.duration * 1000:.0f} ms)")
        if stats["incomplete"] or stats["zombies"]:
            summary += (f"; {stats['incomplete']} not fully inspected (each says why), "
                        f"{counted(stats['zombies'], 'zombie')}")
        if not policy.enabled:
            summary += "; process tracking is disabled (PT_LIMIT = 0)"
        out.write((summary + "\n").encode())
    out.flush()
    denied = snapshot.stats["denied"]
    incomplete = not_root_warning(denied)
    if incomplete:
        warn(incomplete)
    elif denied:
        warn(f"could not inspect {counted(denied, 'process', 'processes')} (permission denied) "
             "even as root: they "
             "belong to another user namespace or a security module forbids it")
    if findings:
        return EXIT_FINDINGS
    return EXIT_ERROR if incomplete else EXIT_CLEAN


def safety_problems(args, config) -> list:
    """What `run` would refuse: paths it writes that a customer could change or that it cannot
    write, and programs it runs as root that a customer could change."""
    from ptfast.foundation import safepaths
    from ptfast.commands.settings import route_problems
    files = (args.log_file, args.events_file)
    paths = [Problem(path, 0, why) for path, why in
             safepaths.service_path_problems(args.state_dir, files)
             + safepaths.service_write_problems(args.state_dir, files)]
    return paths + route_problems(config)


def cmd_baseline(args) -> int:
    import socket

    from ptfast.commands.baseline import Customers, draft
    from ptfast.decide.checks import SUSPICIOUS
    from ptfast.foundation.users import uid_min
    settings = load_checked_settings(args)
    if settings is None:
        return EXIT_ERROR
    policy = build_policy(settings.config, settings.rules)
    judgement = Judgement(policy)
    try:
        snapshot = procfs.scan(args.proc_root, judgement.want_fds)
    except OSError as exc:
        warn(f"cannot read {escape_text(args.proc_root)}: {exc.strerror}")
        return EXIT_ERROR
    findings = judgement.findings(snapshot, checks=(SUSPICIOUS,))
    sys.stdout.buffer.write(draft(findings, socket.gethostname(), uid_min(),
                                  policy.file_identity,
                                  Customers.of_host(uid_min(), settings.config)).encode())
    return EXIT_CLEAN


def cmd_check(args) -> int:
    settings = load_settings(args, templates=True)
    config, rules, templates = settings.config, settings.rules, settings.templates
    assert templates is not None            # asked for above
    print(f"config:       {config.path or 'none found, built-in defaults'}")
    if config.override_path:
        print(f"override:     {config.override_path}")
    print(f"ignore rules: {', '.join(rules.sources) or 'none'} ({rules.rule_count()} rules, "
          f"regexes compiled in {rules.compile_seconds:.1f} s)")
    sources = sorted({template.source for template in templates.by_file.values()})
    print(f"templates:    {', '.join(escape_text(source) for source in sources)}")
    print(f"core:         {version_text()}")
    print()
    width = max(len(name) for name in config_mod.SETTINGS)
    for name, setting in config_mod.SETTINGS.items():
        value = escape_text(str(config.settings.value_of(setting)))
        if setting is Settings.PT_WEBHOOK_URL:      # the URLs carry their tokens
            from ptfast.foundation.destinations import shown_url, split_list
            value = ",".join(shown_url(url) for url in split_list(config.settings.PT_WEBHOOK_URL))
        print(f"{name:<{width}} = {value:<32} {config.where(setting)}")
    for name, source in config.left_to_lfd:
        print(f"\n{name} ({source}) is lfd's: it {config_mod.LEFT_TO_LFD[name]}")
    warnings = config_mod.double_tracking(config)
    if warnings:
        print(f"\n{len(warnings)} warning(s):")
        for warning in warnings:
            print(f"  {escape_line(warning)}")
    problems = (settings.problems + customer_code_user_problems(
        config.settings.accounts, config.where(Settings.PT_CUSTOMER_CODE_USERS))
                + safety_problems(args, config))
    if problems:
        print(f"\n{len(problems)} problem(s):")
        for problem in problems:
            print(f"  {escape_line(str(problem))}")
        return EXIT_ERROR
    print("\nno problems found" + (" (see the warnings above)" if warnings else ""))
    return EXIT_CLEAN


def cmd_status(args) -> int:
    """Exit 0 healthy, 1 degraded, 2 not running or no status (ptfast.channels.status)."""
    from ptfast.channels import status
    result = status.report(args.state_dir)
    if args.json:
        sys.stdout.buffer.write(json_line(result.as_dict()))
    else:
        sys.stdout.write(status.text(result))
    sys.stdout.flush()
    return result.code


def cmd_run(args) -> int:
    from ptfast.commands import daemon
    return daemon.run(args)


def cmd_install_service(args) -> int:
    from ptfast.commands import install
    return install.run(args, build_parser())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ptfast", description="Fast, lfd-compatible process "
                                     "tracking for Linux servers.")
    parser.add_argument("--version", action=VersionAction)
    sub = parser.add_subparsers(dest="command", required=True)

    scan = sub.add_parser("scan", help="read-only audit: report what would be alerted now")
    add_input_options(scan)
    scan.add_argument("--json", action="store_true", help="one JSON object per finding")
    scan.set_defaults(handler=cmd_scan)

    baseline = sub.add_parser("baseline", help="print a draft of csf.pignore lines for what a "
                                               "scan finds now (to review, never applied)")
    add_input_options(baseline)
    baseline.set_defaults(handler=cmd_baseline)

    check = sub.add_parser("check", help="validate the config, ignore rules and alert templates")
    add_input_options(check)
    add_templates_option(check)
    add_path_options(check)
    check.set_defaults(handler=cmd_check)

    run = sub.add_parser("run", help="the tracking service: scan every PT_INTERVAL seconds, "
                                     "alert by mail, log, run actions")
    add_input_options(run)
    add_service_options(run)
    run.add_argument("--once", action="store_true",
                     help="one full pass (alerts, actions, state, spool), then exit")
    run.set_defaults(handler=cmd_run)

    status = sub.add_parser("status", help="is the service running, what did its last pass do, "
                                           "is the spool draining (exit 0 healthy, 1 degraded, "
                                           "2 not running or no status)")
    status.add_argument("--state-dir", default=DEFAULT_STATE_DIR, metavar="DIR",
                        help=f"the service's state directory (default {DEFAULT_STATE_DIR})")
    status.add_argument("--json", action="store_true", help="one JSON object")
    status.set_defaults(handler=cmd_status)

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
    for name, command in sub.choices.items():
        command.epilog = f"exit status: {EXIT_STATUS_HELP[name]}"
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
    except Exception as exc:      # a bug is an error (2), never "findings" (1) to a cron job
        import traceback
        warn(f"internal error: {escape_text(repr(exc))}")
        for entry in traceback.format_exception(type(exc), exc, exc.__traceback__):
            for line in entry.rstrip("\n").split("\n"):
                print(escape_text(line), file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
