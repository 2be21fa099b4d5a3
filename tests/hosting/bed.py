"""A shared-hosting server on loopback, built from the distribution's own daemons, with an
"internet" of its own: a network namespace behind a veth pair, on 198.18.0.0/15 only.

Each daemon runs from its distribution binary, as its distribution's user, on a private
configuration under one temporary directory, in the foreground (there is no systemd), on
127.0.0.1 and on ports of the bed's own (HTTP on 80 when free: PT_SKIP_HTTP is about 80/443).
The host's configuration is only read, never changed; what the bed must add to the host (its
accounts in the password database, sshd's /run/sshd when absent, the internet namespace and
its veth pair) is recorded in a state file first and removed at teardown, or by the next bed
when a run was killed outright.

Every process the bed starts, and everything those start (workers, sessions, the attacks), is
in one cgroup of the bed's own: that says which processes belong to the bed (other jobs may run
on the machine) and lets teardown kill them all at once.
"""

from __future__ import annotations

import fcntl
import ftplib
import grp
import imaplib
import json
import os
import poplib
import pwd
import random
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.request

from . import packages
from .packages import BedError, Unavailable
from .procfacts import read_processes

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))      # the suite's shared helpers, as pytest finds them
from helpers.procs import wait_until  # noqa: E402
from helpers.uids import uid_for  # noqa: E402

ACCOUNT_COUNT = 20
ACCOUNT_UID_OFFSETS = range(700, 700 + ACCOUNT_COUNT)
ACCOUNT_PREFIX = "pthost"           # pthost00 .. pthost19
POOL_WORKERS = 3
LOCALHOST = "127.0.0.1"

# "The internet": a network namespace of the bed's own behind a veth pair, addressed from
# 198.18.0.0/15 (RFC 2544, benchmarking) only, so no packet of the bed leaves the machine and no
# real host is ever contacted. The attackers' servers, mail servers and a remote database live
# there; from the host they are remote peers like any other.
INTERNET_NETNS = "ptfast-bed-inet"
VETH_HOST = "ptbed-host"            # the host's end
VETH_INTERNET = "ptbed-inet"        # the end inside the namespace
HOST_SIDE = "198.18.0.1"            # the host's address on the veth
INTERNET = "198.18.0.2"             # the attackers' C2 servers
IRC_HOST = "198.18.0.6"             # an IRC server
REMOTE_DATABASE = "198.18.0.10"     # a customer's database on a host of its own (redis)
REMOTE_DATABASE_PORT = 6379
#: many mail servers: what a spam sender connects to, one short SMTP session after another
MAIL_HOSTS = tuple(f"198.18.1.{n}" for n in range(1, 25))
SMTP_PORT = 25

PORTS = {"http": 80, "http_fallback": 8080, "apache": 8081, "pool_base": 9000, "mysql": 3307,
         "smtp": 2525, "imap": 1143, "pop3": 1110, "redis": 6380, "memcached": 11212,
         "ftp": 2121, "dns": 5300, "ssh": 2222}
FTP_PASSIVE = (30000, 30009)
FTP_PASSWORD = "ftp-of-the-bed"     # one for every account: pure-pw hashes slowly

STATE_FILE = "/var/tmp/ptfast-hosting-bed.json"
LOCK_FILE = "/var/tmp/ptfast-hosting-bed.lock"
SSHD_PRIVSEP_DIR = "/run/sshd"

# one launcher for everything the bed starts: join the bed's cgroup, then become the process
IN_CGROUP = 'echo $$ > "$0" && exec "$@"'


class Account:
    def __init__(self, index: int, uid: int, home: str) -> None:
        self.index = index
        self.name = f"{ACCOUNT_PREFIX}{index:02d}"
        self.uid = uid
        self.home = home
        self.docroot = os.path.join(home, "public_html")
        self.password = f"pw-{self.name}-{uid}"
        self.pool_port = PORTS["pool_base"] + index
        self.host = f"{self.name}.test"


def cgroup2_root() -> str | None:
    with open("/proc/self/mounts") as handle:
        for line in handle:
            fields = line.split()
            if fields[2] == "cgroup2":
                return fields[1]
    return None


def port_free(port: int, host: str = LOCALHOST, kind=socket.SOCK_STREAM) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as probe:
        # as the daemons do: a connection of an earlier run in TIME_WAIT does not count
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def wait_for(condition, timeout: float, what: str, process=None) -> None:
    """Until ``condition()`` is true; BedError naming ``what`` (and the log of ``process``
    when it died) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if process is not None and process.popen.poll() is not None:
            raise BedError(f"{what}: exited with {process.popen.returncode}: "
                           f"{process.log_tail()}")
        time.sleep(0.1)
    tail = f": {process.log_tail()}" if process is not None else ""
    raise BedError(f"{what}: not ready after {timeout:.0f} s{tail}")


def tcp_accepts(port: int, host: str = LOCALHOST) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def run(argv, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)
    if result.returncode != 0:
        raise BedError(f"{' '.join(argv[:3])}... failed: "
                       f"{(result.stderr or result.stdout)[-400:]}")
    return result


class Started:
    """A process the bed started (its children live in the bed's cgroup too)."""

    def __init__(self, role: str, popen: subprocess.Popen, log_path: str) -> None:
        self.role = role
        self.popen = popen
        self.pid = popen.pid
        self.log_path = log_path

    def log_tail(self, size: int = 600) -> str:
        try:
            with open(self.log_path, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(max(0, handle.tell() - size))
                return handle.read().decode(errors="replace").strip()
        except OSError:
            return ""


class Bed:
    """The hosting server. ``start()`` builds it (tearing down whatever it built if any step
    fails); ``teardown()`` removes everything and says what it could not remove."""

    def __init__(self, work_root: str = "/tmp", progress=None) -> None:
        self.work_root = work_root
        self.progress = progress or (lambda text: None)
        self.dir = ""
        self.cgroup = ""
        self.accounts: list[Account] = []
        self.started: dict[str, Started] = {}
        self.created_paths: list[str] = []      # host paths the bed created outside self.dir
        self.clients: list = []                 # root's sessions (IMAP, FTP, SMTP, POP3)
        self.http_port = PORTS["http"]
        self.php_fpm = ""
        self.timings: dict[str, float] = {}
        self.install_timings: dict[str, float] = {}
        self._lock = None
        self._load_stop = threading.Event()
        self._load_threads: list = []
        self.load_requests = 0
        self.load_errors: list = []
        self.load_pages: dict = {}              # page -> requests served
        self.netns = ""                         # the "internet" namespace, once made
        self.without: list = []                 # optional daemons missing on this host
        self.internet_netns_inode = 0
        self._torn_down = False

    # ---------------------------------------------------------------- life cycle

    def start(self, install: bool = True) -> "Bed":
        if os.geteuid() != 0:
            raise Unavailable("not root: the bed creates accounts and starts daemons")
        self._take_lock()
        try:
            remove_stale_bed(locked=True)
            required = [name for name in packages.DAEMONS if name not in packages.OPTIONAL]
            if install:
                self.install_timings = packages.install(packages.DAEMONS)
            elif packages.missing(required):
                raise Unavailable("not installed: " + ", ".join(packages.missing(required)))
            self.without = packages.missing(packages.OPTIONAL)
            if self.without:
                self.progress(f"without {', '.join(self.without)} (not installed)")
            self.php_fpm = packages.program("php-fpm")
            self._check_ports()
            self._make_dir_and_cgroup()
            optional = {self._pure_ftpd: "pure-ftpd", self._bind: "bind9"}
            for step in (self._accounts, self._internet, self._mariadb, self._php_fpm,
                         self._nginx, self._apache, self._exim, self._dovecot, self._redis,
                         self._memcached, self._pure_ftpd, self._bind, self._sshd):
                if optional.get(step) in self.without:
                    continue
                began = time.monotonic()
                step()
                name = step.__name__.lstrip("_")
                self.timings[name] = time.monotonic() - began
                self.progress(f"{name}: {self.timings[name]:.1f} s")
            began = time.monotonic()
            self._sessions()
            self.timings["sessions"] = time.monotonic() - began
        except BaseException:
            self.teardown()
            raise
        return self

    def _take_lock(self) -> None:
        self._lock = open(LOCK_FILE, "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            self._lock = None
            raise Unavailable("another hosting bed runs on this host (its ports are taken)")

    def _save_state(self) -> None:
        """What teardown must undo, written before it exists, for a run killed outright."""
        state = {"dir": self.dir, "cgroup": self.cgroup,
                 "accounts": [account.name for account in self.accounts],
                 "created_paths": self.created_paths, "netns": self.netns}
        with open(STATE_FILE + ".tmp", "w") as handle:
            json.dump(state, handle)
        os.replace(STATE_FILE + ".tmp", STATE_FILE)

    def _check_ports(self) -> None:
        if not port_free(self.http_port):
            self.http_port = PORTS["http_fallback"]
        wanted = [self.http_port, PORTS["apache"], PORTS["mysql"], PORTS["smtp"], PORTS["imap"],
                  PORTS["pop3"], PORTS["redis"], PORTS["memcached"], PORTS["ftp"], PORTS["dns"],
                  PORTS["ssh"], *range(FTP_PASSIVE[0], FTP_PASSIVE[1] + 1),
                  *(PORTS["pool_base"] + index for index in range(ACCOUNT_COUNT))]
        busy = [port for port in wanted if not port_free(port)]
        if not port_free(PORTS["dns"], kind=socket.SOCK_DGRAM):
            busy.append(PORTS["dns"])
        if busy:
            raise Unavailable(f"ports busy on {LOCALHOST}: {busy}")

    def _make_dir_and_cgroup(self) -> None:
        root = cgroup2_root()
        if root is None or not os.access(root, os.W_OK):
            raise Unavailable("no writable cgroup2 hierarchy to hold the bed's processes")
        self.dir = tempfile.mkdtemp(prefix="ptfast-hosting-", dir=self.work_root)
        os.chmod(self.dir, 0o755)      # daemons' users and accounts traverse it
        self.cgroup = os.path.join(root, os.path.basename(self.dir))
        self._save_state()
        os.mkdir(self.cgroup)
        for sub in ("logs", "home"):
            os.makedirs(self.path(sub), mode=0o755)

    def path(self, *parts: str) -> str:
        return os.path.join(self.dir, *parts)

    def write(self, relative: str, text: str, mode: int = 0o644, owner: str | int | None = None
              ) -> str:
        """Write ``text`` at ``relative`` (to the bed's directory, or absolute), making missing
        directories; file and new directories owned by ``owner`` when given."""
        target = self.path(relative)
        make_dirs(os.path.dirname(target), owner)
        with open(target, "w") as handle:
            handle.write(text)
        os.chmod(target, mode)
        if owner is not None:
            chown(target, owner)
        return target

    def spawn(self, role: str, argv: list, user: str | int | None = None, env=None,
              cwd=None, new_session: bool = False, stdin=subprocess.DEVNULL,
              in_internet: bool = False) -> Started:
        """Start ``argv`` in the bed's cgroup, as ``user`` (switched by setpriv after joining
        the cgroup, which only root may do), output to logs/ROLE.log; ``in_internet``: in the
        bed's "internet" namespace (entered before giving up root)."""
        command = ["/bin/sh", "-c", IN_CGROUP, os.path.join(self.cgroup, "cgroup.procs")]
        if in_internet:
            command += ["/usr/bin/nsenter", f"--net=/run/netns/{self.netns}", "--"]
        if user is not None:
            entry = pwd.getpwuid(user) if isinstance(user, int) else pwd.getpwnam(user)
            command += ["/usr/bin/setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}",
                        "--init-groups" if not isinstance(user, int) else "--clear-groups", "--"]
        command += argv
        log_path = self.path("logs", re.sub(r"[^\w.-]", "_", role) + ".log")
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(command, stdin=stdin, stdout=log, stderr=subprocess.STDOUT,
                                     env=env if env is not None else self.base_env(user),
                                     cwd=cwd or self.dir, start_new_session=new_session)
        started = Started(role, popen, log_path)
        self.started[role] = started
        return started

    def base_env(self, user=None) -> dict:
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "LANG": "C.UTF-8"}
        if user is not None:
            entry = pwd.getpwuid(user) if isinstance(user, int) else pwd.getpwnam(user)
            env.update(HOME=entry.pw_dir, USER=entry.pw_name, LOGNAME=entry.pw_name)
        return env

    def on_the_internet(self, fact) -> bool:
        """Whether a process of the bed stands for a remote host: it runs in the internet
        namespace (on a real network it would be another machine, never scanned here)."""
        return bool(self.internet_netns_inode) and fact.netns == self.internet_netns_inode

    def bed_pids(self) -> list:
        """Every process of the bed now (from its cgroup)."""
        try:
            with open(os.path.join(self.cgroup, "cgroup.procs")) as handle:
                return [int(line) for line in handle if line.strip()]
        except OSError:
            return []

    # ---------------------------------------------------------------- accounts

    def _accounts(self) -> None:
        for index, offset in enumerate(ACCOUNT_UID_OFFSETS):
            uid = uid_for(offset)
            account = Account(index, uid, self.path("home", f"{ACCOUNT_PREFIX}{index:02d}"))
            self.accounts.append(account)
            self._save_state()
            run(["groupadd", "-g", str(uid), account.name])
            # -l: no lastlog/faillog records (sparse files sized by the uid); password "*":
            # no password, but not locked (sshd refuses locked accounts)
            run(["useradd", "-l", "-M", "-N", "-u", str(uid), "-g", str(uid), "-d", account.home,
                 "-s", "/bin/bash", "-p", "*", account.name])
            os.makedirs(account.docroot)
            for directory, mode in ((account.home, 0o711), (account.docroot, 0o755)):
                os.chmod(directory, mode)
                os.chown(directory, uid, uid)

    def account(self, index: int) -> Account:
        return self.accounts[index]

    # ---------------------------------------------------------------- the "internet"

    def _internet(self) -> None:
        """The namespace and veth pair (recorded in the state file before they exist), its
        addresses, and the customer's remote database host in it."""
        if not os.path.exists("/usr/sbin/ip") or not os.path.exists("/usr/bin/nsenter"):
            raise Unavailable("ip (iproute2) and nsenter (util-linux) are needed for the "
                              "bed's internet namespace")
        self.netns = INTERNET_NETNS
        self._save_state()
        remove_internet()                       # a namespace of a bed that left no state
        inside = ["ip", "-n", INTERNET_NETNS]
        run(["ip", "netns", "add", INTERNET_NETNS])
        run(["ip", "link", "add", VETH_HOST, "type", "veth", "peer", "name", VETH_INTERNET,
             "netns", INTERNET_NETNS])
        run(["ip", "addr", "add", f"{HOST_SIDE}/24", "dev", VETH_HOST])
        run(["ip", "link", "set", VETH_HOST, "up"])
        for address in (INTERNET, IRC_HOST, REMOTE_DATABASE):
            run([*inside, "addr", "add", f"{address}/24", "dev", VETH_INTERNET])
        for address in MAIL_HOSTS:
            run([*inside, "addr", "add", f"{address}/24", "dev", VETH_INTERNET])
        self.internet_netns_inode = os.stat(f"/run/netns/{INTERNET_NETNS}").st_ino
        run([*inside, "link", "set", "lo", "up"])
        run([*inside, "link", "set", VETH_INTERNET, "up"])
        first_mail_net = MAIL_HOSTS[0].rsplit(".", 1)[0] + ".0/24"
        run(["ip", "route", "add", first_mail_net, "via", INTERNET, "dev", VETH_HOST])
        # the customer's database host: redis, as its own package runs it (User=redis)
        os.makedirs(self.path("remote-redis"))
        chown(self.path("remote-redis"), "redis")
        server = self.spawn("remote database (redis)", [
            "/usr/bin/redis-server", "--bind", REMOTE_DATABASE,
            "--port", str(REMOTE_DATABASE_PORT), "--daemonize", "no", "--save", "",
            "--appendonly", "no", "--dir", self.path("remote-redis"),
            # reached from the host over the veth only: the namespace has no other network
            "--protected-mode", "no"],
            user="redis", in_internet=True)
        # reached from the host: the veth and the routes work
        wait_for(lambda: tcp_accepts(REMOTE_DATABASE_PORT, REMOTE_DATABASE), 30,
                 "the remote database host", server)

    # ---------------------------------------------------------------- MariaDB

    def _mariadb(self) -> None:
        data = self.path("mysql", "data")
        os.makedirs(data)
        chown(self.path("mysql"), "mysql")
        chown(data, "mysql")
        self.mysql_socket = self.path("mysql", "mysqld.sock")
        run(["mariadb-install-db", "--no-defaults", "--user=mysql", f"--datadir={data}",
             "--auth-root-authentication-method=socket", "--skip-test-db"], timeout=180)
        # Debian's unit starts mariadbd as mysql (User=mysql), not as root
        server = self.spawn("mariadbd", [
            "/usr/sbin/mariadbd", "--no-defaults", f"--datadir={data}",
            f"--socket={self.mysql_socket}", f"--port={PORTS['mysql']}",
            f"--bind-address={LOCALHOST}", f"--pid-file={self.path('mysql', 'mysqld.pid')}",
            "--skip-name-resolve",
            "--innodb-buffer-pool-size=32M"], user="mysql")
        wait_for(lambda: tcp_accepts(PORTS["mysql"]), 90, "mariadbd", server)
        statements = []
        for account in self.accounts:
            database = f"wp_{account.name}"
            statements += [
                f"CREATE DATABASE {database}",
                f"CREATE USER '{account.name}'@'localhost' IDENTIFIED BY '{account.password}'",
                f"GRANT ALL ON {database}.* TO '{account.name}'@'localhost'",
                # DB_HOST "127.0.0.1": the same account over TCP
                f"CREATE USER '{account.name}'@'{LOCALHOST}' IDENTIFIED BY '{account.password}'",
                f"GRANT ALL ON {database}.* TO '{account.name}'@'{LOCALHOST}'",
                f"CREATE TABLE {database}.wp_options (option_name VARCHAR(64) PRIMARY KEY, "
                f"option_value TEXT)",
                f"INSERT INTO {database}.wp_options VALUES ('blogname', 'Site of {account.name}')",
            ]
        run(["mariadb", "--no-defaults", f"--socket={self.mysql_socket}", "-uroot",
             "-e", ";\n".join(statements)])

    # ---------------------------------------------------------------- PHP-FPM

    INDEX_PHP = textwrap.dedent("""\
        <?php
        // as WordPress does with DB_HOST "localhost": mysqli over the unix socket
        $db = new mysqli('localhost', '{name}', '{password}', 'wp_{name}');
        $row = $db->query("SELECT option_value FROM wp_options WHERE option_name = 'blogname'")
                  ->fetch_row();
        echo "<h1>", htmlspecialchars($row[0]), "</h1>";
        """)

    # Pages whose request holds a TCP connection to a database for 1 to 3 s (a slow report, a
    # search, a cache that waits for a job): what PHP workers do all day on a busy host, and
    # what a snapshot of sockets catches them at.
    DB_PHP = textwrap.dedent("""\
        <?php
        // DB_HOST "127.0.0.1": mysqli over TCP; the query takes 1 to 3 s
        $db = new mysqli('{host}', '{name}', '{password}', 'wp_{name}', {port});
        $db->query('SELECT SLEEP(1 + RAND() * 2)');
        $row = $db->query("SELECT option_value FROM wp_options WHERE option_name = 'blogname'")
                  ->fetch_row();
        $db->close();
        echo "<h1>", htmlspecialchars($row[0]), "</h1>";
        """)
    # redis's protocol by hand, as PHP clients such as Predis speak it: BLPOP on an empty list
    # waits its timeout (1 to 3 s) and answers nil
    REDIS_PHP = textwrap.dedent("""\
        <?php
        $s = fsockopen('{host}', {port}, $errno, $errstr, 5);
        if (!$s) {{ http_response_code(502); echo "redis {host}: $errstr"; exit; }}
        $key = 'jobs:{name}';
        $wait = sprintf('%.3f', 1 + mt_rand(0, 2000) / 1000);
        fwrite($s, "*3\\r\\n\\$5\\r\\nBLPOP\\r\\n\\$" . strlen($key) . "\\r\\n$key\\r\\n\\$"
                   . strlen($wait) . "\\r\\n$wait\\r\\n");
        $reply = trim(fgets($s));
        fclose($s);
        // nil after the wait; anything else (an error) fails the request, as the load counts
        if ($reply !== '*-1') {{ http_response_code(502); echo htmlspecialchars($reply); exit; }}
        echo "<h1>Site of {name}</h1>";
        """)
    #: page -> share of the web load; every page answers "Site of ACCOUNT"
    LOAD_PAGES = {"/index.php": 1, "/db.php": 6, "/cache.php": 2, "/remote.php": 2}

    def _php_fpm(self) -> None:
        lines = ["[global]", f"pid = {self.path('php', 'php-fpm.pid')}",
                 "error_log = /proc/self/fd/2", "daemonize = no", ""]
        for account in self.accounts:
            lines += [f"[{account.name}]", f"user = {account.name}", f"group = {account.name}",
                      f"listen = {LOCALHOST}:{account.pool_port}",
                      f"listen.allowed_clients = {LOCALHOST}", "pm = static",
                      f"pm.max_children = {POOL_WORKERS}",
                      f"php_admin_value[mysqli.default_socket] = {self.mysql_socket}",
                      f"php_admin_value[pdo_mysql.default_socket] = {self.mysql_socket}", ""]
            page = self.INDEX_PHP.format(name=account.name, password=account.password)
            self.write(os.path.join(account.docroot, "index.php"), page, owner=account.uid)
            pages = {"db.php": self.DB_PHP.format(host=LOCALHOST, port=PORTS["mysql"],
                                                  name=account.name, password=account.password),
                     "cache.php": self.REDIS_PHP.format(host=LOCALHOST, port=PORTS["redis"],
                                                        name=account.name),
                     "remote.php": self.REDIS_PHP.format(host=REMOTE_DATABASE,
                                                         port=REMOTE_DATABASE_PORT,
                                                         name=account.name)}
            for name, text in pages.items():
                self.write(os.path.join(account.docroot, name), text, owner=account.uid)
        self.write("php/php-fpm.conf", "\n".join(lines))
        master = self.spawn("php-fpm", [self.php_fpm, "-F", "-y", self.path("php", "php-fpm.conf")])
        for account in self.accounts:
            wait_for(lambda port=account.pool_port: tcp_accepts(port), 30,
                     f"php-fpm pool {account.name}", master)

    # ---------------------------------------------------------------- nginx

    def _nginx(self) -> None:
        temp = [f"    {kind}_temp_path {self.path('nginx', 'tmp', kind)};"
                for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")]
        servers = []
        for account in self.accounts:
            default = " default_server" if account.index == 0 else ""
            servers.append(textwrap.dedent(f"""\
                server {{
                    listen {LOCALHOST}:{self.http_port}{default};
                    server_name {account.host};
                    root {account.docroot};
                    index index.php;
                    location ~ \\.php$ {{
                        include /etc/nginx/fastcgi_params;
                        fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
                        fastcgi_pass {LOCALHOST}:{account.pool_port};
                    }}
                }}"""))
        config = "\n".join([
            "user www-data;", "worker_processes 2;", f"pid {self.path('nginx', 'nginx.pid')};",
            "error_log stderr;",
            "events { worker_connections 512; }", "http {",
            # the bed's slow request and idle keep-alive client outlive the defaults
            "    fastcgi_read_timeout 1800s;", "    keepalive_timeout 1800s;",
            f"    access_log {self.path('nginx', 'access.log')};", *temp,
            textwrap.indent("\n".join(servers), "    "), "}", ""])
        self.write("nginx/nginx.conf", config)
        os.makedirs(self.path("nginx", "tmp"))
        server = self.spawn("nginx", ["/usr/sbin/nginx", "-e", "stderr",
                                      "-c", self.path("nginx", "nginx.conf"),
                                      "-p", self.path("nginx"), "-g", "daemon off;"])
        wait_for(lambda: tcp_accepts(self.http_port), 30, "nginx", server)
        body = self.get(self.accounts[0], "/index.php")
        if f"Site of {self.accounts[0].name}" not in body:
            raise BedError(f"nginx -> php-fpm -> mariadb does not answer: {body[:300]!r}")

    def get(self, account: Account, path: str, port: int | None = None, timeout: float = 10
            ) -> str:
        request = urllib.request.Request(f"http://{LOCALHOST}:{port or self.http_port}{path}",
                                         headers={"Host": account.host})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read().decode(errors="replace")

    # ---------------------------------------------------------------- Apache

    def _apache(self) -> None:
        modules = "\n".join(f"LoadModule {name}_module /usr/lib/apache2/modules/mod_{name}.so"
                            for name in ("mpm_event", "authz_core", "dir", "mime", "proxy",
                                         "proxy_fcgi"))
        account = self.accounts[1]     # apache serves one site, as a backend of its own
        config = textwrap.dedent(f"""\
            ServerRoot {self.path('apache')}
            DefaultRuntimeDir {self.path('apache', 'run')}
            PidFile {self.path('apache', 'apache2.pid')}
            Mutex file:{self.path('apache', 'run')} default
            {modules}
            User www-data
            Group www-data
            ServerName {account.host}
            Listen {LOCALHOST}:{PORTS['apache']}
            ErrorLog /dev/stderr
            TypesConfig /etc/mime.types
            StartServers 2
            DocumentRoot {account.docroot}
            DirectoryIndex index.php
            ProxyPassMatch ^/(.*\\.php)$ fcgi://{LOCALHOST}:{account.pool_port}{account.docroot}/$1
            """)
        self.write("apache/apache2.conf", config)
        os.makedirs(self.path("apache", "run"))
        server = self.spawn("apache2", ["/usr/sbin/apache2", "-f",
                                        self.path("apache", "apache2.conf"), "-DFOREGROUND"])
        wait_for(lambda: tcp_accepts(PORTS["apache"]), 30, "apache2", server)
        body = self.get(account, "/index.php", port=PORTS["apache"])
        if f"Site of {account.name}" not in body:
            raise BedError(f"apache2 -> php-fpm does not answer: {body[:300]!r}")

    # ---------------------------------------------------------------- Exim

    def _exim(self) -> None:
        for sub in ("spool", "log"):
            os.makedirs(self.path("exim", sub))
            chown(self.path("exim", sub), "Debian-exim")
        config = textwrap.dedent(f"""\
            primary_hostname = bed.test
            exim_user = Debian-exim
            exim_group = Debian-exim
            never_users = root
            keep_environment =
            tls_advertise_hosts =
            spool_directory = {self.path('exim', 'spool')}
            log_file_path = {self.path('exim', 'log')}/%slog
            pid_file_path = {self.path('exim', 'exim.pid')}
            daemon_smtp_ports = {PORTS['smtp']}
            local_interfaces = {LOCALHOST}
            smtp_receive_timeout = 30m
            acl_smtp_rcpt = acl_check_rcpt
            begin acl
            acl_check_rcpt:
              deny message = relay not permitted
            begin routers
            begin transports
            """)
        self.write("exim/exim.conf", config)
        # as Debian's init script does: started as root, the daemon gives up root to
        # Debian-exim once it listens (exim is set-uid root and re-executes itself to deliver;
        # with a private -C file a delivery would run without root, and the bed delivers none)
        server = self.spawn("exim4", ["/usr/sbin/exim4", "-C", self.path("exim", "exim.conf"),
                                      "-bdf", "-q30m"])
        wait_for(lambda: tcp_accepts(PORTS["smtp"]), 30, "exim4", server)

    # ---------------------------------------------------------------- Dovecot

    def _dovecot(self) -> None:
        users = "".join(f"{a.name}:{{PLAIN}}{a.password}:{a.uid}:{a.uid}::{a.home}::\n"
                        for a in self.accounts)
        self.write("dovecot/users", users, mode=0o640, owner="dovecot")
        config = textwrap.dedent(f"""\
            base_dir = {self.path('dovecot', 'run')}
            state_dir = {self.path('dovecot', 'state')}
            log_path = /dev/stderr
            protocols = imap pop3
            listen = {LOCALHOST}
            ssl = no
            disable_plaintext_auth = no
            auth_mechanisms = plain login
            mail_location = maildir:~/Maildir
            default_login_user = dovenull
            default_internal_user = dovecot
            passdb {{
              driver = passwd-file
              args = scheme=PLAIN username_format=%u {self.path('dovecot', 'users')}
            }}
            userdb {{
              driver = passwd-file
              args = username_format=%u {self.path('dovecot', 'users')}
            }}
            """)
        for protocol in ("imap", "pop3"):
            # login processes waiting for clients, as busy hosts configure them
            config += textwrap.dedent(f"""\
                service {protocol}-login {{
                  process_min_avail = 2
                  inet_listener {protocol} {{
                    address = {LOCALHOST}
                    port = {PORTS[protocol]}
                  }}
                  inet_listener {protocol}s {{
                    port = 0
                  }}
                }}
                """)
        self.write("dovecot/dovecot.conf", config)
        server = self.spawn("dovecot", ["/usr/sbin/dovecot", "-F", "-c",
                                        self.path("dovecot", "dovecot.conf")])
        wait_for(lambda: tcp_accepts(PORTS["imap"]) and tcp_accepts(PORTS["pop3"]), 30,
                 "dovecot", server)

    # ---------------------------------------------------------------- Redis, memcached

    def _redis(self) -> None:
        os.makedirs(self.path("redis"))
        chown(self.path("redis"), "redis")
        self.write("redis/redis.conf", textwrap.dedent(f"""\
            bind {LOCALHOST}
            port {PORTS['redis']}
            daemonize no
            dir {self.path('redis')}
            logfile {self.path('redis', 'redis.log')}
            save ""
            appendonly no
            """))
        # Debian's unit runs it as redis (User=redis)
        server = self.spawn("redis-server", ["/usr/bin/redis-server",
                                             self.path("redis", "redis.conf")], user="redis")
        wait_for(lambda: tcp_accepts(PORTS["redis"]), 30, "redis-server", server)

    def _memcached(self) -> None:
        # Debian's wrapper starts it as root with -u memcache, as here
        server = self.spawn("memcached", ["/usr/bin/memcached", "-u", "memcache", "-l", LOCALHOST,
                                          "-p", str(PORTS["memcached"]), "-U", "0", "-m", "16"])
        wait_for(lambda: tcp_accepts(PORTS["memcached"]), 30, "memcached", server)

    # ---------------------------------------------------------------- Pure-FTPd

    def _pure_ftpd(self) -> None:
        os.makedirs(self.path("ftp"))
        passwd = self.path("ftp", "pureftpd.passwd")
        first = self.accounts[0]
        run(["pure-pw", "useradd", first.name, "-u", str(first.uid), "-g", str(first.uid),
             "-d", first.home, "-f", passwd], input=f"{FTP_PASSWORD}\n{FTP_PASSWORD}\n")
        # hashing takes pure-pw about 3 s a password: the others get the first one's hash
        with open(passwd) as handle:
            template = handle.read().split("\n")[0]
        _name, password_hash, _uid, _gid, rest = template.split(":", 4)
        lines = [template] + [
            f"{account.name}:{password_hash}:{account.uid}:{account.uid}:"
            + rest.replace(first.home, account.home) for account in self.accounts[1:]]
        with open(passwd, "w") as handle:
            handle.write("\n".join(lines) + "\n")
        run(["pure-pw", "mkdb", self.path("ftp", "pureftpd.pdb"), "-f", passwd])
        server = self.spawn("pure-ftpd", [
            "/usr/sbin/pure-ftpd", "-S", f"{LOCALHOST},{PORTS['ftp']}",
            "-l", f"puredb:{self.path('ftp', 'pureftpd.pdb')}", "-E", "-A", "-H",
            "-p", f"{FTP_PASSIVE[0]}:{FTP_PASSIVE[1]}", "-g", self.path("ftp", "pure-ftpd.pid")])
        wait_for(lambda: tcp_accepts(PORTS["ftp"]), 30, "pure-ftpd", server)

    # ---------------------------------------------------------------- BIND

    def _bind(self) -> None:
        os.makedirs(self.path("named"))
        chown(self.path("named"), "bind")
        self.write("named/bed.test.zone", textwrap.dedent("""\
            $TTL 300
            @   IN SOA ns.bed.test. hostmaster.bed.test. 1 300 60 600 300
                IN NS  ns.bed.test.
            ns  IN A   127.0.0.1
            www IN A   127.0.0.1
            """))
        self.write("named/named.conf", textwrap.dedent(f"""\
            options {{
                directory "{self.path('named')}";
                pid-file "{self.path('named', 'named.pid')}";
                session-keyfile "{self.path('named', 'session.key')}";
                listen-on port {PORTS['dns']} {{ {LOCALHOST}; }};
                listen-on-v6 {{ none; }};
                recursion no;
                dnssec-validation no;
            }};
            controls {{ }};
            zone "bed.test" {{ type primary; file "{self.path('named', 'bed.test.zone')}"; }};
            """))
        # Debian's unit: named -f -u bind, started as root
        server = self.spawn("named", ["/usr/sbin/named", "-f", "-u", "bind", "-n", "1",
                                      "-c", self.path("named", "named.conf")])
        wait_for(lambda: tcp_accepts(PORTS["dns"]), 30, "named", server)

    # ---------------------------------------------------------------- OpenSSH

    def _sshd(self) -> None:
        if not os.path.isdir(SSHD_PRIVSEP_DIR):       # normally made by the ssh unit
            self.created_paths.append(SSHD_PRIVSEP_DIR)
            self._save_state()
            os.mkdir(SSHD_PRIVSEP_DIR, 0o755)
        os.makedirs(self.path("ssh", "authorized_keys"))
        for key in ("host_ed25519", "client_ed25519"):
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", key,
                 "-f", self.path("ssh", key)])
        with open(self.path("ssh", "client_ed25519.pub")) as handle:
            public = handle.read()
        for account in self.accounts:
            self.write(os.path.join("ssh", "authorized_keys", account.name), public)
        self.write("ssh/sshd_config", textwrap.dedent(f"""\
            Port {PORTS['ssh']}
            ListenAddress {LOCALHOST}
            HostKey {self.path('ssh', 'host_ed25519')}
            PidFile {self.path('ssh', 'sshd.pid')}
            AuthorizedKeysFile {self.path('ssh', 'authorized_keys')}/%u
            # the bed lives under /tmp, which is world-writable
            StrictModes no
            UsePAM no
            PasswordAuthentication no
            KbdInteractiveAuthentication no
            PubkeyAuthentication yes
            AllowUsers {ACCOUNT_PREFIX}*
            UseDNS no
            PrintMotd no
            """))
        server = self.spawn("sshd", ["/usr/sbin/sshd", "-D", "-e", "-f",
                                     self.path("ssh", "sshd_config")])
        wait_for(lambda: tcp_accepts(PORTS["ssh"]), 30, "sshd", server)

    # ---------------------------------------------------------------- sessions

    SSH_SESSION_ACCOUNT = 2
    IMAP_SESSION_ACCOUNT = 3
    POP3_SESSION_ACCOUNT = 4
    FTP_SESSION_ACCOUNT = 5
    SLOW_REQUEST_ACCOUNT = 6

    #: the accounts of the sessions ``log_in`` opens while ``ptfast run`` runs (its live mode
    #: judges each new session at its PT_LIMIT; the ones above are older than the service)
    LATER_SESSION_ACCOUNTS = {"ssh": 7, "imap": 8, "pop3": 9, "ftp": 18}

    def _sessions(self) -> None:
        """Logged-in users and mail clients, as at any moment on a real host."""
        self.log_in({"ssh": self.SSH_SESSION_ACCOUNT, "imap": self.IMAP_SESSION_ACCOUNT,
                     "pop3": self.POP3_SESSION_ACCOUNT, "ftp": self.FTP_SESSION_ACCOUNT})
        self._other_clients()

    def log_in(self, accounts: dict, role_suffix: str = "") -> None:
        """An ssh login, IMAP and POP3 mail clients and an FTP client, each logged in as the
        account of its index in ``accounts`` ({"ssh": 2, ...}) and left open: new sessions of
        root services (sshd, dovecot, pure-ftpd), their login processes too."""
        account = self.accounts[accounts["ssh"]]
        client = self.spawn("ssh session" + role_suffix, [
            "/usr/bin/ssh", "-F", "/dev/null", "-i", self.path("ssh", "client_ed25519"),
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", "-p", str(PORTS["ssh"]), f"{account.name}@{LOCALHOST}",
            "sleep 86400"])
        wait_for(lambda: any(f"sshd: {account.name}@notty" == cmdline(pid)
                             for pid in self.bed_pids()), 30, "ssh session", client)

        imap_account = self.accounts[accounts["imap"]]
        imap = imaplib.IMAP4(LOCALHOST, PORTS["imap"], timeout=10)
        self.clients.append(imap)
        imap.login(imap_account.name, imap_account.password)
        imap.select("INBOX")        # logged in and idle: a mail client left open

        pop_account = self.accounts[accounts["pop3"]]
        pop = poplib.POP3(LOCALHOST, PORTS["pop3"], timeout=10)
        self.clients.append(pop)
        pop.user(pop_account.name)
        pop.pass_(pop_account.password)

        if "pure-ftpd" not in self.without:
            ftp_account = self.accounts[accounts["ftp"]]
            ftp = ftplib.FTP()
            self.clients.append(ftp)
            ftp.connect(LOCALHOST, PORTS["ftp"], timeout=10)
            ftp.login(ftp_account.name, FTP_PASSWORD)
            ftp.pwd()

    def _other_clients(self) -> None:
        smtp = smtplib.SMTP(LOCALHOST, PORTS["smtp"], timeout=10)
        self.clients.append(smtp)
        smtp.ehlo("client.test")         # a connection in the middle of its dialogue

        # a request that takes its time (a report, an import): a php-fpm worker holds the
        # connection nginx made to its pool while the scans run
        slow_account = self.accounts[self.SLOW_REQUEST_ACCOUNT]
        self.write(os.path.join(slow_account.docroot, "report.php"),
                   "<?php sleep(1800); echo 'done';\n", owner=slow_account.uid)
        slow = socket.create_connection((LOCALHOST, self.http_port), timeout=10)
        self.clients.append(slow)
        slow.sendall(f"GET /report.php HTTP/1.1\r\nHost: {slow_account.host}\r\n\r\n".encode())
        wait_for(lambda: any(cmdline(pid) == f"php-fpm: pool {slow_account.name}"
                             and holds_established(pid, slow_account.pool_port)
                             for pid in self.bed_pids()), 30, "the slow request")

        # a browser's idle keep-alive connection: an nginx worker holds what it accepted
        idle = socket.create_connection((LOCALHOST, self.http_port), timeout=10)
        self.clients.append(idle)
        idle.sendall(f"GET /index.php HTTP/1.1\r\nHost: {self.accounts[0].host}\r\n"
                     "Connection: keep-alive\r\n\r\n".encode())
        if b"200 OK" not in idle.recv(65536):
            raise BedError("nginx did not answer the keep-alive client")

    def restart_apache_gracefully(self) -> None:
        """What logrotate does every night: apache2's parent (root) re-reads its configuration
        and replaces its workers with new ones, finishing the requests in flight."""
        started = self.started["apache2"]
        os.kill(started.popen.pid, signal.SIGUSR1)

    # ---------------------------------------------------------------- web load

    #: the web load's concurrent clients: with requests of 1 to 3 s, about 8 of the 60 workers
    #: are busy at any moment, most of them holding a database connection (about 4 requests
    #: a second: the load under which issue 21 was measured)
    LOAD_CLIENTS = 8
    LOAD_SECONDS_AT_MOST = 900          # the load stops by itself, even if nobody stops it

    def start_load(self, clients: int = LOAD_CLIENTS,
                   seconds: float = LOAD_SECONDS_AT_MOST) -> None:
        """Requests to the PHP pages (LOAD_PAGES: a database over the unix socket or held over
        TCP for 1 to 3 s) from ``clients`` clients, until ``stop_load`` or ``seconds`` passed.
        A second call while the load runs changes nothing."""
        if self._load_threads:
            return
        deadline = time.monotonic() + seconds
        pages = [page for page, share in self.LOAD_PAGES.items() for _ in range(share)]

        def client(number: int) -> None:
            choose = random.Random(number)
            while not self._load_stop.is_set() and time.monotonic() < deadline:
                account = choose.choice(self.accounts)
                page = choose.choice(pages)
                port = PORTS["apache"] if account.index == 1 else self.http_port
                try:
                    body = self.get(account, page, port=port)
                    if f"Site of {account.name}" not in body:
                        self.load_errors.append(f"{account.name}{page}: {body[:120]!r}")
                except OSError as exc:
                    self.load_errors.append(f"{account.name}{page}: {exc}")
                self.load_requests += 1
                self.load_pages[page] = self.load_pages.get(page, 0) + 1
        self._load_stop.clear()
        for number in range(clients):
            thread = threading.Thread(target=client, args=(number,), daemon=True)
            thread.start()
            self._load_threads.append(thread)

    def stop_load(self) -> None:
        self._load_stop.set()
        for thread in self._load_threads:
            thread.join(timeout=15)
        self._load_threads = []

    # ---------------------------------------------------------------- teardown

    def teardown(self) -> list:
        """Stop and remove everything; the list of what could not be removed (empty: clean).
        Safe to call twice, and on a half-built bed."""
        if self._torn_down or self._lock is None:     # nothing built: the lock comes first
            return []
        self._torn_down = True
        self.stop_load()
        for client in self.clients:
            # imaplib's close() would send CLOSE; shutdown() closes the connection
            close = client.shutdown if isinstance(client, imaplib.IMAP4) else client.close
            try:
                close()
            except OSError:
                pass
        problems = remove_bed(self.dir, self.cgroup, [a.name for a in self.accounts],
                              self.created_paths, self.timings, self.netns)
        for started in self.started.values():      # killed with the cgroup: reap them
            started.popen.wait()
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        return problems


def make_dirs(directory: str, owner=None) -> None:
    """``directory`` and its missing parents (0755), owned by ``owner`` when given."""
    if os.path.isdir(directory):
        return
    make_dirs(os.path.dirname(directory), owner)
    os.mkdir(directory, 0o755)
    if owner is not None:
        chown(directory, owner)


def chown(path: str, owner) -> None:
    entry = pwd.getpwuid(owner) if isinstance(owner, int) else pwd.getpwnam(owner)
    os.chown(path, entry.pw_uid, entry.pw_gid)


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def holds_established(pid: int, local_port: int) -> bool:
    """Whether ``pid`` holds an established TCP connection on ``local_port``."""
    fact = read_processes([pid]).get(pid)
    return fact is not None and any(sock.state == "ESTABLISHED" and sock.local_port == local_port
                                    for sock in fact.sockets)


def kill_cgroup(cgroup: str, timeout: float = 20) -> list:
    """SIGKILL every process in ``cgroup`` until it is empty, then remove it."""
    if not cgroup or not os.path.isdir(cgroup):
        return []
    procs = os.path.join(cgroup, "cgroup.procs")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(procs) as handle:
            pids = [int(line) for line in handle if line.strip()]
        if not pids:
            break
        try:
            with open(os.path.join(cgroup, "cgroup.kill"), "w") as handle:
                handle.write("1")
        except OSError:           # kernels before 5.14: one by one
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        time.sleep(0.1)
    # the bed's direct children are reaped by whoever started them; wait for the cgroup to drain
    while time.monotonic() < deadline:
        try:
            os.rmdir(cgroup)
            return []
        except OSError:
            time.sleep(0.1)
    return [f"cgroup {cgroup} still holds processes"]


def remove_internet() -> list:
    """Delete the bed's internet namespace and veth pair (deleting either end deletes both);
    what is still there after."""
    if os.path.exists(f"/run/netns/{INTERNET_NETNS}"):
        subprocess.run(["ip", "netns", "del", INTERNET_NETNS], capture_output=True)
    if os.path.exists(f"/sys/class/net/{VETH_HOST}"):
        subprocess.run(["ip", "link", "del", VETH_HOST], capture_output=True)
    left = [f"network namespace {INTERNET_NETNS}"] * os.path.exists(
        f"/run/netns/{INTERNET_NETNS}") + [f"veth {VETH_HOST}"] * os.path.exists(
        f"/sys/class/net/{VETH_HOST}")
    return [f"{what} could not be removed" for what in left]


def remove_bed(directory: str, cgroup: str, account_names: list, created_paths: list,
               timings: dict | None = None, netns: str = "") -> list:
    """Kill the bed's processes, delete its accounts, files and internet namespace; what could
    not be removed. ``timings`` gets the seconds each phase took."""
    timings = {} if timings is None else timings
    began = time.monotonic()

    def phase(name: str) -> None:
        nonlocal began
        timings[f"teardown {name}"] = time.monotonic() - began
        began = time.monotonic()
    problems = kill_cgroup(cgroup)
    phase("kill")
    if netns:           # after the kill: nothing of the bed runs in it any more
        problems += remove_internet()
        phase("internet")
    uids = {}
    for name in account_names:
        try:
            uids[pwd.getpwnam(name).pw_uid] = name
        except KeyError:
            pass
    leftover: dict = {}

    def none_left() -> bool:
        leftover.clear()
        leftover.update(live_processes_of(uids))
        return not leftover
    wait_until(none_left, 10)
    for uid, pids in leftover.items():
        problems.append(f"processes of {uids[uid]} outside the bed's cgroup: {pids}")
    phase("exits")
    for name in account_names:
        if name in uids.values():
            # "-R /" (chroot to /, a no-op) skips userdel's look for the account's processes
            # (done above, once for all): it walks /proc, seconds per account on a machine
            # running thousands of processes
            result = subprocess.run(["userdel", "-R", "/", name], capture_output=True, text=True)
            if result.returncode != 0:
                problems.append(f"userdel {name}: {result.stderr.strip()}")
        try:        # userdel removes the account's group too, unless it was made alone
            grp.getgrnam(name)
        except KeyError:
            continue
        subprocess.run(["groupdel", name], capture_output=True, text=True)
    phase("accounts")
    for path in created_paths:
        shutil.rmtree(path, ignore_errors=True)
    if directory:
        shutil.rmtree(directory, ignore_errors=True)
        if os.path.exists(directory):
            problems.append(f"{directory} could not be removed")
    phase("files")
    if os.path.exists(STATE_FILE) and not problems:
        os.unlink(STATE_FILE)
    return problems


def live_processes_of(uids) -> dict:
    """uid -> live (not zombie) pids, for the uids in ``uids``, in one walk of /proc (which
    is slow on a machine running thousands of processes)."""
    found: dict = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status", "rb") as handle:
                fields = dict(line.split(b":", 1) for line in handle if b":" in line)
        except OSError:
            continue
        uid = int(fields[b"Uid"].split()[0])
        if uid in uids and not fields[b"State"].strip().startswith(b"Z"):
            found.setdefault(uid, []).append(int(name))
    return found


def remove_stale_bed(locked: bool = False) -> None:
    """Remove what a bed killed outright (SIGKILL, a crash) left behind; ``locked``: the
    caller holds the bed's lock (no bed is running)."""
    lock = None
    if not locked:
        lock = open(LOCK_FILE, "w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            raise Unavailable("a hosting bed is running: it is not stale") from None
    try:
        _remove_recorded_bed()
        _remove_stale_accounts()
        remove_internet()           # its names are the bed's alone
    finally:
        if lock is not None:
            lock.close()


def _remove_recorded_bed() -> None:
    try:
        with open(STATE_FILE) as handle:
            state = json.load(handle)
    except (OSError, ValueError):
        return
    remove_bed(state.get("dir", ""), state.get("cgroup", ""), state.get("accounts", []),
               state.get("created_paths", []), netns=state.get("netns", ""))
    if os.path.exists(STATE_FILE):
        os.unlink(STATE_FILE)


def _remove_stale_accounts() -> None:
    """Accounts of a bed that left no state file: named as the bed names them, with a uid from
    the tests' blocks (helpers.uids: 1,000,000 and up), which no real account has."""
    names = [entry.pw_name for entry in pwd.getpwall()
             if re.fullmatch(ACCOUNT_PREFIX + r"\d\d", entry.pw_name) and entry.pw_uid >= 1_000_000]
    if names:
        remove_bed("", "", names, [])


