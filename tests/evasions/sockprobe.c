/* Kernel facts for a fix (tests/test_kernel_facts.py): what can be learned about a socket fd of
 * another process without any table. Prints one JSON object.
 *
 *   sockprobe PID FD [thread]
 *
 * pidfd_open(PID) (with PIDFD_THREAD when "thread": PID is then a thread id, whose own fd
 * table is used), pidfd_getfd(FD), then fstat, SO_DOMAIN/SO_TYPE/SO_PROTOCOL/SO_ACCEPTCONN,
 * getsockname, getpeername, TCP_INFO's state, and SIOCGSKNS: the socket's network namespace,
 * compared with the prober's own. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#ifndef PIDFD_THREAD
#define PIDFD_THREAD O_EXCL
#endif

static int option(int fd, int level, int name)
{
    int value = -1;
    socklen_t len = sizeof value;
    return getsockopt(fd, level, name, &value, &len) < 0 ? -errno : value;
}

static void print_address(const char *key, int fd, int peer)
{
    struct sockaddr_storage addr;
    socklen_t len = sizeof addr;
    char text[INET6_ADDRSTRLEN] = "";
    int rc = peer ? getpeername(fd, (struct sockaddr *)&addr, &len)
                  : getsockname(fd, (struct sockaddr *)&addr, &len);
    if (rc < 0) {
        printf(", \"%s_errno\": %d", key, errno);
        return;
    }
    int port = -1;
    if (addr.ss_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&addr;
        inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
        port = ntohs(in->sin_port);
    } else if (addr.ss_family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&addr;
        inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
        port = ntohs(in6->sin6_port);
    }
    printf(", \"%s\": {\"family\": %d, \"ip\": \"%s\", \"port\": %d}", key, addr.ss_family, text,
           port);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: sockprobe PID FD [thread]\n");
        return 111;
    }
    int pid = atoi(argv[1]), target_fd = atoi(argv[2]);
    unsigned flags = argc > 3 && strcmp(argv[3], "thread") == 0 ? PIDFD_THREAD : 0;
    char path[64], name[64];
    snprintf(path, sizeof path, "/proc/%d/fd/%d", pid, target_fd);
    ssize_t name_len = getxattr(path, "system.sockprotoname", name, sizeof name - 1);
    printf("{\"pid\": %d, \"fd\": %d", pid, target_fd);
    if (name_len >= 0) {
        name[name_len] = 0;
        printf(", \"sockprotoname\": \"%s\"", name);
    } else {
        printf(", \"sockprotoname_errno\": %d", errno);
    }
    int pidfd = (int)syscall(SYS_pidfd_open, pid, flags);
    if (pidfd < 0) {
        printf(", \"pidfd_open_errno\": %d}\n", errno);
        return 0;
    }
    int fd = (int)syscall(SYS_pidfd_getfd, pidfd, target_fd, 0);
    if (fd < 0) {
        printf(", \"pidfd_getfd_errno\": %d}\n", errno);
        return 0;
    }
    struct stat file_stat;
    fstat(fd, &file_stat);
    printf(", \"inode\": %llu, \"is_socket\": %s", (unsigned long long)file_stat.st_ino,
           S_ISSOCK(file_stat.st_mode) ? "true" : "false");
    printf(", \"domain\": %d, \"type\": %d, \"protocol\": %d, \"accepting\": %d",
           option(fd, SOL_SOCKET, SO_DOMAIN), option(fd, SOL_SOCKET, SO_TYPE),
           option(fd, SOL_SOCKET, SO_PROTOCOL), option(fd, SOL_SOCKET, SO_ACCEPTCONN));
    print_address("local", fd, 0);
    print_address("remote", fd, 1);
    struct tcp_info info;
    socklen_t info_len = sizeof info;
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &info_len) == 0)
        printf(", \"tcp_state\": %d", info.tcpi_state);
    int netns = ioctl(fd, SIOCGSKNS);
    struct stat ns_stat, own_stat;
    if (netns >= 0 && fstat(netns, &ns_stat) == 0 && stat("/proc/self/ns/net", &own_stat) == 0)
        printf(", \"netns\": %llu, \"own_netns\": %s", (unsigned long long)ns_stat.st_ino,
               ns_stat.st_ino == own_stat.st_ino ? "true" : "false");
    else
        printf(", \"netns_errno\": %d", errno);
    printf("}\n");
    return 0;
}
