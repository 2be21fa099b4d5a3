# C declarations used by the compiled scanner core (_procscan.pyx).
# Everything here is POSIX/Linux libc; only what the core calls is declared.

cdef extern from "<fcntl.h>" nogil:
    int O_RDONLY
    int O_DIRECTORY
    int O_CLOEXEC
    int openat(int dirfd, const char *pathname, int flags)

cdef extern from "<unistd.h>" nogil:
    ctypedef long ssize_t
    ssize_t read(int fd, void *buf, size_t count)
    ssize_t readlinkat(int dirfd, const char *pathname, char *buf, size_t bufsiz)
    int close(int fd)
    long sysconf(int name)
    int _SC_CLK_TCK
    int _SC_PAGESIZE

cdef extern from "<dirent.h>" nogil:
    ctypedef struct DIR:
        pass
    struct dirent:
        unsigned char d_type
        char d_name[256]
    DIR *fdopendir(int fd)
    dirent *readdir(DIR *dirp)
    int closedir(DIR *dirp)
    int dirfd(DIR *dirp)

cdef extern from "<sys/stat.h>" nogil:
    # statx (glibc 2.28), not fstatat: since glibc 2.33 fstatat links to fstatat64@GLIBC_2.33,
    # so a core built on a newer system would not load on EL8 (glibc 2.28, manylinux_2_28).
    # glibc falls back to fstatat itself on a kernel without the statx system call.
    cdef struct statx_buf "statx":
        unsigned int stx_nlink
    unsigned int STATX_NLINK
    int statx(int dirfd, const char *pathname, int flags, unsigned int mask, statx_buf *buf)

cdef extern from "<arpa/inet.h>" nogil:
    int AF_INET
    int AF_INET6
    const char *inet_ntop(int af, const void *src, char *dst, unsigned int size)

cdef extern from "<errno.h>" nogil:
    int errno
    int EINTR
    int EACCES
    int EPERM
