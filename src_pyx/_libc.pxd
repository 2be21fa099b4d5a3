# C declarations the compiled scanner core (_procscan.pyx) needs and Cython's own libc/posix
# declarations lack. Everything else is cimported from libc.* and posix.*.

cdef extern from "<unistd.h>" nogil:
    ssize_t readlinkat(int dirfd, const char *pathname, char *buf, size_t bufsiz)
    long syscall(long number, ...)

cdef extern from "<sys/syscall.h>" nogil:
    long SYS_kcmp            # kcmp(2) has no libc wrapper

cdef extern from "<dirent.h>" nogil:
    ctypedef struct DIR:
        pass
    struct dirent:
        char d_name[256]
    DIR *fdopendir(int fd)
    dirent *readdir(DIR *dirp)
    int closedir(DIR *dirp)

cdef extern from "<arpa/inet.h>" nogil:
    int AF_INET
    int AF_INET6
    int INET6_ADDRSTRLEN
    const char *inet_ntop(int af, const void *src, char *dst, unsigned int size)
