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
    ctypedef unsigned long nlink_t
    cdef struct stat:
        nlink_t st_nlink
    int fstatat(int dirfd, const char *pathname, stat *statbuf, int flags)

cdef extern from "<arpa/inet.h>" nogil:
    int AF_INET
    int AF_INET6
    const char *inet_ntop(int af, const void *src, char *dst, unsigned int size)

cdef extern from "<errno.h>" nogil:
    int errno
    int EINTR
    int EACCES
    int EPERM
