"""The checks of lfd's process tracking, one module each: what it finds, the response it plans
(what ``ptfast run`` kills, mails, remembers, runs) and how it says so (lfd's log lines and the
placeholders of its alert template).

A new check is a module here with one class (a ``base.SnapshotCheck``, ``base.TimedCheck`` or
``base.UnheldCheck``, and ``base.Alerting`` when it sends an alert, its template in ptfast/channels/templates/), and
its instance in the lists below. Pure: no I/O; ptfast.decide.judgement runs the checks on a
snapshot, ptfast.act.respond carries out the responses. A check reads the judging context
through ``base.Judging`` (ptfast.decide.policy.Policy is the one) and what the checks of one
pass share through ``base.PassWork``.
"""

from ptfast.decide.checks.base import Alerting, Check
from ptfast.decide.checks.forkbomb import ForkBomb
from ptfast.decide.checks.load import Load
from ptfast.decide.checks.resource import Resource
from ptfast.decide.checks.sshd_hung import SshdHung
from ptfast.decide.checks.suspicious import Suspicious
from ptfast.decide.checks.unheld_listener import UnheldListener
from ptfast.decide.checks.user_processes import UserProcesses

SUSPICIOUS = Suspicious()
USER_PROCESSES = UserProcesses()
RESOURCE = Resource()
FORKBOMB = ForkBomb()
SSHD_HUNG = SshdHung()
LOAD = Load()
UNHELD_LISTENER = UnheldListener()

#: Checks run on every snapshot, in lfd's order.
SNAPSHOT_CHECKS = (SSHD_HUNG, FORKBOMB, SUSPICIOUS, USER_PROCESSES, RESOURCE)
#: Every check by name.
BY_NAME: dict[str, Check] = {check.name: check
                             for check in (*SNAPSHOT_CHECKS, LOAD, UNHELD_LISTENER)}
#: The checks that send an alert, by name.
ALERTING: dict[str, Alerting] = {name: check for name, check in BY_NAME.items()
                                 if isinstance(check, Alerting)}
