"""Everything ptfast reads from files before it scans: csf.conf (and ptfast.conf, --set), the
ignore rules and the alert templates, loaded in one place for every command."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

from ptfast.foundation import config as config_mod
from ptfast.decide import pignore

if TYPE_CHECKING:
    from ptfast.channels.alerts import Templates


@dataclass
class Loaded:
    """Everything a load read (the settings in force are ``config.settings``). Replaced as a
    whole on SIGHUP. ``templates`` is None for commands that mail nothing."""

    config: config_mod.Config
    rules: pignore.IgnoreRules
    templates: Optional[Templates] = None
    problems: list = field(default_factory=list)

    def fatal(self) -> list:
        """Problems that stop a command (exit 2): a config or ignore file that could not be
        read (the rules would be incomplete), an unknown setting name, a refused --set."""
        return [problem for problem in self.problems if getattr(problem, "fatal", False)]


def route_problems(config: config_mod.Config) -> list:
    """What the settings name that the service could not use: a SENDMAIL or relay that is not
    there, action scripts, the metrics file and webhooks a customer could change. ``check``
    reports them; a reload with any of them is refused (the next alert would fail)."""
    return [problem for diagnose in route_diagnostics() for problem in diagnose(config)]


def route_diagnostics() -> tuple:
    """Each part's own diagnosis of the settings it uses, in the order ``check`` says them: a
    part with a setting that can name something unusable adds its function here. Imported when
    asked: ``scan`` and ``tune`` load none of these parts."""
    from ptfast.act.actions import action_problems
    from ptfast.channels.mail import mail_problems
    from ptfast.channels.metrics import metrics_problems
    from ptfast.foundation.destinations import webhook_problems

    def webhook_route_problems(config: config_mod.Config) -> list:
        # destinations lies below config (config checks URLs with it), so it gets the slice
        return webhook_problems(config.settings.webhooks,
                                config.where(config_mod.Settings.PT_WEBHOOK_URL))
    return (action_problems, mail_problems, metrics_problems, webhook_route_problems)


def load_settings(args, templates: bool = False) -> Loaded:
    """From the command line's ``--config``, ``--override``, ``--set``, ``--pignore`` (and
    ``--templates`` when ``templates``)."""
    config = config_mod.load(args.config, args.set, override_path=args.override)
    rules = pignore.load(args.pignore)
    problems = config.problems + rules.problems
    loaded: Optional[Templates] = None
    if templates:
        from ptfast.channels.alerts import Templates
        loaded = Templates(args.templates)
        problems = problems + loaded.problems
    return Loaded(config, rules, loaded, problems)
