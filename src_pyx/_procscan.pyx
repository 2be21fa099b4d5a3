# cython: language_level=3
"""Compiled scanner core: walk /proc and return plain facts about every process.

Same API and same results as the pure-Python twin ``ptfast/scan/_procscan_py.py``, which is the
reference (read its docstring for the contract); constants, tables and record fields come from
``ptfast.scan._corespec``. This one does the same work with raw system calls:

* every per-process file is opened relative to a directory fd of ``/proc/PID``, so all reads of
  one process refer to the same task: if the PID dies and is reused mid-scan, reads fail instead
  of mixing two processes up;
* stat and status are read with one ``read()`` into a stack buffer (the kernel writes them whole);
* the GIL is released around each process's system calls;
* on the live /proc, the scanner's own namespace's tcp and udp tables come from NETLINK_SOCK_DIAG
  (structures from the kernel's headers), each from /proc/net when netlink fails.
"""

from libc.errno cimport EACCES, EINTR, ENAMETOOLONG, ENOENT, ENOMEM, EPERM, errno
from libc.stdlib cimport free, realloc
from libc.stdio cimport snprintf
from libc.string cimport memchr, memcmp, memcpy, memmove, memset, strlen
from posix.fcntl cimport AT_FDCWD, O_CLOEXEC, O_DIRECTORY, O_RDONLY, openat
from posix.stat cimport struct_stat
from posix.unistd cimport _SC_CLK_TCK, _SC_PAGESIZE, close, read, sysconf
from cpython.unicode cimport PyUnicode_DecodeUTF8

from _libc cimport (AF_INET, AF_INET6, DIR, INET6_ADDRSTRLEN, SYS_kcmp, closedir, dirent, memrchr,
                    fdopendir, fstatat, inet_ntop, readdir, readlinkat, syscall)
from _libc cimport (AF_NETLINK, MSG_TRUNC, NETLINK_SOCK_DIAG, NLM_F_DUMP, NLM_F_REQUEST,
                    NLMSG_ALIGN, NLMSG_DONE, NLMSG_ERROR, NLMSG_HDRLEN, SOCK_CLOEXEC,
                    SOCK_DIAG_BY_FAMILY, SOCK_RAW, inet_diag_msg, inet_diag_req_v2, nlmsghdr,
                    ntohs, recv, sendto, sockaddr, sockaddr_nl, socket)

from ptfast.scan import _corespec, _sockprobe

# -- the contract, as C values (ptfast/scan/_corespec.py defines them once) ----------------------
cdef int STAT_PPID = _corespec.STAT_PPID
cdef int STAT_PGRP = _corespec.STAT_PGRP
cdef int STAT_SESSION = _corespec.STAT_SESSION
cdef int STAT_FLAGS = _corespec.STAT_FLAGS
cdef int STAT_STARTTIME = _corespec.STAT_STARTTIME
cdef int STAT_VSIZE = _corespec.STAT_VSIZE
cdef int STAT_RSS = _corespec.STAT_RSS
cdef int FIRST_AFTER_COMM = _corespec.FIRST_AFTER_COMM
cdef int STAT_FIELDS_NEEDED = _corespec.STAT_FIELDS_NEEDED
cdef unsigned long long PF_KTHREAD = _corespec.PF_KTHREAD
cdef unsigned long long PF_FORKNOEXEC = _corespec.PF_FORKNOEXEC
cdef bytes DELETED_SUFFIX = _corespec.DELETED_SUFFIX.encode()
cdef tuple SOCKET_TABLES = _corespec.SOCKET_TABLES
cdef tuple STREAM_STATE_NAMES = _corespec.STREAM_STATE_NAMES
cdef tuple DGRAM_STATE_NAMES = _corespec.DGRAM_STATE_NAMES
cdef str UNKNOWN_STATE = _corespec.UNKNOWN_STATE
cdef int TABLE_UID_COLUMN = _corespec.TABLE_UID_COLUMN
cdef tuple LOCAL_TABLES = _corespec.LOCAL_TABLES
cdef dict SOCK_DIAG_TABLES = _corespec.SOCK_DIAG_TABLES
cdef bytes IO_URING_LINK = _corespec.IO_URING_LINK.encode()
cdef const char* IO_URING_LINK_C = IO_URING_LINK
cdef Py_ssize_t IO_URING_LINK_LEN = len(IO_URING_LINK)
cdef str EXE_PATH_TOO_LONG = _corespec.EXE_PATH_TOO_LONG
cdef str FDS_DENIED = _corespec.FDS_DENIED
cdef str FDS_GONE = _corespec.FDS_GONE
cdef str FD_TABLES_BEYOND_BOUND = _corespec.FD_TABLES_BEYOND_BOUND
cdef long long UNKNOWN_UID = _corespec.UNKNOWN_UID
cdef unsigned long PID_MAX_LIMIT = _corespec.PID_MAX_LIMIT
cdef int PID_MAX_DIGITS = _corespec.PID_MAX_DIGITS
cdef unsigned long long NETNS_UNKNOWN = _corespec.NETNS_UNKNOWN
cdef int NO_PORT = _corespec.NO_PORT

cdef enum:
    # Sizes of C arrays, so compiled in: ptfast.scan._corespec defines each (the twin applies the
    # same limits), and the import below fails when the two differ.
    SMALL_FILE_MAX = 4096
    LINK_MAX = 4096
    UPTIME_MAX = 128
    MAX_FD_TABLES = 64              # thread fd tables read per process, beyond its own
    KCMP_FILES = 2                  # include/uapi/linux/kcmp.h
    # the compiled core's own
    MAX_STAT_FIELDS = 32
    TABLE_CHUNK = 65536             # /proc/net tables are parsed this much at a time
    NETLINK_BUFFER = 65536          # the kernel puts at most 32 KB of a dump in one datagram

#: The values compiled into this core (C array sizes, the C headers' constants), by their
#: ptfast.scan._corespec names; tests/test_contract.py compares them too. SYS_kcmp: the number the
#: twin takes from its own table.
COMPILED_CONSTANTS = {"SMALL_FILE_MAX": SMALL_FILE_MAX, "LINK_MAX": LINK_MAX,
                      "UPTIME_MAX": UPTIME_MAX, "MAX_FD_TABLES": MAX_FD_TABLES,
                      "KCMP_FILES": KCMP_FILES, "AF_INET": AF_INET, "AF_INET6": AF_INET6,
                      "SYS_kcmp": SYS_kcmp}


def _contract_mismatches() -> list:
    """The compiled-in values that differ from ptfast.scan._corespec's (an ``assert`` would vanish
    under python -O: this check must not)."""
    wrong = [f"{name} is {value} here, {getattr(_corespec, name)} in ptfast.scan._corespec"
             for name, value in COMPILED_CONSTANTS.items()
             if hasattr(_corespec, name) and getattr(_corespec, name) != value]
    if STAT_FIELDS_NEEDED > MAX_STAT_FIELDS:
        wrong.append(f"STAT_FIELDS_NEEDED {STAT_FIELDS_NEEDED} > MAX_STAT_FIELDS")
    return wrong


_mismatches = _contract_mismatches()
if _mismatches:
    raise ImportError("the compiled core was built against another ptfast.scan._corespec "
                      "(rebuild it): " + "; ".join(_mismatches))

cdef enum Outcome:
    # Why read_process returned no record.
    READ_OK = 0
    VANISHED = 1          # gone mid-read, or a file that does not parse (a prepared tree)
    KERNEL_THREAD = 2
    NO_EXE = 3            # readlink(exe) failed: errno says why
    ZOMBIE = 4            # no exe and no live thread

cdef unsigned long long INT32_MAX = 2147483647
cdef unsigned long long UINT32_MAX = 4294967295
cdef unsigned long long UINT64_MAX = 18446744073709551615ULL
cdef unsigned long long RSS_PAGES_MAX = 1ULL << 48


cdef class Socket:
    """One network socket from /proc/net/{tcp,udp,raw}[6] of some network namespace."""
    cdef readonly unsigned long long inode
    cdef readonly str proto
    cdef readonly str local_ip
    cdef readonly int local_port
    cdef readonly str remote_ip
    cdef readonly int remote_port
    cdef readonly str state
    cdef readonly unsigned int uid
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
    cdef readonly unsigned long long exe_dev
    cdef readonly unsigned long long exe_ino
    cdef readonly long long exe_uid
    cdef readonly unsigned int exe_mode
    cdef readonly str cmdline
    cdef readonly int threads
    cdef readonly bint fork_no_exec
    cdef readonly object sockets
    cdef readonly object open_files
    cdef readonly str incomplete

    def __repr__(self):
        return f"Process(pid={self.pid} uid={self.uid} exe={self.exe!r})"


# -- buffers and reads ---------------------------------------------------------------------
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
    """One read() of at most ``size`` bytes. Returns the length, or -errno."""
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
        if buf_reserve(b, SMALL_FILE_MAX) < 0:
            close(fd)
            return -ENOMEM
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


cdef Py_ssize_t read_link(int dirfd, const char* name, char* out) noexcept nogil:
    """readlinkat into ``out`` (LINK_MAX bytes); -errno on failure, and -ENAMETOOLONG for a
    target that fills the buffer (the kernel never writes one)."""
    cdef Py_ssize_t n = readlinkat(dirfd, name, out, LINK_MAX)
    if n < 0:
        return -errno
    if n >= LINK_MAX:
        return -ENAMETOOLONG
    return n


# -- strict parsing: exactly what the twin accepts -----------------------------------------
cdef inline bint is_space(char c) noexcept nogil:
    # bytes.split()'s white space
    return c == b' ' or c == b'\t' or c == b'\n' or c == b'\r' or c == b'\v' or c == b'\f'


cdef int parse_unsigned(const char* s, const char* end, unsigned long long maximum,
                        unsigned long long* out) noexcept nogil:
    """The token [s, end) as a decimal number: 1 to 20 digits, at most ``maximum``. 0 on
    success, -1 when it is not one (the twin's _number)."""
    cdef unsigned long long value = 0, digit
    if s >= end or end - s > 20:
        return -1
    while s < end:
        if s[0] < b'0' or s[0] > b'9':
            return -1
        digit = <unsigned long long>(s[0] - 48)
        if value > (UINT64_MAX - digit) // 10:
            return -1
        value = value * 10 + digit
        s += 1
    if value > maximum:
        return -1
    out[0] = value
    return 0


cdef int parse_signed(const char* s, const char* end, unsigned long long maximum,
                      long long* out) noexcept nogil:
    """Like parse_unsigned, with one optional leading '-' (down to -maximum - 1)."""
    cdef unsigned long long value
    cdef bint negative = s < end and s[0] == b'-'
    if parse_unsigned(s + 1 if negative else s, end, maximum + 1 if negative else maximum,
                      &value) < 0:
        return -1
    out[0] = -<long long>value if negative else <long long>value
    return 0


cdef struct ProcStat:
    long long ppid
    long long pgrp
    long long session
    unsigned long long flags
    unsigned long long start_time
    unsigned long long vsize
    unsigned long long rss_pages


cdef int parse_stat(const char* buf, Py_ssize_t n, ProcStat* st) noexcept nogil:
    """The fields of a /proc/PID/stat line, counted after the LAST ')' (the comm may hold spaces
    and ')'). -1 when it is not a stat line."""
    cdef const char* end = buf + n
    cdef const char* p = end
    cdef const char* starts[MAX_STAT_FIELDS]
    cdef const char* ends[MAX_STAT_FIELDS]
    cdef int count = 0
    while p > buf and (p - 1)[0] != b')':
        p -= 1
    if p == buf:
        return -1
    while count < STAT_FIELDS_NEEDED:
        while p < end and is_space(p[0]):
            p += 1
        if p >= end:
            return -1
        starts[count] = p
        while p < end and not is_space(p[0]):
            p += 1
        ends[count] = p
        count += 1
    if (parse_signed(starts[STAT_PPID - FIRST_AFTER_COMM], ends[STAT_PPID - FIRST_AFTER_COMM],
                    INT32_MAX, &st.ppid) < 0
            or parse_signed(starts[STAT_PGRP - FIRST_AFTER_COMM],
                            ends[STAT_PGRP - FIRST_AFTER_COMM], INT32_MAX, &st.pgrp) < 0
            or parse_signed(starts[STAT_SESSION - FIRST_AFTER_COMM],
                            ends[STAT_SESSION - FIRST_AFTER_COMM], INT32_MAX, &st.session) < 0
            or parse_unsigned(starts[STAT_FLAGS - FIRST_AFTER_COMM],
                              ends[STAT_FLAGS - FIRST_AFTER_COMM], UINT64_MAX, &st.flags) < 0
            or parse_unsigned(starts[STAT_STARTTIME - FIRST_AFTER_COMM],
                              ends[STAT_STARTTIME - FIRST_AFTER_COMM], UINT64_MAX,
                              &st.start_time) < 0
            or parse_unsigned(starts[STAT_VSIZE - FIRST_AFTER_COMM],
                              ends[STAT_VSIZE - FIRST_AFTER_COMM], UINT64_MAX, &st.vsize) < 0
            or parse_unsigned(starts[STAT_RSS - FIRST_AFTER_COMM],
                              ends[STAT_RSS - FIRST_AFTER_COMM], RSS_PAGES_MAX,
                              &st.rss_pages) < 0):
        return -1
    return 0


cdef long long status_number(const char* buf, Py_ssize_t n, const char* key,
                             unsigned long long maximum) noexcept nogil:
    """The LAST field of the status line starting with ``key`` (``Uid:``: the filesystem uid,
    as lfd reads it); -1 when there is no such line or its last field is no number."""
    cdef const char* end = buf + n
    cdef const char* p = buf
    cdef const char* line_end
    cdef const char* last_start = NULL
    cdef const char* last_end = NULL
    cdef Py_ssize_t key_len = strlen(key)
    cdef unsigned long long value
    while p < end:
        line_end = <const char*>memchr(p, b'\n', end - p)
        if line_end == NULL:
            line_end = end
        if line_end - p >= key_len and memcmp(p, key, key_len) == 0:
            p += key_len
            while p < line_end:
                while p < line_end and is_space(p[0]):
                    p += 1
                if p < line_end:
                    last_start = p
                    while p < line_end and not is_space(p[0]):
                        p += 1
                    last_end = p
            if last_start == NULL or parse_unsigned(last_start, last_end, maximum, &value) < 0:
                return -1
            return <long long>value
        p = line_end + 1
    return -1


cdef unsigned long long parse_ns_inode(const char* link, Py_ssize_t n) noexcept nogil:
    """``net:[4026531840]`` -> 4026531840; NETNS_UNKNOWN when the text is not of that form."""
    cdef const char* p = <const char*>memchr(link, b'[', n)
    cdef const char* end = link + n
    cdef unsigned long long value
    if p == NULL:
        return NETNS_UNKNOWN
    p += 1
    while end > p and (end - 1)[0] == b']':
        end -= 1
    if parse_unsigned(p, end, UINT64_MAX, &value) < 0:
        return NETNS_UNKNOWN
    return value


cdef Py_ssize_t normalise_cmdline(char* s, Py_ssize_t n) noexcept nogil:
    """lfd's normalisation in place: drop trailing NULs, other NULs become spaces, drop
    trailing white space."""
    cdef Py_ssize_t i
    while n > 0 and s[n - 1] == 0:
        n -= 1
    for i in range(n):
        if s[i] == 0:
            s[i] = b' '
    while n > 0 and is_space(s[n - 1]):
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


cdef void address_text(const unsigned char* raw, bint v6, char* out) noexcept nogil:
    """An address in network byte order (4 or 16 bytes) as text into ``out``
    (INET6_ADDRSTRLEN bytes); IPv4-mapped IPv6 as IPv4."""
    cdef int i
    if not v6:
        inet_ntop(AF_INET, raw, out, INET6_ADDRSTRLEN)
        return
    for i in range(10):
        if raw[i] != 0:
            inet_ntop(AF_INET6, raw, out, INET6_ADDRSTRLEN)
            return
    if raw[10] == 0xff and raw[11] == 0xff:
        inet_ntop(AF_INET, raw + 12, out, INET6_ADDRSTRLEN)
    else:
        inet_ntop(AF_INET6, raw, out, INET6_ADDRSTRLEN)


cdef int parse_endpoint(const char* p, const char* end, bint v6, char* ip_out,
                        int* port_out) noexcept nogil:
    """The token [p, end), ``HEX:PORT`` as the kernel prints it (each 32-bit word in host byte
    order), as printable text; IPv4-mapped IPv6 is printed as IPv4. -1 when malformed."""
    cdef unsigned int words[4]
    cdef unsigned char* raw = <unsigned char*>words
    cdef int i, j, d, nwords = 4 if v6 else 1
    cdef unsigned int word, port = 0
    if end - p < nwords * 8 + 2 or end - p > nwords * 8 + 5 or p[nwords * 8] != b':':
        return -1
    for i in range(nwords):
        word = 0
        for j in range(8):
            d = hexval(p[0])
            if d < 0:
                return -1
            word = (word << 4) | <unsigned int>d
            p += 1
        words[i] = word
    p += 1
    while p < end:
        d = hexval(p[0])
        if d < 0:
            return -1
        port = (port << 4) | <unsigned int>d
        p += 1
    port_out[0] = <int>port
    address_text(raw, v6, ip_out)
    return 0


cdef inline str state_of_code(int code, tuple names):
    return <str>names[code] if code < len(names) else UNKNOWN_STATE


cdef str state_name(const char* s, const char* end, tuple names):
    cdef int high, low
    if end - s != 2:
        return UNKNOWN_STATE
    high = hexval(s[0])
    low = hexval(s[1])
    if high < 0 or low < 0:
        return UNKNOWN_STATE
    return state_of_code(high * 16 + low, names)


cdef Socket new_socket(unsigned long long inode, str proto, const char* local_ip, int local_port,
                       const char* remote_ip, int remote_port, str state, unsigned int uid,
                       unsigned long long netns):
    cdef Socket sock = Socket.__new__(Socket)
    sock.inode = inode
    sock.proto = proto
    sock.local_ip = local_ip.decode("ascii")
    sock.local_port = local_port
    sock.remote_ip = remote_ip.decode("ascii")
    sock.remote_port = remote_port
    sock.state = state
    sock.uid = uid
    sock.netns = netns
    return sock


cdef enum:
    TABLE_FIELDS = 10       # sl local rem st tx:rx tr:when retrnsmt uid timeout inode
    LOCAL_TABLE_COLUMNS = 16    # beyond the inode column of unix (6) and netlink (9) tables


cdef inline int split_columns(const char* p, const char* line_end, const char** starts,
                              const char** ends, int most) noexcept nogil:
    """Where each of the first ``most`` space-separated columns of one line starts and ends;
    returns how many there are."""
    cdef int count = 0
    while count < most:
        while p < line_end and p[0] == b' ':
            p += 1
        if p >= line_end:
            break
        starts[count] = p
        while p < line_end and p[0] != b' ':
            p += 1
        ends[count] = p
        count += 1
    return count


cdef int parse_table(const char* data, Py_ssize_t n, str proto, unsigned long long netns,
                     dict table, bint header) except -1:
    """Add every well-formed socket of lines of a /proc/net table with a non-zero inode to
    ``table``; ``header``: ``data`` starts with the table's header line, to skip."""
    cdef const char* end = data + n
    cdef const char* p = data
    cdef const char* line_end
    cdef const char* starts[TABLE_FIELDS]
    cdef const char* ends[TABLE_FIELDS]
    cdef int count
    cdef char local_ip[64]
    cdef char remote_ip[64]
    cdef int local_port, remote_port
    cdef unsigned long long inode, uid
    cdef bint v6 = _corespec.is_ipv6_table(proto)
    cdef bint ported = _corespec.has_ports(proto)
    cdef tuple names = (STREAM_STATE_NAMES if _corespec.is_stream_table(proto)
                        else DGRAM_STATE_NAMES)
    if header:
        p = <const char*>memchr(data, b'\n', n)
        if p == NULL:
            return 0
        p += 1
    while p < end:
        line_end = <const char*>memchr(p, b'\n', end - p)
        if line_end == NULL:
            line_end = end
        count = split_columns(p, line_end, starts, ends, TABLE_FIELDS)
        p = line_end + 1
        if (count < TABLE_FIELDS or parse_unsigned(starts[9], ends[9], UINT64_MAX, &inode) < 0
                or inode == 0 or inode in table):
            continue
        if (parse_endpoint(starts[1], ends[1], v6, local_ip, &local_port) < 0
                or parse_endpoint(starts[2], ends[2], v6, remote_ip, &remote_port) < 0
                or parse_unsigned(starts[TABLE_UID_COLUMN], ends[TABLE_UID_COLUMN], UINT32_MAX,
                                  &uid) < 0):
            continue
        if not ported:      # an echo identifier or an IP protocol number: no port
            local_port = remote_port = NO_PORT
        table[inode] = new_socket(inode, proto, local_ip, local_port, remote_ip, remote_port,
                                  state_name(starts[3], ends[3], names), <unsigned int>uid, netns)
    return 0


cdef bint is_pid_name(const char* s) noexcept nogil:
    """Digits without a leading zero, at most PID_MAX_LIMIT (as the twin's _is_pid_name)."""
    cdef unsigned long value = 0
    cdef int count = 0
    if s[0] < b'1' or s[0] > b'9':
        return False
    while s[0] != 0:
        if s[0] < b'0' or s[0] > b'9' or count >= PID_MAX_DIGITS:
            return False
        value = value * 10 + <unsigned long>(s[0] - 48)
        count += 1
        s += 1
    return value <= PID_MAX_LIMIT


cdef inline int pid_value(const char* s) noexcept nogil:
    """The number of a name is_pid_name accepted."""
    cdef int value = 0
    while s[0] != 0:
        value = value * 10 + (s[0] - 48)
        s += 1
    return value


cdef DIR* open_task_list(int pid_fd) noexcept nogil:
    """/proc/PID/task as a directory stream (closedir when done); NULL when it cannot be read."""
    cdef int task_dir = openat(pid_fd, b"task", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    cdef DIR* tasks
    if task_dir < 0:
        return NULL
    tasks = fdopendir(task_dir)
    if tasks == NULL:
        close(task_dir)
    return tasks


cdef int next_task(DIR* tasks, int skip) noexcept nogil:
    """The next thread id of the stream other than ``skip``; -1 at the end."""
    cdef dirent* ent
    cdef unsigned long long tid
    while True:
        ent = readdir(tasks)
        if ent == NULL:
            return -1
        if (is_pid_name(ent.d_name)
                and parse_unsigned(ent.d_name, ent.d_name + strlen(ent.d_name), INT32_MAX,
                                   &tid) == 0 and <int>tid != skip):
            return <int>tid


cdef int open_task(int pid_fd, int tid) noexcept nogil:
    """The directory fd of /proc/PID/task/TID; negative when it cannot be opened."""
    cdef char path[32]
    snprintf(path, sizeof(path), b"task/%d", tid)
    return openat(pid_fd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)


cdef int parse_inode_column(const char* data, Py_ssize_t n, int column, set inodes) except -1:
    """Add the inode of every line (after the header) of a unix/netlink table to ``inodes``
    (columns split on spaces; a value that is no number is skipped, as the twin does)."""
    cdef const char* end = data + n
    cdef const char* p = <const char*>memchr(data, b'\n', n)
    cdef const char* line_end
    cdef const char* starts[LOCAL_TABLE_COLUMNS]
    cdef const char* ends[LOCAL_TABLE_COLUMNS]
    cdef unsigned long long inode
    if p == NULL or column >= LOCAL_TABLE_COLUMNS:
        return 0
    p += 1
    while p < end:
        line_end = <const char*>memchr(p, b'\n', end - p)
        if line_end == NULL:
            line_end = end
        if (split_columns(p, line_end, starts, ends, column + 1) > column
                and parse_unsigned(starts[column], ends[column], UINT64_MAX, &inode) == 0):
            inodes.add(inode)
        p = line_end + 1
    return 0


cdef Socket socket_of(tuple record):
    """A Socket from a record tuple in SOCKET_FIELDS order (ptfast.scan._sockprobe's)."""
    cdef Socket sock = Socket.__new__(Socket)
    (sock.inode, sock.proto, sock.local_ip, sock.local_port, sock.remote_ip, sock.remote_port,
     sock.state, sock.uid, sock.netns) = record
    return sock


cdef struct DiagRequest:
    # one sock_diag dump request, as sent
    nlmsghdr header
    inet_diag_req_v2 request


cdef struct LinkHead:
    # a record of _Scanner.links: this head, then ``length`` bytes of the link target
    int length
    int fd                  # the fd number; -1 for an io_uring registered file
    int table               # index into the walked tables (the task holding the fd)


cdef class _Scanner:
    """State of one scan: procfs root fd, socket tables, namespaces read, counters."""
    cdef int root_fd
    cdef bint live_proc     # proc_root is the live /proc (kcmp and pidfds mean something)
    cdef str proc_root
    cdef double uptime
    cdef long clock_ticks
    cdef long page_size
    cdef dict socket_table
    cdef set local_inodes   # unix and netlink sockets: no network
    cdef set namespaces_read
    cdef set local_read
    cdef dict interned
    cdef Buf big          # cmdline and net tables
    cdef Buf links        # fd link targets of one process (LinkHead records)
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
        cdef char uptime_buf[UPTIME_MAX]
        cdef char link[LINK_MAX]
        cdef Py_ssize_t n
        self.proc_root = proc_root
        self.live_proc = proc_root == "/proc"
        self.root_fd = openat(AT_FDCWD, root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if self.root_fd < 0:
            raise OSError(errno, "cannot open procfs root", proc_root)
        n = read_small(self.root_fd, b"uptime", uptime_buf, UPTIME_MAX)
        try:
            # Python's float() on the first token, exactly as the twin reads it
            self.uptime = float(uptime_buf[:n].split()[0]) if n > 0 else float("")
        except (ValueError, IndexError):
            raise OSError(-n if n < 0 else 22, "cannot read uptime under procfs root",  # EINVAL
                          proc_root) from None
        self.clock_ticks = sysconf(_SC_CLK_TCK)
        self.page_size = sysconf(_SC_PAGESIZE)
        self.socket_table = {}
        self.local_inodes = set()
        self.namespaces_read = set()
        self.local_read = set()
        self.interned = {}
        self.stats = _corespec.new_counters()
        n = read_link(self.root_fd, b"self/ns/net", link)
        host_ns = parse_ns_inode(link, n) if n > 0 else NETNS_UNKNOWN
        # netlink reaches the scanner's own namespace, which is /proc's only on the live /proc
        self.load_tables(self.root_fd, host_ns, self.live_proc)
        self.namespaces_read.add(host_ns)
        self.stats["namespaces"] = 1
        return 0

    cdef int load_tables(self, int dirfd, unsigned long long netns, bint sock_diag) except -1:
        """Read every network socket table of one network namespace (``dirfd`` is /proc or
        /proc/PID); with ``sock_diag`` (the scanner's own namespace, on the live /proc) those of
        SOCK_DIAG_TABLES through netlink when it answers (counted in stats["sock_diag"])."""
        cdef Py_ssize_t n
        cdef str proto
        cdef bytes path
        cdef Buf* b = &self.big
        cdef tuple record
        cdef list sockets
        cdef Socket sock
        for proto in SOCKET_TABLES:
            if sock_diag and proto in SOCK_DIAG_TABLES:
                sockets = []
                if self.sock_diag_table(proto, netns, sockets) == 0:
                    for sock in sockets:
                        if sock.inode not in self.socket_table:
                            self.socket_table[sock.inode] = sock
                    self.stats["sock_diag"] += 1
                    continue
            path = ("net/" + proto).encode()
            self.stream_table(dirfd, path, proto, netns)
        b.len = 0
        with nogil:
            n = read_all(dirfd, b"net/packet", b, True)
        if n > 0:
            for record in _sockprobe.packet_records(b.data[:b.len], netns):
                if record[0] not in self.socket_table:
                    self.socket_table[record[0]] = socket_of(record)
        return 0

    cdef int sock_diag_table(self, str proto, unsigned long long netns, list out) except -2:
        """Append the sockets with an inode of table ``proto`` (one of SOCK_DIAG_TABLES) of the
        scanner's own network namespace, from NETLINK_SOCK_DIAG, to ``out``: the records
        /proc/net/PROTO gives. 0 when done; -1 when netlink is refused or the request fails
        (``out`` is then incomplete: the caller reads /proc/net instead)."""
        cdef int family, protocol, fd
        cdef unsigned int states
        cdef DiagRequest request
        cdef sockaddr_nl kernel
        cdef Buf* b = &self.big
        cdef Py_ssize_t n, offset
        cdef const nlmsghdr* header
        cdef const inet_diag_msg* message
        cdef bint v6 = _corespec.is_ipv6_table(proto)
        cdef tuple names = (STREAM_STATE_NAMES if _corespec.is_stream_table(proto)
                            else DGRAM_STATE_NAMES)
        cdef char local_ip[64]
        cdef char remote_ip[64]
        family, protocol, states = SOCK_DIAG_TABLES[proto]
        memset(&request, 0, sizeof(request))
        request.header.nlmsg_len = sizeof(request)
        request.header.nlmsg_type = SOCK_DIAG_BY_FAMILY
        request.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP
        request.header.nlmsg_seq = 1
        request.request.sdiag_family = family
        request.request.sdiag_protocol = protocol
        request.request.idiag_states = states        # the zero socket id filters nothing
        memset(&kernel, 0, sizeof(kernel))
        kernel.nl_family = AF_NETLINK
        b.len = 0
        if buf_reserve(b, NETLINK_BUFFER) < 0:
            raise MemoryError()
        # Only the kernel (and root) can send to this socket: NETLINK_SOCK_DIAG does not let
        # other users send to a port id, so every datagram read is the kernel's answer.
        with nogil:
            fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG)
            if fd >= 0 and sendto(fd, &request, sizeof(request), 0, <sockaddr*>&kernel,
                                  sizeof(kernel)) < 0:
                close(fd)
                fd = -1
        if fd < 0:
            return -1
        try:
            while True:
                with nogil:
                    # MSG_TRUNC: the datagram's whole length, to tell a cut one
                    n = recv(fd, b.data, NETLINK_BUFFER, MSG_TRUNC)
                    while n < 0 and errno == EINTR:
                        n = recv(fd, b.data, NETLINK_BUFFER, MSG_TRUNC)
                if n <= 0 or n > NETLINK_BUFFER:
                    return -1
                offset = 0
                while offset + NLMSG_HDRLEN <= n:
                    header = <const nlmsghdr*>(b.data + offset)
                    if header.nlmsg_len < NLMSG_HDRLEN or header.nlmsg_len > n - offset:
                        return -1
                    if header.nlmsg_type == NLMSG_DONE:
                        # a dump's NLMSG_DONE carries its error: 0 when it is complete
                        if (header.nlmsg_len >= NLMSG_HDRLEN + sizeof(int)
                                and (<const int*>(b.data + offset + NLMSG_HDRLEN))[0] != 0):
                            return -1
                        return 0
                    if header.nlmsg_type == NLMSG_ERROR:
                        return -1
                    if (header.nlmsg_type == SOCK_DIAG_BY_FAMILY
                            and header.nlmsg_len >= NLMSG_HDRLEN + sizeof(inet_diag_msg)):
                        message = <const inet_diag_msg*>(b.data + offset + NLMSG_HDRLEN)
                        if message.idiag_inode != 0:    # 0: a socket no process holds (orphan)
                            address_text(<const unsigned char*>message.id.idiag_src, v6,
                                         local_ip)
                            address_text(<const unsigned char*>message.id.idiag_dst, v6,
                                         remote_ip)
                            out.append(new_socket(
                                message.idiag_inode, proto, local_ip,
                                ntohs(message.id.idiag_sport), remote_ip,
                                ntohs(message.id.idiag_dport),
                                state_of_code(message.idiag_state, names), message.idiag_uid,
                                netns))
                    offset += NLMSG_ALIGN(header.nlmsg_len)
        finally:
            close(fd)

    cdef int stream_table(self, int dirfd, bytes path, str proto,
                          unsigned long long netns) except -1:
        """Parse one /proc/net table a chunk at a time: 200,000 sockets are 30 MB of text
        (mostly TIME_WAIT lines, which have no inode), and memory must not grow with them."""
        cdef const char* c_path = path
        cdef Buf* b = &self.big
        cdef int fd
        cdef Py_ssize_t n, parsed
        cdef bint header = True
        cdef const char* last
        with nogil:
            fd = openat(dirfd, c_path, O_RDONLY | O_CLOEXEC)
        if fd < 0:
            return 0
        b.len = 0
        try:
            while True:
                if buf_reserve(b, TABLE_CHUNK) < 0:
                    raise MemoryError()
                with nogil:
                    n = read(fd, b.data + b.len, b.cap - b.len)
                    while n < 0 and errno == EINTR:
                        n = read(fd, b.data + b.len, b.cap - b.len)
                if n <= 0:
                    if b.len > 0:           # a last line without its newline
                        parse_table(b.data, b.len, proto, netns, self.socket_table, header)
                    return 0
                b.len += n
                last = <const char*>memrchr(b.data, b'\n', b.len)
                if last == NULL:
                    continue                # not one whole line yet
                parsed = last - b.data + 1
                parse_table(b.data, parsed, proto, netns, self.socket_table, header)
                header = False
                memmove(b.data, b.data + parsed, b.len - parsed)
                b.len -= parsed
        finally:
            close(fd)

    cdef unsigned long long namespace_of(self, int pid_fd):
        """The inode of the process's network namespace; NETNS_UNKNOWN when not readable."""
        cdef char link[LINK_MAX]
        cdef Py_ssize_t n
        with nogil:
            n = read_link(pid_fd, b"ns/net", link)
        return parse_ns_inode(link, n) if n > 0 else NETNS_UNKNOWN

    cdef int ensure_namespace(self, int pid_fd) except -1:
        """Read the socket tables of the process's network namespace if not yet read."""
        cdef unsigned long long ns = self.namespace_of(pid_fd)
        if ns == NETNS_UNKNOWN or ns in self.namespaces_read:
            return 0
        self.namespaces_read.add(ns)
        self.stats["namespaces"] += 1
        self.load_tables(pid_fd, ns, False)
        return 0

    cdef int ensure_local_inodes(self, int pid_fd) except -1:
        """Read the unix and netlink tables of the process's network namespace, once."""
        cdef unsigned long long ns = self.namespace_of(pid_fd)
        cdef Py_ssize_t n
        cdef str name
        cdef int column
        cdef bytes path
        cdef const char* c_path
        if ns == NETNS_UNKNOWN or ns in self.local_read:
            return 0
        self.local_read.add(ns)
        for name, column in LOCAL_TABLES:
            path = ("net/" + name).encode()
            c_path = path
            self.big.len = 0
            with nogil:
                n = read_all(pid_fd, c_path, &self.big, True)
            if n > 0:
                parse_inode_column(self.big.data, self.big.len, column, self.local_inodes)
        return 0

    cdef int walk_fd_table(self, int task_fd, int table, Process proc) except -1:
        """Append a LinkHead record for every fd of one task's fd table: 0 when read, 1 (and
        ``proc.incomplete`` set) when it cannot be."""
        cdef int fd_dir, rc = 0
        cdef DIR* d
        cdef dirent* ent
        cdef const char* name
        cdef Py_ssize_t n
        cdef LinkHead head
        cdef unsigned long long number
        with nogil:
            fd_dir = openat(task_fd, b"fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
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
                        name = ent.d_name
                        if parse_unsigned(name, name + strlen(name), INT32_MAX, &number) < 0:
                            continue        # "." and ".."
                        if buf_reserve(&self.links, LINK_MAX + sizeof(LinkHead)) < 0:
                            break
                        n = read_link(fd_dir, name, self.links.data + self.links.len
                                      + sizeof(LinkHead))
                        if n <= 0:
                            continue   # fd closed meanwhile
                        head.length = <int>n
                        head.fd = <int>number
                        head.table = table
                        memcpy(self.links.data + self.links.len, &head, sizeof(LinkHead))
                        self.links.len += sizeof(LinkHead) + n
                    closedir(d)
        if rc < 0:
            if rc == -EACCES or rc == -EPERM:
                self.stats["denied"] += 1
                if not proc.incomplete:
                    proc.incomplete = FDS_DENIED
            elif not proc.incomplete:
                proc.incomplete = FDS_GONE
            return 1
        return 0

    cdef int add_link(self, str target, int table) except -1:
        """Append a LinkHead record for an io_uring registered file (no fd of its own)."""
        cdef bytes raw = target.encode("utf-8", "surrogateescape")
        cdef LinkHead head
        if len(raw) >= LINK_MAX or buf_reserve(&self.links, len(raw) + sizeof(LinkHead)) < 0:
            return 0
        head.length = <int>len(raw)
        head.fd = -1
        head.table = table
        memcpy(self.links.data + self.links.len, &head, sizeof(LinkHead))
        memcpy(self.links.data + self.links.len + sizeof(LinkHead), <const char*>raw,
               len(raw))
        self.links.len += sizeof(LinkHead) + len(raw)
        return 0

    cdef int private_tables(self, int pid_fd, int task_tid, int* fds, int* tids,
                            int* count) noexcept nogil:
        """Open the task dirs of the threads whose fd table is their own (unshare(CLONE_FILES))
        into ``fds``/``tids`` from ``count`` (1) on: kcmp(KCMP_FILES) tells, and where it
        cannot (not the live /proc, no kcmp) every other thread is taken. At most
        MAX_FD_TABLES of them, in task order (as the twin); 1 when a further one was left
        unread, else 0."""
        cdef DIR* tasks = open_task_list(pid_fd)
        cdef int tid, fd, beyond = 0
        if tasks == NULL:
            return 0
        while True:
            tid = next_task(tasks, task_tid)
            if tid < 0:
                break
            if self.live_proc and syscall(SYS_kcmp, task_tid, tid, KCMP_FILES, 0, 0) == 0:
                continue                    # the same table: read already
            if count[0] > MAX_FD_TABLES:
                beyond = 1
                break
            fd = open_task(pid_fd, tid)
            if fd >= 0:
                fds[count[0]] = fd
                tids[count[0]] = tid
                count[0] += 1
        closedir(tasks)
        return beyond

    cdef int inspect_fds(self, int pid_fd, Process proc, int task_fd, int task_tid) except -1:
        """List the fd tables (the task's, and threads' own), match socket:[INODE] against the
        socket tables, read io_uring registered files, examine sockets in no table; collect
        open files."""
        cdef int fds[MAX_FD_TABLES + 1]
        cdef int tids[MAX_FD_TABLES + 1]
        cdef int count = 1, i, read_any = 0, beyond = 0
        cdef Py_ssize_t pos, n
        cdef LinkHead head
        cdef const char* link
        cdef unsigned long long inode
        cdef dict sockets = {}
        cdef dict open_files = {}
        cdef list unmatched = None
        cdef list uring = None
        cdef bytes fdinfo_path
        cdef str target
        fds[0] = task_fd
        tids[0] = task_tid
        self.links.len = 0
        try:
            if proc.threads > 1:
                with nogil:
                    beyond = self.private_tables(pid_fd, task_tid, fds, tids, &count)
                if beyond and not proc.incomplete:
                    proc.incomplete = FD_TABLES_BEYOND_BOUND
            for i in range(count):
                if self.walk_fd_table(fds[i], i, proc) == 0:
                    read_any = 1
            if not read_any:
                return 0
            pos = 0
            while pos < self.links.len:
                memcpy(&head, self.links.data + pos, sizeof(LinkHead))
                link = self.links.data + pos + sizeof(LinkHead)
                pos += sizeof(LinkHead) + head.length
                if head.fd >= 0 and head.length == IO_URING_LINK_LEN and memcmp(
                        link, IO_URING_LINK_C, IO_URING_LINK_LEN) == 0:
                    if uring is None:
                        uring = []
                    uring.append((head.fd, head.table))
            if uring is not None:
                for fd, table in uring:
                    fdinfo_path = f"fdinfo/{fd}".encode()
                    self.big.len = 0
                    n = read_all(fds[table], fdinfo_path, &self.big, True)
                    if n > 0:
                        for target in _sockprobe.io_uring_files(self.big.data[:self.big.len]):
                            self.add_link(target, table)
            pos = 0
            while pos < self.links.len:
                memcpy(&head, self.links.data + pos, sizeof(LinkHead))
                link = self.links.data + pos + sizeof(LinkHead)
                pos += sizeof(LinkHead) + head.length
                if head.length >= 8 and memcmp(link, b"socket:[", 8) == 0:
                    if (link[head.length - 1] != b']'
                            or parse_unsigned(link + 8, link + head.length - 1, UINT64_MAX,
                                              &inode) < 0):
                        continue
                    sock = self.socket_table.get(inode)
                    if sock is not None:
                        if inode not in sockets:
                            sockets[inode] = sock
                    elif inode not in sockets:
                        if unmatched is None:
                            unmatched = []
                        unmatched.append((inode, head.fd, tids[head.table]))
                elif head.length >= 6 and memcmp(link, b"pipe:[", 6) == 0:
                    continue
                elif head.length == IO_URING_LINK_LEN and memcmp(
                        link, IO_URING_LINK_C, IO_URING_LINK_LEN) == 0:
                    continue
                else:
                    target = self.intern(link, head.length)
                    if target not in open_files:
                        open_files[target] = None
            if unmatched is not None:
                # Not in any table read so far: maybe the process lives in another network
                # namespace (a container); else a unix or netlink socket; else a network
                # socket the tables do not show, which its fd tells about (_sockprobe).
                self.ensure_namespace(pid_fd)
                self.ensure_local_inodes(pid_fd)
                for inode, fd, tid in unmatched:
                    sock = self.socket_table.get(inode)
                    if sock is None and inode not in self.local_inodes:
                        sock = (self.probe(proc.pid, tid, fd) if fd >= 0
                                else socket_of(_sockprobe.unexamined(inode, proc.uid)))
                    if sock is not None and (<Socket>sock).inode not in sockets:
                        sockets[(<Socket>sock).inode] = sock
            proc.sockets = tuple(sockets.values())
            proc.open_files = tuple(open_files)
        finally:
            for i in range(1, count):
                close(fds[i])
        return 0

    cdef object probe(self, int pid, int tid, int fd):
        record = _sockprobe.identify(self.proc_root, pid, tid, str(fd))
        if record is None:
            return None
        sock = self.socket_table.get(record[0])        # it may be in a table after all
        if sock is None:
            sock = self.socket_table[record[0]] = socket_of(record)
        self.stats["probed"] += 1
        return sock

    cdef int live_task(self, int pid_fd, int pid, int* task_fd, int* task_tid, char* exe_buf,
                       Py_ssize_t* exe_n) noexcept nogil:
        """A zombie leader's live thread: its dir fd, tid and exe target; -1 when none."""
        cdef DIR* tasks = open_task_list(pid_fd)
        cdef int tid, fd, found = -1
        if tasks == NULL:
            return -1
        while found < 0:
            tid = next_task(tasks, pid)
            if tid < 0:
                break
            fd = open_task(pid_fd, tid)
            if fd < 0:
                continue
            exe_n[0] = read_link(fd, b"exe", exe_buf)
            if exe_n[0] >= 0:
                task_fd[0] = fd
                task_tid[0] = tid
                found = 0
            else:
                close(fd)
        closedir(tasks)
        return found

    cdef Process read_process(self, const char* name, object want_fds):
        """Read one /proc/PID; None when it is a kernel thread, vanished or not readable."""
        cdef int pid_fd, task_fd = -1, task_tid
        cdef char stat_buf[SMALL_FILE_MAX]
        cdef char status_buf[SMALL_FILE_MAX]
        cdef char exe_buf[LINK_MAX]
        cdef char named_path[LINK_MAX + 8]
        cdef struct_stat exe_stat, named_stat
        cdef ProcStat st
        cdef Py_ssize_t stat_n = 0, status_n = 0, exe_n = 0, cmd_n = 0
        cdef Py_ssize_t suffix_len = len(DELETED_SUFFIX)
        cdef const char* suffix = DELETED_SUFFIX
        cdef long long uid = -1, threads = 1
        cdef int deleted = 0, have_exe_stat = 0, path_too_long = 0
        cdef int pid = pid_value(name)
        cdef Outcome outcome = READ_OK
        cdef Process proc
        self.big.len = 0
        with nogil:
            pid_fd = openat(self.root_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            task_fd = pid_fd
            task_tid = pid
            if pid_fd < 0:
                outcome = VANISHED
            else:
                stat_n = read_small(pid_fd, b"stat", stat_buf, SMALL_FILE_MAX)
                if stat_n <= 0 or parse_stat(stat_buf, stat_n, &st) < 0:
                    outcome = VANISHED
                elif st.flags & PF_KTHREAD:
                    outcome = KERNEL_THREAD
                else:
                    status_n = read_small(pid_fd, b"status", status_buf, SMALL_FILE_MAX)
                    if status_n > 0:
                        uid = status_number(status_buf, status_n, b"Uid:", UINT32_MAX)
                        threads = status_number(status_buf, status_n, b"Threads:", INT32_MAX)
                    if threads < 1:
                        threads = 1
                    if uid < 0:
                        outcome = VANISHED
                if outcome == READ_OK:
                    exe_n = read_link(pid_fd, b"exe", exe_buf)
                    if exe_n == -ENAMETOOLONG:
                        exe_n = 0
                        path_too_long = 1
                    elif exe_n == -ENOENT and threads > 1:
                        # a leader that exited while other threads live on
                        if self.live_task(pid_fd, pid, &task_fd, &task_tid, exe_buf,
                                          &exe_n) < 0:
                            outcome = ZOMBIE
                    elif exe_n == -ENOENT:
                        outcome = ZOMBIE
                    elif exe_n < 0:
                        outcome = NO_EXE
                if outcome == READ_OK:
                    # the file the process runs
                    have_exe_stat = fstatat(task_fd, b"exe", &exe_stat, 0) == 0
                    if have_exe_stat and exe_stat.st_nlink == 0:
                        deleted = 1
                    elif (have_exe_stat and exe_n >= suffix_len and exe_buf[0] == b'/'
                          and memcmp(exe_buf + exe_n - suffix_len, suffix, suffix_len) == 0):
                        # The suffix is only a hint: a file may be NAMED "x (deleted)", and a
                        # file kept by another hard link has links left. Deleted unless the
                        # path shown, suffix and all, names that very file in its root.
                        memcpy(named_path, b"root", 4)
                        memcpy(named_path + 4, exe_buf, exe_n)
                        named_path[exe_n + 4] = 0
                        deleted = (fstatat(pid_fd, named_path, &named_stat, 0) != 0
                                   or named_stat.st_dev != exe_stat.st_dev
                                   or named_stat.st_ino != exe_stat.st_ino)
                    if (deleted and exe_n >= suffix_len
                            and memcmp(exe_buf + exe_n - suffix_len, suffix, suffix_len) == 0):
                        exe_n -= suffix_len
                    cmd_n = read_all(task_fd, b"cmdline", &self.big, False)
                    cmd_n = normalise_cmdline(self.big.data, cmd_n) if cmd_n > 0 else 0
        if outcome != READ_OK:
            if pid_fd >= 0:
                close(pid_fd)
            if outcome == KERNEL_THREAD:
                self.stats["kernel_threads"] += 1
            elif outcome == ZOMBIE:
                self.stats["zombies"] += 1
            elif outcome == NO_EXE and (exe_n == -EACCES or exe_n == -EPERM):
                self.stats["denied"] += 1
            else:
                self.stats["vanished"] += 1
            return None
        try:
            proc = Process.__new__(Process)
            proc.pid = pid
            proc.ppid = <int>st.ppid
            proc.pgrp = <int>st.pgrp
            proc.session = <int>st.session
            proc.uid = <unsigned int>uid
            proc.start_time = st.start_time
            proc.age = self.uptime - (<double>st.start_time) / self.clock_ticks
            proc.vm_size_bytes = st.vsize
            proc.vm_rss_bytes = st.rss_pages * self.page_size
            proc.exe = self.intern(exe_buf, exe_n)
            proc.exe_deleted = deleted
            if have_exe_stat:
                proc.exe_dev = exe_stat.st_dev
                proc.exe_ino = exe_stat.st_ino
                proc.exe_uid = exe_stat.st_uid
                proc.exe_mode = exe_stat.st_mode
            else:
                proc.exe_uid = UNKNOWN_UID
            proc.cmdline = decode(self.big.data, cmd_n)
            proc.threads = <int>threads
            proc.fork_no_exec = (st.flags & PF_FORKNOEXEC) != 0
            proc.sockets = None
            proc.open_files = None
            proc.incomplete = EXE_PATH_TOO_LONG if path_too_long else ""
            if want_fds is True or (want_fds is not False and want_fds(proc)):
                self.inspect_fds(pid_fd, proc, task_fd, task_tid)
        finally:
            if task_fd != pid_fd:
                close(task_fd)
            close(pid_fd)
        self.stats["processes"] += 1
        if proc.incomplete:
            self.stats["incomplete"] += 1
        return proc


def scan(str proc_root="/proc", want_fds=True, pids=None):
    """Walk ``proc_root`` once (or only ``pids``, in that order). See
    ``ptfast.scan._procscan_py.scan`` for the contract.

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
    if pids is not None:
        names = [str(pid).encode() for pid in pids]
        for name in names:
            if is_pid_name(name):
                proc = scanner.read_process(name, want_fds)
                if proc is not None:
                    processes.append(proc)
        return processes, scanner.socket_table, scanner.stats
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
