# C declarations the compiled scanner core (_procscan.pyx) needs and Cython's own libc/posix
# declarations lack. Everything else is cimported from libc.* and posix.*.

from posix.stat cimport struct_stat

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

cdef extern from * nogil:
    """
    #include <sys/stat.h>
    #include <sys/syscall.h>
    #include <unistd.h>
    /* fstatat() as the system call: since glibc 2.33 the libc function links to the new
       symbol fstatat64@GLIBC_2.33, which keeps a core built on a newer system from loading
       on EL8 (glibc 2.28, manylinux_2_28). On 64-bit Linux (x86_64, aarch64) the kernel's
       struct stat is libc's. */
    static int ptfast_fstatat(int dirfd, const char *path, struct stat *buf, int flags) {
        return (int)syscall(SYS_newfstatat, dirfd, path, buf, flags);
    }
    """
    int fstatat "ptfast_fstatat"(int dirfd, const char *pathname, struct_stat *buf, int flags)

cdef extern from "<string.h>" nogil:
    void *memrchr(const void *s, int c, size_t n)      # a GNU extension Cython does not declare
