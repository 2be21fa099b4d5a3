"""Helpers for the service tests: a real SMTP server, a sendmail recorder, ``ptfast run``."""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap

from aiosmtpd.controller import Controller

from ptfast.scan._corespec import STAT_STARTTIME, parse_stat, stat_field

from helpers.procs import kill_uid, start_python, wait_until
from helpers.scan import CONNECTIONS_AT_ONCE


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Inbox:
    """aiosmtpd handler: keeps every envelope it is given, but refuses recipients in
    ``refuse_recipients`` and messages containing ``refuse_marker``, as a real relay may."""

    def __init__(self) -> None:
        self.envelopes = []
        self.refuse_recipients: set = set()
        self.refuse_marker: bytes | None = None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse_recipients:
            return "550 5.1.1 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.refuse_marker and self.refuse_marker in envelope.original_content:
            return "554 5.7.1 message refused"
        self.envelopes.append(envelope)
        return "250 OK"

    def messages(self) -> list:
        return [email.message_from_bytes(envelope.original_content, policy=email.policy.default)
                for envelope in self.envelopes]


class SmtpServer:
    """A real SMTP server on loopback, started and stopped by the test."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.inbox = Inbox()
        self._controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)

    @property
    def relay(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> "SmtpServer":
        self._controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self._controller.stop()


RECORDER = textwrap.dedent("""\
    #!{python} -S
    # sendmail-compatible: records its arguments and the message it is given
    import json, os, sys, time
    message = sys.stdin.buffer.read()
    name = os.path.join({directory!r}, f"{{time.time_ns()}}-{{os.getpid()}}.json")
    with open(name, "w") as handle:
        json.dump({{"argv": sys.argv[1:], "message": message.decode("utf-8", "replace")}}, handle)
""")


class SendmailRecorder:
    def __init__(self, directory: str) -> None:
        self.directory = os.path.join(directory, "sent")
        os.makedirs(self.directory)
        self.path = os.path.join(directory, "sendmail")
        with open(self.path, "w") as handle:
            handle.write(RECORDER.format(python=sys.executable, directory=self.directory))
        os.chmod(self.path, 0o755)

    def calls(self) -> list:
        result = []
        for name in sorted(os.listdir(self.directory)):
            with open(os.path.join(self.directory, name)) as handle:
                call = json.load(handle)
            call["parsed"] = email.message_from_string(call["message"], policy=email.policy.default)
            result.append(call)
        return result


#: ``--set`` for commands that only check SENDMAIL (``check``): a program every machine has, so
#: that the tests pass where no MTA is installed. Tests that deliver use a SendmailRecorder.
CHECKED_SENDMAIL = "SENDMAIL=/bin/true"


def only_users_rule(*uids: int) -> str:
    """A pignore line that ignores every user but these (the test's own processes)."""
    names = "|".join(str(uid) for uid in uids)
    return f"puser:(?!(?:{names})$).*\n"


class ServiceDir:
    """A private state dir, log, events file and pignore for one test's ``ptfast run``."""

    def __init__(self, root, *uids: int) -> None:
        self.root = str(root)
        self.state_dir = os.path.join(self.root, "state")
        self.log_file = os.path.join(self.root, "ptfast.log")
        self.events_file = os.path.join(self.root, "events.jsonl")
        self.templates = os.path.join(self.root, "templates")   # absent: built-in templates
        self.pignore = os.path.join(self.root, "pignore")
        self.override = os.path.join(self.root, "ptfast.conf")
        self.track_only(*uids)
        with open(self.override, "w") as handle:
            # no load alerts unless a test asks: a busy CI machine must not add mail
            handle.write('PT_LIMIT = "1"\nPT_LOAD = "0"\n')

    def track_only(self, *uids: int) -> None:
        with open(self.pignore, "w") as handle:
            handle.write(only_users_rule(*uids))

    def command(self, *settings: str, once: bool = True) -> list:
        command = [sys.executable, "-m", "ptfast", "run", "--config", os.devnull,
                   "--override", self.override, "--pignore", self.pignore,
                   "--state-dir", self.state_dir, "--log-file", self.log_file,
                   "--events-file", self.events_file, "--templates", self.templates]
        # connections count at once unless the test sets PT_CONN_AGE (a later --set wins)
        for setting in (CONNECTIONS_AT_ONCE, *settings):
            command += ["--set", setting]
        if once:
            command.append("--once")
        return command

    @contextlib.contextmanager
    def started(self, *settings: str, stderr=subprocess.DEVNULL):
        """``ptfast run`` as a daemon for the body of a with-block; killed if the body did not
        stop it, so no test leaves one behind."""
        daemon = subprocess.Popen(self.command(*settings, once=False),
                                  stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            yield daemon
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()

    def run_once(self, *settings: str) -> subprocess.CompletedProcess:
        """One pass of ``ptfast run --once``, in this process (helpers.inproc)."""
        from helpers.inproc import run_ptfast
        return run_ptfast(self.command(*settings)[3:])

    def in_process(self, *settings: str):
        """The same service, started in this process (for time seams and fault injection);
        the caller stops it."""
        from ptfast.commands import daemon
        from ptfast.commands.cli import build_parser
        args = build_parser().parse_args(self.command(*settings, once=False)[3:] + ["--quiet"])
        running = daemon.Service(args)
        running.start()
        return running

    def log(self) -> str:
        try:
            with open(self.log_file, encoding="utf-8") as handle:
                return handle.read()
        except FileNotFoundError:
            return ""

    def events(self) -> list:
        try:
            with open(self.events_file, encoding="utf-8") as handle:
                return [json.loads(line) for line in handle]
        except FileNotFoundError:
            return []

    def spooled(self) -> list:
        spool = os.path.join(self.state_dir, "spool")
        return sorted(os.listdir(spool)) if os.path.isdir(spool) else []

    def reported_file(self) -> str:
        return os.path.join(self.state_dir, "reported.json")

    def age_listener_memory(self, seconds: float) -> None:
        """As if the listeners remembered so far were first seen ``seconds`` earlier: the next
        `ptfast run --once` judges them as a pass that much later would, while the processes
        it scans keep their real ages (a hopping listener's holders stay young)."""
        with open(self.reported_file(), "rb") as handle:
            document = json.load(handle)
        for entry in document["listeners"]:
            entry[3] -= seconds         # [netns, inode, uid, first seen, reported, holders]
        with open(self.reported_file(), "w") as handle:
            json.dump(document, handle)


#: seconds between the socket dumps of the services and scans a test starts when it calls
#: dump_often: a quarter of the second ptfast waits on a server, so a test waiting for a few
#: dumps (calls counted, a connection come of age, a new listener) waits a quarter as long
OFTEN = 0.25


def dump_often(monkeypatch, seconds: float = OFTEN) -> None:
    """Every ``ptfast`` this test runs (subprocesses through the environment, in-process
    through dump_delay) dumps sockets every ``seconds``, jittered as DUMP_EVERY is (the
    test-only PTFAST_TEST_DUMP_EVERY)."""
    from ptfast.decide.lifetimes import TEST_DUMP_EVERY
    monkeypatch.setenv(TEST_DUMP_EVERY, str(seconds))


def start_time_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as handle:
        return int(stat_field(parse_stat(handle.read()), STAT_STARTTIME))


def record_action(directory, name: str = "action"):
    """An action script that records its arguments as JSON: (script path, record path)."""
    record = directory / f"{name}.json"
    action = directory / name
    action.write_text(f"#!{sys.executable} -S\nimport json, sys\n"
                      f"json.dump(sys.argv[1:], open({str(record)!r}, 'w'))\n")
    action.chmod(0o755)
    return action, record


def recorded_command(service: ServiceDir, *settings: str) -> list:
    """``service.command(*settings)`` with alerts going to a fresh SendmailRecorder: a test
    must never hand mail to the real sendmail of the host it runs on."""
    recorder = SendmailRecorder(tempfile.mkdtemp(dir=service.root))
    return service.command(f"SENDMAIL={recorder.path}", *settings)


class WebhookServer:
    """A real HTTP (or, with ``certificate``, HTTPS) server on loopback that records every POST
    as (path, headers, body) and answers ``status`` with ``answer`` (``{path}`` in it is
    replaced by the request's path, as some services echo it). Started and stopped by the
    test; ``port`` may be taken before it starts (a webhook that is down)."""

    def __init__(self, port: int | None = None, certificate: tuple | None = None) -> None:
        import http.server
        import threading
        self.port = port or free_port()
        self.posts: list = []
        self.status = 204
        self.answer = ""
        self.hang = None                # a threading.Event: while unset, requests get no answer
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                owner.posts.append((self.path, dict(self.headers), body))
                if owner.hang is not None:
                    owner.hang.wait(30)
                    return
                answer = owner.answer.replace("{path}", self.path).encode()
                try:
                    self.send_response(owner.status)
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except OSError:         # the client gave up (a timeout): nothing to answer
                    pass

            def log_message(self, *args):
                pass

        # bound only when it starts: until then the port refuses connections (a listening
        # socket would queue them, and the server would answer them later)
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler,
                                                       bind_and_activate=False)
        self._server.daemon_threads = True
        self._certificate = certificate
        # shutdown() waits for serve_forever's next poll: 0.5 s by default, at every test's end
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.02}, daemon=True)

    def url(self, path: str, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def bodies(self) -> list:
        return [json.loads(body) for _path, _headers, body in self.posts]

    def __enter__(self) -> "WebhookServer":
        self._server.allow_reuse_address = True
        self._server.server_bind()
        self._server.server_activate()
        if self._certificate is not None:
            import ssl
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self._certificate)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.hang is not None:
            self.hang.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


def self_signed_certificate(directory) -> tuple:
    """(certificate, key) files for 127.0.0.1, made with the openssl command."""
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    # an EC key: made in milliseconds, where RSA 2048 takes most of a second of CPU
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True, timeout=60)
    return cert, key


LISTEN_ANY = 'info["port"] = listen(socket.AF_INET, "0.0.0.0").getsockname()[1]'


def bindshell_fixture(uid: int):
    """A module fixture: a process of ``uid`` listening on 0.0.0.0, stopped at the end of the
    module whatever failed (tests that need it older than PT_LIMIT=1 use the ``aged`` seam)."""
    import pytest

    from helpers.procs import start_python

    @pytest.fixture(scope="module")
    def bindshell():
        child = start_python(LISTEN_ANY, uid=uid)
        try:
            yield child
        finally:
            child.stop()
    return bindshell


def recorded_service(root, *uids: int) -> ServiceDir:
    """A ServiceDir whose alerts go to a SendmailRecorder: ``service.sendmail`` is the setting
    to pass, ``service.recorder`` the recorder."""
    service = ServiceDir(root, *uids)
    service.recorder = SendmailRecorder(str(root))
    service.sendmail = f"SENDMAIL={service.recorder.path}"
    return service


def reported_by_live_service(root, uid: int, code: str, *settings: str) -> tuple:
    """``ptfast run`` in live mode with no pass due for an hour (its first pass done), then a
    child of ``uid`` running ``code``; waits until the live layer reports it. Returns (its pid,
    the first mail's text). The child and every process of ``uid`` are stopped, whatever
    failed."""
    from helpers.native import connect_hook_maps
    service = ServiceDir(root, uid)
    recorder = SendmailRecorder(str(root))
    child = None
    with connect_hook_maps(), service.started(f"SENDMAIL={recorder.path}", "PT_INTERVAL=3600", "PT_CONN_AGE=5",
                         "PT_USERPROC=0", "PT_PASS_SUMMARY=1", *settings) as daemon:
        try:
            assert wait_until(lambda: "pass done" in service.log(), 60), service.log()
            assert "mode: live" in service.log(), service.log()
            child = start_python(code, uid=uid)
            pid = child.pid
            assert wait_until(lambda: f"*Suspicious Process* PID:{pid} " in service.log(),
                              30), service.log()
        finally:
            if child is not None:
                child.stop()
            kill_uid(uid)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
    return pid, recorder.calls()[0]["parsed"].get_content()
