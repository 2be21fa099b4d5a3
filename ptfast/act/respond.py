"""Carry out the responses the policy planned (ptfast.decide.findings.Response): kill, log, alert,
remember, run the action. Nothing is decided here.

The order for each finding is what makes alerts survive anything: the log line first, then the
alert (rendered once, ptfast.channels.channel.Alert) into the spool for every channel (mail,
webhooks: ptfast.channels.delivery.Channels), then its line in the events file, and only then
the finding is remembered as reported. A failure before the spool (a full disk) leaves the
finding to the next pass instead of losing it; so does a log line or event that cannot be
written (its spooled entries are taken back, so the next pass's alert is the only one); an entry
leaves the spool only once delivered.
"""

from __future__ import annotations

from ptfast.act import kills
from ptfast.scan import procfs
from ptfast.channels.alerts import render_alert
from ptfast.channels.delivery import Channels
from ptfast.foundation.bounds import bounded_digest
from ptfast.decide.checks import ALERTING, BY_NAME
from ptfast.foundation.escape import escape_text
from ptfast.channels.events import append_event, event_record
from ptfast.foundation.config import LoadSettings, Settings
from ptfast.decide.findings import DIGEST_TEMPLATE
from ptfast.channels.spool import MAIL


class Responder:
    """Carries out findings' responses for one pass, with the settings of that pass."""

    def __init__(self, settings, log, spool, state, actions, *, hostname: str, user_names,
                 proc_root: str, events_file: str | None) -> None:
        self.settings = settings
        self.log = log
        self.spool = spool
        self.state = state
        self.actions = actions
        self.hostname = hostname
        self.user_names = user_names
        self.proc_root = proc_root
        self.events_file = events_file
        whole: Settings = settings.config.settings
        self.mail = whole.mail
        self.tracking = whole.tracking
        self.channels = Channels(whole)
        #: what an alert attaches (the check says what), read from this host when it is sent
        self._host = ThisHost(whole.load, hostname, proc_root)
        #: findings not remembered because their log line or event could not be written, and
        #: the files that could not be ("PATH: why")
        self.unrecorded = 0
        self.unwritable: set = set()

    def carry_out_all(self, findings: list) -> None:
        """Every finding of a pass, in lfd's order (so the log reads as lfd's); those planned
        into the digest get one mail together, most severe first (digest.severity) and bounded
        (bounds.bounded_digest), spooled before any of them is remembered."""
        digest = []
        for finding in findings:
            if finding.response.alert == DIGEST_TEMPLATE:
                logged = self._logged(finding)
                if logged is not None:
                    digest.append((finding, logged[1]))
            else:
                self.carry_out(finding)
        if digest:
            digest.sort(key=lambda entry: entry[0].severity or 0)     # stable: lfd's order
            lines = bounded_digest(found_lines for _finding, found_lines in digest)
            records, added = self._spool(DIGEST_TEMPLATE, {"hostname": self.hostname,
                                                           "count": str(len(digest)),
                                                           "text": "\n".join(lines)},
                                         [finding for finding, _lines in digest], lines)
            recorded = [(finding, record) for (finding, _lines), record in zip(digest, records)
                        if self._append_event(record)]
            if not recorded:         # the mail would list only findings the next pass repeats
                self.spool.retract(added)
            for finding, _record in recorded:
                self._remember_and_act(finding)

    def carry_out(self, finding) -> None:
        """Log, alert, record the event, then remember; a finding whose log line or event
        cannot be written is not remembered (and its alert taken back from the spool), so the
        next pass reports it whole."""
        logged = self._logged(finding)
        if logged is None:
            return
        killed, lines = logged
        alert = finding.response.alert
        if alert:
            check = ALERTING[finding.check]
            attached = check.attachment(finding, self.tracking, self._host)
            values = check.alert_values(finding, self.hostname, killed, attached,
                                        self.user_names)
            [record], added = self._spool(alert, values, [finding], lines)
            if not self._append_event(record):
                self.spool.retract(added)
                return
        self._remember_and_act(finding)

    def _logged(self, finding) -> tuple | None:
        """(killed, the finding's log lines) once they are in the log; None (the finding
        counted in ``unrecorded``) when a line could not be written."""
        response = finding.response
        killed = self._kill(response) if response.kill else False
        lines = BY_NAME[finding.check].log_lines(finding, killed, self.user_names)
        # LogFile.write raises when the line did not reach the file; a plain callable (a test's
        # log) cannot say, and is taken at its word
        write = getattr(self.log, "write", self.log)
        try:
            for line in lines:
                write(line)
        except OSError as exc:
            self._not_recorded(f"{getattr(self.log, 'path', 'the log')}: {exc.strerror}")
            return None
        return killed, lines

    def _not_recorded(self, why: str) -> None:
        self.unrecorded += 1
        self.unwritable.add(why)

    def _remember_and_act(self, finding) -> None:
        response = finding.response
        for memo in response.remember:
            self.state.remember(memo)
        if response.action is not None:
            action = response.action
            self.actions.run(action.setting, action.path, list(action.args))

    def _kill(self, response) -> bool:
        """Only what was read from the live /proc may be killed: PIDs of a prepared tree
        (--proc-root) name nothing on this host."""
        if self.proc_root != "/proc":
            self.log(f"not killing: --proc-root {escape_text(self.proc_root)} is not /proc")
            return False
        return kills.kill_planned(response, self.log)

    def _spool(self, template_file: str, values: dict, findings: list, lines: list) -> tuple:
        """Render the alert of ``findings`` once and spool it for every channel, before
        anything can lose it; (their event records, the spool entries' paths). The records
        name the mail's entry, so its name is chosen first."""
        template = self.settings.templates[template_file]
        mail_entry = self.spool.new_name(MAIL)
        records = [event_record(finding, self.hostname, template.source, mail_entry)
                   for finding in findings]
        alert = render_alert(template, values, self.mail.LF_ALERT_TO, self.mail.LF_ALERT_FROM,
                             lines=lines, records=records, hostname=self.hostname,
                             mail_entry=mail_entry)
        return records, self.channels.spool(self.spool, alert)

    def _append_event(self, record: dict) -> bool:
        """False (said in the log, counted in ``unrecorded``) when it could not be written."""
        if not self.events_file:
            return True
        try:
            append_event(self.events_file, record)
        except OSError as exc:
            self.log(f"cannot append to {escape_text(self.events_file)}: {exc.strerror}; the "
                     "finding is not remembered and is reported again next pass")
            self._not_recorded(f"{self.events_file}: {exc.strerror}")
            return False
        return True


class ThisHost:
    """Reads from this host what a check's alert attaches (checks.base.HostReader)."""

    def __init__(self, load: LoadSettings, hostname: str, proc_root: str) -> None:
        self.load = load
        self.hostname = hostname
        self.proc_root = proc_root

    def process_maps(self, proc) -> list | None:
        return procfs.read_maps(proc.pid, proc.start_time, self.proc_root)

    def host_load(self, loadavg: tuple, processes: str, minutes: int) -> dict:
        # psutil and urllib: only when one fires
        from ptfast.act.hostload import load_alert_values
        return load_alert_values(self.load, self.hostname, loadavg, processes, minutes)
