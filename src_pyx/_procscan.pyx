# cython: language_level=3
"""Compiled scanner core: walk /proc and return plain facts about every process.

Same API and same results as the pure-Python twin ``ptfast/_procscan_py.py``, which is the
reference; read that file first. This one does the same work with raw system calls:

* every per-process file is opened relative to a directory fd of ``/proc/PID``, so all reads of
  one process refer to the same task: if the PID dies and is reused mid-scan, reads fail instead
  of mixing two processes up;
* files are read with one ``read()`` into a stack buffer (procfs returns the whole file at once);
* the GIL is released around each process's system calls.
"""

from libc.stdlib cimport malloc, realloc, free, strtoull, strtod
from libc.string cimport memchr, memcmp, memcpy, strlen
from cpython.unicode cimport PyUnicode_DecodeUTF8

from _libc cimport (
    O_RDONLY, O_DIRECTORY, O_CLOEXEC, openat, read, readlinkat, close,
    sysconf, _SC_CLK_TCK, _SC_PAGESIZE, DIR, dirent, fdopendir, readdir, closedir,
    statx_buf, statx, STATX_NLINK,
    AF_INET, AF_INET6, inet_ntop, errno, EINTR, EACCES, EPERM,
)

cdef enum:
    SMALL_BUF = 4096
    PATH_BUF = 4096
    # PF_KTHREAD from include/linux/sched.h: flags field 9 of /proc/PID/stat.
    PF_KTHREAD = 0x00200000

cdef const char* DELETED_SUFFIX = b" (deleted)"
cdef Py_ssize_t DELETED_SUFFIX_LEN = 10

TABLES = ("tcp", "udp", "tcp6", "udp6", "raw", "raw6")
TCP_STATES = (
    "UNKNOWN", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT",
    "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV",
)


cdef class Socket:
    """One inet socket from /proc/net/{tcp,udp,raw}[6] of some network namespace."""
    cdef readonly unsigned long long inode
    cdef readonly str proto
    cdef readonly str local_ip
    cdef readonly int local_port
    cdef readonly str remote_ip
    cdef readonly int remote_port
    cdef readonly str state
    cdef readonly unsigned long long netns

    def __repr__(self):
        return (f"Socket({self.proto} {self.local_ip}:{self.local_port} -> "
                f"{self.remote_ip}:{self.remote_port} {self.state} inode={self.inode})")


cdef class Process:
    """Facts about one process; ``sockets``/``open_files`` are None unless fds were inspected."""
    cdef readonly int pid
    cdef readonly int ppid
    cdef readonly int pgrp
    cdef readonly int session
    cdef readonly unsigned int uid
    cdef readonly unsigned long long start_time
    cdef readonly double age
    cdef readonly unsigned long long vm_size_bytes
    cdef readonly unsigned long long vm_rss_bytes
    cdef readonly str exe
    cdef readonly bint exe_deleted
    cdef readonly str cmdline
    cdef readonly object sockets
    cdef readonly object open_files

    def __repr__(self):
        return f"Process(pid={self.pid} uid={self.uid} exe={self.exe!r})"


cdef struct Buf:
    char* data
    Py_ssize_t len
    Py_ssize_t cap


cdef int buf_reserve(Buf* b, Py_ssize_t extra) noexcept nogil:
    cdef Py_ssize_t need = b.len + extra
    cdef Py_ssize_t cap
    cdef char* grown
    if need <= b.cap:
        return 0
    cap = b.cap * 2 if b.cap else 8192
    while cap < need:
        cap *= 2
    grown = <char*>realloc(b.data, cap)
    if grown == NULL:
        return -1
    b.data = grown
    b.cap = cap
    return 0


cdef Py_ssize_t read_small(int dirfd, const char* name, char* out, Py_ssize_t size) noexcept nogil:
    """Read a procfs file that fits in ``size`` bytes with one read(). Returns -errno on error."""
    cdef int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC)
    cdef Py_ssize_t n
    cdef int err
    if fd < 0:
        return -errno
    while True:
        n = read(fd, out, size)
        if n < 0 and errno == EINTR:
            continue
        break
    err = errno
    close(fd)
    return n if n >= 0 else -err


cdef Py_ssize_t read_all(int dirfd, const char* name, Buf* b, bint until_eof) noexcept nogil:
    """Read a whole file into ``b`` (from b.len on); returns bytes read or -errno.

    /proc/PID/cmdline gives everything that fits in one read, so a short read ends it and saves
    a system call; multi-record files such as /proc/net/tcp give about a page per read and need
    ``until_eof``."""
    cdef int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC)
    cdef Py_ssize_t n, start = b.len, want
    cdef int err
    if fd < 0:
        return -errno
    while True:
        if buf_reserve(b, SMALL_BUF) < 0:
            close(fd)
            return -12  # ENOMEM
        want = b.cap - b.len
        n = read(fd, b.data + b.len, want)
        if n < 0:
            if errno == EINTR:
                continue
            err = errno
            close(fd)
            return -err
        b.len += n
        if n == 0 or (n < want and not until_eof):
            break
    close(fd)
    return b.len - start


cdef unsigned long long parse_ull(const char** p, const char* end) noexcept nogil:
    cdef unsigned long long v = 0
    cdef const char* s = p[0]
    while s < end and s[0] == b' ':
        s += 1
    while s < end and s[0] >= b'0' and s[0] <= b'9':
        v = v * 10 + <unsigned long long>(s[0] - 48)
        s += 1
    p[0] = s
    return v


cdef long long parse_ll(const char** p, const char* end) noexcept nogil:
    cdef const char* s = p[0]
    cdef int neg = 0
    cdef long long v
    while s < end and s[0] == b' ':
        s += 1
    if s < end and s[0] == b'-':
        neg = 1
        s += 1
    p[0] = s
    v = <long long>parse_ull(p, end)
    return -v if neg else v


cdef const char* skip_fields(const char* s, const char* end, int count) noexcept nogil:
    """Skip ``count`` space-separated fields starting at ``s``."""
    while count > 0 and s < end:
        while s < end and s[0] == b' ':
            s += 1
        while s < end and s[0] != b' ':
            s += 1
        count -= 1
    return s


cdef struct ProcStat:
    int ppid
    int pgrp
    int session
    unsigned long flags
    unsigned long long start_time
    unsigned long long vsize
    unsigned long long rss_pages


cdef int parse_stat(const char* buf, Py_ssize_t n, ProcStat* st) noexcept nogil:
    """Parse /proc/PID/stat. The comm field may hold spaces and ')', so fields are counted
    from the LAST ')'."""
    cdef const char* end = buf + n
    cdef const char* p = end
    while p > buf and p[-1] != b')':
        p -= 1
    if p == buf:
        return -1
    # p is just after ')': fields 3.. follow. Field 3 is the one-letter state.
    p = skip_fields(p, end, 1)
    st.ppid = <int>parse_ll(&p, end)           # 4
    st.pgrp = <int>parse_ll(&p, end)           # 5
    st.session = <int>parse_ll(&p, end)        # 6
    p = skip_fields(p, end, 2)                 # 7 tty_nr, 8 tpgid
    st.flags = <unsigned long>parse_ull(&p, end)  # 9
    p = skip_fields(p, end, 12)                # 10..21
    st.start_time = parse_ull(&p, end)         # 22
    st.vsize = parse_ull(&p, end)              # 23 (bytes)
    st.rss_pages = <unsigned long long>parse_ll(&p, end)  # 24 (pages)
    return 0


cdef long long parse_status_uid(const char* buf, Py_ssize_t n) noexcept nogil:
    """The LAST field of the ``Uid:`` line of /proc/PID/status (the filesystem uid, as lfd)."""
    cdef const char* end = buf + n
    cdef const char* p = buf
    cdef const char* line_end
    cdef unsigned long long v = 0
    cdef int found = 0
    while p < end:
        line_end = <const char*>memchr(p, b'\n', end - p)
        if line_end == NULL:
            line_end = end
        if line_end - p > 4 and memcmp(p, b"Uid:", 4) == 0:
            p += 4
            while p < line_end:
                while p < line_end and (p[0] == b'\t' or p[0] == b' '):
                    p += 1
                if p < line_end:
                    v = parse_ull(&p, line_end)
                    found = 1
            return <long long>v if found else -1
        p = line_end + 1
    return -1


cdef unsigned long long parse_ns_inode(const char* link, Py_ssize_t n) noexcept nogil:
    """``net:[4026531840]`` -> 4026531840; 0 when the text is not of that form."""
    cdef const char* p = <const char*>memchr(link, b'[', n)
    if p == NULL:
        return 0
    p += 1
    return parse_ull(&p, link + n)


cdef Py_ssize_t normalise_cmdline(char* s, Py_ssize_t n) noexcept nogil:
    """lfd's normalisation in place: drop trailing NULs, other NULs become spaces, drop
    trailing white space."""
    cdef Py_ssize_t i
    while n > 0 and s[n - 1] == 0:
        n -= 1
    for i in range(n):
        if s[i] == 0:
            s[i] = b' '
    while n > 0 and (s[n - 1] == b' ' or s[n - 1] == b'\t' or s[n - 1] == b'\n'
                     or s[n - 1] == b'\r' or s[n - 1] == b'\f' or s[n - 1] == b'\v'):
        n -= 1
    return n


cdef inline str decode(const char* s, Py_ssize_t n):
    return PyUnicode_DecodeUTF8(s, n, "surrogateescape")


cdef inline int hexval(char c) noexcept nogil:
    if c >= b'0' and c <= b'9':
        return c - 48
    if c >= b'A' and c <= b'F':
        return c - 65 + 10
    if c >= b'a' and c <= b'f':
        return c - 97 + 10
    return -1


cdef const char* parse_hex_u32(const char* p, const char* end, unsigned int* out) noexcept nogil:
    cdef unsigned int v = 0
    cdef int d, i
    for i in range(8):
        if p >= end:
            return NULL
        d = hexval(p[0])
        if d < 0:
            return NULL
        v = (v << 4) | <unsigned int>d
        p += 1
    out[0] = v
    return p


cdef const char* parse_endpoint(const char* p, const char* end, bint v6, char* ip_out,
                                int* port_out) noexcept nogil:
    """Parse ``HEX:PORT`` as printed by the kernel (each 32-bit word in host byte order) into
    printable text; IPv4-mapped IPv6 is printed as IPv4."""
    cdef unsigned int words[4]
    cdef unsigned char* raw = <unsigned char*>words
    cdef int i, nwords = 4 if v6 else 1
    cdef unsigned int port = 0
    cdef int d
    while p < end and p[0] == b' ':
        p += 1
    for i in range(nwords):
        p = parse_hex_u32(p, end, &words[i])
        if p == NULL:
            return NULL
    if p >= end or p[0] != b':':
        return NULL
    p += 1
    while p < end:
        d = hexval(p[0])
        if d < 0:
            break
        port = (port << 4) | <unsigned int>d
        p += 1
    port_out[0] = <int>port
    if not v6:
        inet_ntop(AF_INET, raw, ip_out, 64)
    elif (words[0] == 0 and words[1] == 0 and raw[8] == 0 and raw[9] == 0
          and raw[10] == 0xff and raw[11] == 0xff):
        inet_ntop(AF_INET, raw + 12, ip_out, 64)
    else:
        inet_ntop(AF_INET6, raw, ip_out, 64)
    return p


cdef int parse_table(const char* data, Py_ssize_t n, str proto, bint v6, bint is_tcp,
                     unsigned long long netns, dict table) except -1:
    """Add every socket of one /proc/net table with a non-zero inode to ``table``."""
    cdef const char* end = data + n
    cdef const char* p = <const char*>memchr(data, b'\n', n)   # skip the header line
    cdef const char* line_end
    cdef const char* q
    cdef char local_ip[64]
    cdef char remote_ip[64]
    cdef int local_port, remote_port, st
    cdef unsigned long long inode
    cdef Socket sock
    if p == NULL:
        return 0
    p += 1
    while p < end:
        line_end = <const char*>memchr(p, b'\n', end - p)
        if line_end == NULL:
            line_end = end
        q = <const char*>memchr(p, b':', line_end - p)          # after "sl:"
        if q != NULL:
            q = parse_endpoint(q + 1, line_end, v6, local_ip, &local_port)
        if q != NULL:
            q = parse_endpoint(q, line_end, v6, remote_ip, &remote_port)
        if q != NULL:
            while q < line_end and q[0] == b' ':
                q += 1
            st = 0
            if q + 1 < line_end:
                st = hexval(q[0]) * 16 + hexval(q[1])
            # fields after st: tx:rx, tr:when, retrnsmt, uid, timeout, inode
            q = skip_fields(q, line_end, 6)
            inode = parse_ull(&q, line_end)
            if inode != 0 and inode not in table:
                sock = Socket.__new__(Socket)
                sock.inode = inode
                sock.proto = proto
                sock.local_ip = local_ip.decode("ascii")
                sock.local_port = local_port
                sock.remote_ip = remote_ip.decode("ascii")
                sock.remote_port = remote_port
                if not is_tcp and st == 7:
                    sock.state = "UNCONN"
                elif 0 < st < len(TCP_STATES):
                    sock.state = TCP_STATES[st]
                else:
                    sock.state = "UNKNOWN"
                sock.netns = netns
                table[inode] = sock
        p = line_end + 1
    return 0


cdef int load_tables(int dirfd, unsigned long long netns, dict table, Buf* b) except -1:
    """Read every inet table of one network namespace (``dirfd`` is /proc or /proc/PID)."""
    cdef Py_ssize_t n
    cdef str proto
    cdef bytes path
    cdef const char* c_path
    for proto in TABLES:
        path = ("net/" + proto).encode()
        c_path = path
        b.len = 0
        with nogil:
            n = read_all(dirfd, c_path, b, True)
        if n > 0:
            parse_table(b.data, b.len, proto, proto.endswith("6"), proto.startswith("tcp"),
                        netns, table)
    return 0


cdef class _Scanner:
    """State of one scan: procfs root fd, socket table, namespaces read, counters."""
    cdef int root_fd
    cdef double uptime
    cdef long clock_ticks
    cdef long page_size
    cdef dict socket_table
    cdef set namespaces_read
    cdef dict interned
    cdef Buf big          # cmdline and net tables
    cdef Buf links        # fd link targets of one process
    cdef public dict stats

    def __cinit__(self):
        self.root_fd = -1
        self.big.data = NULL
        self.big.len = self.big.cap = 0
        self.links.data = NULL
        self.links.len = self.links.cap = 0

    def __dealloc__(self):
        if self.root_fd >= 0:
            close(self.root_fd)
        free(self.big.data)
        free(self.links.data)

    cdef str intern(self, const char* s, Py_ssize_t n):
        """Decode, sharing one str for repeated values (exe paths, common open files)."""
        cdef str text = decode(s, n)
        cdef object known = self.interned.get(text)
        if known is None:
            self.interned[text] = text
            return text
        return <str>known

    cdef int open_root(self, str proc_root) except -1:
        cdef bytes root = proc_root.encode()
        cdef char uptime_buf[128]
        cdef char link[256]
        cdef Py_ssize_t n
        self.root_fd = openat(-100, root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)  # AT_FDCWD
        if self.root_fd < 0:
            raise OSError(errno, "cannot open procfs root", proc_root)
        n = read_small(self.root_fd, b"uptime", uptime_buf, sizeof(uptime_buf) - 1)
        if n <= 0:
            raise OSError(-n if n < 0 else 0, "cannot read uptime under procfs root", proc_root)
        uptime_buf[n] = 0
        self.uptime = strtod(uptime_buf, NULL)
        self.clock_ticks = sysconf(_SC_CLK_TCK)
        self.page_size = sysconf(_SC_PAGESIZE)
        self.socket_table = {}
        self.namespaces_read = set()
        self.interned = {}
        self.stats = {"processes": 0, "kernel_threads": 0, "vanished": 0, "denied": 0,
                      "namespaces": 0}
        n = readlinkat(self.root_fd, b"self/ns/net", link, sizeof(link))
        host_ns = parse_ns_inode(link, n) if n > 0 else 0
        load_tables(self.root_fd, host_ns, self.socket_table, &self.big)
        self.namespaces_read.add(host_ns)
        self.stats["namespaces"] = 1
        return 0

    cdef int ensure_namespace(self, int pid_fd) except -1:
        """Read the socket tables of the process's network namespace if not yet read."""
        cdef char link[256]
        cdef Py_ssize_t n
        with nogil:
            n = readlinkat(pid_fd, b"ns/net", link, sizeof(link))
        if n <= 0:
            return 0
        ns = parse_ns_inode(link, n)
        if ns in self.namespaces_read:
            return 0
        self.namespaces_read.add(ns)
        self.stats["namespaces"] += 1
        load_tables(pid_fd, ns, self.socket_table, &self.big)
        return 0

    cdef int inspect_fds(self, int pid_fd, Process proc) except -1:
        """List fd/, match socket:[INODE] against the socket table, collect open files."""
        cdef int fd_dir, rc = 0
        cdef DIR* d
        cdef dirent* ent
        cdef Py_ssize_t n, pos
        cdef const char* link
        cdef const char* p
        cdef unsigned long long inode
        cdef int link_len
        cdef list sockets = []
        cdef list open_files = []
        cdef list unmatched = None
        self.links.len = 0
        with nogil:
            fd_dir = openat(pid_fd, b"fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            if fd_dir < 0:
                rc = -errno
            else:
                d = fdopendir(fd_dir)
                if d == NULL:
                    rc = -errno
                    close(fd_dir)
                else:
                    while True:
                        ent = readdir(d)
                        if ent == NULL:
                            break
                        if ent.d_name[0] == b'.':
                            continue
                        # record layout in self.links: int length, then the bytes
                        if buf_reserve(&self.links, PATH_BUF + sizeof(int)) < 0:
                            break
                        n = readlinkat(fd_dir, ent.d_name,
                                       self.links.data + self.links.len + sizeof(int),
                                       PATH_BUF)
                        if n <= 0:
                            continue   # fd closed meanwhile
                        link_len = <int>n
                        memcpy(self.links.data + self.links.len, &link_len, sizeof(int))
                        self.links.len += sizeof(int) + n
                    closedir(d)
        if rc < 0:
            if rc == -EACCES or rc == -EPERM:
                self.stats["denied"] += 1
            return 0
        pos = 0
        while pos < self.links.len:
            memcpy(&link_len, self.links.data + pos, sizeof(int))
            link = self.links.data + pos + sizeof(int)
            pos += sizeof(int) + link_len
            if link_len > 8 and memcmp(link, b"socket:[", 8) == 0:
                p = link + 8
                inode = parse_ull(&p, link + link_len)
                sock = self.socket_table.get(inode)
                if sock is not None:
                    sockets.append(sock)
                else:
                    if unmatched is None:
                        unmatched = []
                    unmatched.append(inode)
            elif link_len > 6 and memcmp(link, b"pipe:[", 6) == 0:
                continue
            else:
                open_files.append(self.intern(link, link_len))
        if unmatched is not None:
            # Not in any table read so far: maybe the process lives in another network
            # namespace (a container). Unix sockets stay unmatched, which is right.
            self.ensure_namespace(pid_fd)
            for inode in unmatched:
                sock = self.socket_table.get(inode)
                if sock is not None:
                    sockets.append(sock)
        proc.sockets = tuple(sockets)
        proc.open_files = tuple(open_files)
        return 0

    cdef Process read_process(self, const char* name, object want_fds):
        """Read one /proc/PID; None when it is a kernel thread, vanished or not readable."""
        cdef int pid_fd
        cdef char stat_buf[SMALL_BUF]
        cdef char status_buf[SMALL_BUF]
        cdef char exe_buf[PATH_BUF]
        cdef statx_buf exe_stat
        cdef ProcStat st
        cdef Py_ssize_t stat_n = 0, status_n = 0, exe_n = 0, cmd_n = 0
        cdef long long uid = -1
        cdef int exe_errno = 0, deleted = 0, fail = 0
        cdef Process proc
        self.big.len = 0
        with nogil:
            pid_fd = openat(self.root_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            if pid_fd < 0:
                fail = 1
            else:
                stat_n = read_small(pid_fd, b"stat", stat_buf, SMALL_BUF)
                if stat_n <= 0 or parse_stat(stat_buf, stat_n, &st) < 0:
                    fail = 1
                elif st.flags & PF_KTHREAD:
                    fail = 2
                else:
                    status_n = read_small(pid_fd, b"status", status_buf, SMALL_BUF)
                    uid = parse_status_uid(status_buf, status_n) if status_n > 0 else -1
                    if uid < 0:
                        fail = 1
                if fail == 0:
                    exe_n = readlinkat(pid_fd, b"exe", exe_buf, PATH_BUF)
                    if exe_n < 0:
                        exe_errno = errno
                        fail = 3
                    elif exe_n >= DELETED_SUFFIX_LEN and memcmp(
                            exe_buf + exe_n - DELETED_SUFFIX_LEN, DELETED_SUFFIX,
                            DELETED_SUFFIX_LEN) == 0:
                        # The suffix is only a hint: a file may be NAMED "x (deleted)".
                        # The file is gone when the inode the link opens has no links left.
                        if (statx(pid_fd, b"exe", 0, STATX_NLINK, &exe_stat) == 0
                                and exe_stat.stx_nlink == 0):
                            deleted = 1
                            exe_n -= DELETED_SUFFIX_LEN
                if fail == 0:
                    cmd_n = read_all(pid_fd, b"cmdline", &self.big, False)
                    cmd_n = normalise_cmdline(self.big.data, cmd_n) if cmd_n > 0 else 0
        if fail:
            if pid_fd >= 0:
                close(pid_fd)
            if fail == 2:
                self.stats["kernel_threads"] += 1
            elif fail == 3:
                if exe_errno == EACCES or exe_errno == EPERM:
                    self.stats["denied"] += 1
                elif exe_errno == 2:   # ENOENT: no exe link, a kernel thread or a zombie
                    self.stats["kernel_threads"] += 1
                else:
                    self.stats["vanished"] += 1
            else:
                self.stats["vanished"] += 1
            return None
        proc = Process.__new__(Process)
        proc.pid = <int>strtoull(name, NULL, 10)
        proc.ppid = st.ppid
        proc.pgrp = st.pgrp
        proc.session = st.session
        proc.uid = <unsigned int>uid
        proc.start_time = st.start_time
        proc.age = self.uptime - (<double>st.start_time) / self.clock_ticks
        proc.vm_size_bytes = st.vsize
        proc.vm_rss_bytes = st.rss_pages * self.page_size
        proc.exe = self.intern(exe_buf, exe_n)
        proc.exe_deleted = deleted
        proc.cmdline = decode(self.big.data, cmd_n)
        proc.sockets = None
        proc.open_files = None
        try:
            if want_fds is True or (want_fds is not False and want_fds(proc)):
                self.inspect_fds(pid_fd, proc)
        finally:
            close(pid_fd)
        self.stats["processes"] += 1
        return proc


cdef bint is_pid_name(const char* s) noexcept nogil:
    if s[0] < b'1' or s[0] > b'9':
        return False
    while s[0] != 0:
        if s[0] < b'0' or s[0] > b'9':
            return False
        s += 1
    return True


def scan(str proc_root="/proc", want_fds=True):
    """Walk ``proc_root`` once. See ``ptfast._procscan_py.scan`` for the contract.

    Returns ``(processes, socket_table, stats)``.
    """
    cdef _Scanner scanner = _Scanner()
    cdef DIR* d
    cdef dirent* ent
    cdef int list_fd
    cdef list names = []
    cdef list processes = []
    cdef bytes name
    cdef Process proc
    scanner.open_root(proc_root)
    list_fd = openat(scanner.root_fd, b".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    if list_fd < 0:
        raise OSError(errno, "cannot list procfs root", proc_root)
    d = fdopendir(list_fd)
    if d == NULL:
        close(list_fd)
        raise OSError(errno, "cannot list procfs root", proc_root)
    try:
        while True:
            with nogil:
                ent = readdir(d)
            if ent == NULL:
                break
            if is_pid_name(ent.d_name):
                names.append(<bytes>ent.d_name)
    finally:
        closedir(d)
    for name in names:
        proc = scanner.read_process(name, want_fds)
        if proc is not None:
            processes.append(proc)
    return processes, scanner.socket_table, scanner.stats
