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

# -- NETLINK_SOCK_DIAG: the own network namespace's tcp/udp tables -------------------------
cdef extern from "<sys/socket.h>" nogil:
    int AF_NETLINK
    int SOCK_RAW
    int SOCK_CLOEXEC
    int MSG_TRUNC
    struct sockaddr:
        pass
    int socket(int domain, int type, int protocol)
    ssize_t sendto(int sockfd, const void *buf, size_t len, int flags,
                   const sockaddr *dest_addr, unsigned int addrlen)
    ssize_t recv(int sockfd, void *buf, size_t len, int flags)

cdef extern from "<linux/netlink.h>" nogil:
    int NETLINK_SOCK_DIAG
    int NLM_F_REQUEST
    int NLM_F_DUMP
    int NLMSG_ERROR
    int NLMSG_DONE
    int NLMSG_HDRLEN
    unsigned int NLMSG_ALIGN(unsigned int length)
    struct nlmsghdr:
        unsigned int nlmsg_len
        unsigned short nlmsg_type
        unsigned short nlmsg_flags
        unsigned int nlmsg_seq
        unsigned int nlmsg_pid
    struct sockaddr_nl:
        unsigned short nl_family
        unsigned int nl_pid
        unsigned int nl_groups

cdef extern from "<linux/sock_diag.h>" nogil:
    int SOCK_DIAG_BY_FAMILY

cdef extern from "<linux/inet_diag.h>" nogil:
    struct inet_diag_sockid:
        unsigned short idiag_sport      # network byte order
        unsigned short idiag_dport
        unsigned int idiag_src[4]       # network byte order; IPv4 in the first word
        unsigned int idiag_dst[4]
    struct inet_diag_req_v2:
        unsigned char sdiag_family
        unsigned char sdiag_protocol
        unsigned int idiag_states
        inet_diag_sockid id
    struct inet_diag_msg:
        unsigned char idiag_family
        unsigned char idiag_state
        inet_diag_sockid id
        unsigned int idiag_uid
        unsigned int idiag_inode

cdef extern from "<arpa/inet.h>" nogil:
    unsigned short ntohs(unsigned short value)
