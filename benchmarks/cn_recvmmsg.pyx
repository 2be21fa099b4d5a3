# cython: language_level=3, boundscheck=False, wraparound=False
"""A compiled twin of ptfast.scan.procevents.ProcEvents.read, for benchmarks/live.py only:
recvmmsg() takes up to 64 datagrams per system call and C parses them (believing, like it,
only the kernel's). It reads the socket
that a ProcEvents opened (which did the listen request) and keeps the same counters."""

from libc.stdint cimport int32_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy

from ptfast.scan.procevents import Event

cdef extern from "<sys/uio.h>":
    struct iovec:
        void *iov_base
        size_t iov_len

cdef extern from "<sys/socket.h>":
    struct msghdr:
        void *msg_name
        unsigned int msg_namelen
        iovec *msg_iov
        size_t msg_iovlen
        void *msg_control
        size_t msg_controllen
        int msg_flags
    struct mmsghdr:
        msghdr msg_hdr
        unsigned int msg_len
    int recvmmsg(int fd, mmsghdr *vec, unsigned int vlen, int flags, void *timeout) nogil
    int MSG_DONTWAIT

cdef extern from "<linux/netlink.h>":
    struct sockaddr_nl:
        unsigned short nl_family
        uint32_t nl_pid
        uint32_t nl_groups

cdef extern from "<errno.h>":
    int errno
    int EAGAIN, ENOBUFS, EINTR

DEF BATCH = 64
DEF DATAGRAM = 512
DEF CPUS = 8192

cdef uint32_t read_u32(const unsigned char *p, int at):
    cdef uint32_t v
    memcpy(&v, p + at, 4)
    return v

cdef int32_t read_i32(const unsigned char *p, int at):
    cdef int32_t v
    memcpy(&v, p + at, 4)
    return v

cdef class CompiledRead:
    cdef unsigned char buffers[BATCH][DATAGRAM]
    cdef mmsghdr headers[BATCH]
    cdef iovec vectors[BATCH]
    cdef sockaddr_nl senders[BATCH]
    cdef uint32_t next_seq[CPUS]
    cdef unsigned char seen[CPUS]
    cdef object owner
    cdef int fd
    cdef bint numbered

    def __init__(self, owner):
        """``owner``: the ProcEvents whose socket and counters this reads into."""
        self.owner = owner
        self.fd = owner.fileno()
        self.numbered = owner.acknowledgements_numbered
        cdef int i
        for i in range(BATCH):
            self.vectors[i].iov_base = self.buffers[i]
            self.vectors[i].iov_len = DATAGRAM
            self.headers[i].msg_hdr.msg_name = &self.senders[i]
            self.headers[i].msg_hdr.msg_namelen = sizeof(sockaddr_nl)
            self.headers[i].msg_hdr.msg_iov = &self.vectors[i]
            self.headers[i].msg_hdr.msg_iovlen = 1
            self.headers[i].msg_hdr.msg_control = NULL
            self.headers[i].msg_hdr.msg_controllen = 0
            self.headers[i].msg_hdr.msg_flags = 0
        for i in range(CPUS):
            self.seen[i] = 0

    def read(self, int limit=4096):
        cdef list events = []
        cdef int got, i, size
        cdef uint32_t what, cpu, seq, skipped
        cdef uint64_t stamp
        cdef const unsigned char *p
        cdef long gaps = 0, missed = 0, overruns = 0
        new = tuple.__new__
        while len(events) < limit:
            for i in range(BATCH):      # the kernel shortens it to what it wrote
                self.headers[i].msg_hdr.msg_namelen = sizeof(sockaddr_nl)
            got = recvmmsg(self.fd, self.headers, BATCH, MSG_DONTWAIT, NULL)
            if got < 0:
                if errno == ENOBUFS:
                    overruns += 1
                    continue
                if errno == EINTR:
                    continue
                break
            for i in range(got):
                size = self.headers[i].msg_len
                p = self.buffers[i]
                if (size < 52 or self.senders[i].nl_pid != 0 or read_u32(p, 16) != 1
                        or read_u32(p, 20) != 1):
                    continue
                seq = read_u32(p, 24)
                what = read_u32(p, 36)
                cpu = read_u32(p, 40)
                if what == 0 and not self.numbered:
                    continue
                if cpu < CPUS:
                    if self.seen[cpu] and seq != self.next_seq[cpu]:
                        skipped = seq - self.next_seq[cpu]
                        if skipped < 0x80000000u:
                            gaps += 1
                            missed += skipped
                    self.seen[cpu] = 1
                    self.next_seq[cpu] = seq + 1
                memcpy(&stamp, p + 44, 8)
                if what == 1:
                    events.append(new(Event, (1, read_i32(p, 60), read_i32(p, 64),
                                              read_i32(p, 52), read_i32(p, 56), -1, -1, stamp)))
                elif what == 2:
                    events.append(new(Event, (2, read_i32(p, 52), read_i32(p, 56), 0, 0, -1, -1,
                                              stamp)))
                elif what == 4:
                    events.append(new(Event, (4, read_i32(p, 52), read_i32(p, 56), 0, 0,
                                              read_u32(p, 60), read_u32(p, 64), stamp)))
                elif what == 0x80000000u:
                    if size >= 76:
                        events.append(new(Event, (0x80000000, read_i32(p, 52), read_i32(p, 56),
                                                  read_i32(p, 68), read_i32(p, 72), -1, -1,
                                                  stamp)))
                    else:
                        events.append(new(Event, (0x80000000, read_i32(p, 52), read_i32(p, 56),
                                                  0, 0, -1, -1, stamp)))
            if got < BATCH:
                break
        owner = self.owner
        if gaps or overruns:
            owner.gaps += gaps
            owner.missed += missed
            owner.overruns += overruns
            owner.resync_needed = True
        owner.received += len(events)
        return events
