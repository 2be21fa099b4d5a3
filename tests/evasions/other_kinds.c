/* Evasion 8: sockets of kinds that are in no table ptfast reads.
 *
 *   other_kinds UID udplite     UDP-Lite bound on 127.0.0.1 (/proc/net/udplite)
 *   other_kinds UID ping        ICMP ping socket bound on 127.0.0.1 (/proc/net/icmp); needs
 *                               net.ipv4.ping_group_range to hold the uid's group
 *   other_kinds UID ping6       the same over IPv6 on ::1 (/proc/net/icmp6)
 *   other_kinds UID ping80      a ping socket bound on 127.0.0.1 with echo identifier 80,
 *                               which /proc/net/icmp shows in its port column
 *   other_kinds UID vsock       an AF_VSOCK stream socket: a family in no table and none the
 *                               probe reads addresses of; exits 112 when the kernel has none
 *   other_kinds UID xdp         an AF_XDP socket, made as root (it needs CAP_NET_RAW) and kept
 *                               after dropping to the uid; exits 112 when the kernel has none
 *   other_kinds UID packet      a packet socket (/proc/net/packet), made as root (it needs
 *                               CAP_NET_RAW) and kept after dropping to the uid
 *   other_kinds UID netns-tcp   a TCP listener made in a throwaway network namespace, then
 *                               held back in the host's (made as root: unshare and setns)
 *   other_kinds UID userns-tcp  the same without root: a child unshares a user and a network
 *                               namespace, makes the listener and passes it to its parent
 *                               over a unix socket (SCM_RIGHTS); exits 112 when unprivileged
 *                               user namespaces are not allowed */
#include "evasion.h"
#include <fcntl.h>
#include <linux/if_ether.h>
#include <netinet/ip_icmp.h>
#include <netpacket/packet.h>
#include <sched.h>
#include <sys/wait.h>

#ifndef IPPROTO_UDPLITE
#define IPPROTO_UDPLITE 136
#endif

#ifndef AF_XDP
#define AF_XDP 44
#endif

/* A datagram socket of ``protocol`` bound on the loopback address of ``family``, with ``port``
 * (0: any; for a ping socket, the echo identifier). */
static int bound(int family, int protocol, int port)
{
    struct sockaddr_in v4 = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                             .sin_port = htons(port)};
    struct sockaddr_in6 v6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT,
                              .sin6_port = htons(port)};
    int fd = socket(family, SOCK_DGRAM, protocol);
    if (fd < 0)
        die("socket");
    if (family == AF_INET ? bind(fd, (struct sockaddr *)&v4, sizeof v4)
                          : bind(fd, (struct sockaddr *)&v6, sizeof v6))
        die("bind");
    return fd;
}

static int listener_in_throwaway_netns(void)
{
    int host = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (host < 0)
        die("open /proc/self/ns/net");
    if (unshare(CLONE_NEWNET) < 0)
        die("unshare(CLONE_NEWNET)");
    int listener = tcp_listener(0, 0);   /* loopback is down there, but listen() works */
    if (setns(host, CLONE_NEWNET) < 0)
        die("setns");
    close(host);
    return listener;
}

/* One byte that carries one fd (SCM_RIGHTS): what both ends of the hand-over use. */
struct fd_message {
    char byte;
    struct iovec data;
    union {
        struct cmsghdr header;
        char space[CMSG_SPACE(sizeof(int))];
    } control;
    struct msghdr message;
};

static struct msghdr *fd_message(struct fd_message *m)
{
    memset(m, 0, sizeof *m);
    m->data.iov_base = &m->byte;
    m->data.iov_len = 1;
    m->message.msg_iov = &m->data;
    m->message.msg_iovlen = 1;
    m->message.msg_control = m->control.space;
    m->message.msg_controllen = sizeof m->control.space;
    return &m->message;
}

static void send_fd(int channel, int fd)
{
    struct fd_message m;
    struct msghdr *message = fd_message(&m);
    struct cmsghdr *header = CMSG_FIRSTHDR(message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(header), &fd, sizeof(int));
    if (sendmsg(channel, message, 0) < 0)
        die("sendmsg");
}

static int receive_fd(int channel)
{
    struct fd_message m;
    struct msghdr *message = fd_message(&m);
    int fd;
    if (recvmsg(channel, message, 0) <= 0)
        return -1;
    struct cmsghdr *header = CMSG_FIRSTHDR(message);
    if (!header || header->cmsg_type != SCM_RIGHTS)
        return -1;
    memcpy(&fd, CMSG_DATA(header), sizeof(int));
    return fd;
}

/* A socket of a family the kernel may lack: exits 112 when it does. */
static int socket_of_family(int family, int type)
{
    int fd = socket(family, type | SOCK_CLOEXEC, 0);
    if (fd < 0 && (errno == EAFNOSUPPORT || errno == EPROTONOSUPPORT)) {
        fprintf(stderr, "socket(family %d): %s\n", family, strerror(errno));
        exit(112);
    }
    if (fd < 0)
        die("socket");
    return fd;
}

/* What any user may do where unprivileged user namespaces are allowed. */
static int listener_from_unprivileged_netns(void)
{
    int channel[2];
    if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, channel) < 0)
        die("socketpair");
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        if (unshare(CLONE_NEWUSER | CLONE_NEWNET) < 0) {
            fprintf(stderr, "unshare(CLONE_NEWUSER|CLONE_NEWNET): %s\n", strerror(errno));
            _exit(112);
        }
        send_fd(channel[1], tcp_listener(0, 0));
        _exit(0);
    }
    close(channel[1]);
    int listener = receive_fd(channel[0]);
    int status;
    waitpid(pid, &status, 0);
    if (listener < 0)
        exit(WIFEXITED(status) ? WEXITSTATUS(status) : 111);
    close(channel[0]);
    return listener;
}

int main(int argc, char **argv)
{
    uid_t uid = uid_argument(argc, argv);
    const char *kind = argc > 2 ? argv[2] : "";
    int fd;
    if (strcmp(kind, "packet") == 0) {
        fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
        if (fd < 0)
            die("socket(AF_PACKET)");
        drop_to(uid);
    } else if (strcmp(kind, "xdp") == 0) {
        fd = socket_of_family(AF_XDP, SOCK_RAW);
        drop_to(uid);
    } else if (strcmp(kind, "netns-tcp") == 0) {
        fd = listener_in_throwaway_netns();
        drop_to(uid);
    } else if (strcmp(kind, "userns-tcp") == 0) {
        drop_to(uid);
        fd = listener_from_unprivileged_netns();
    } else {
        drop_to(uid);
        if (strcmp(kind, "udplite") == 0)
            fd = bound(AF_INET, IPPROTO_UDPLITE, 0);
        else if (strcmp(kind, "ping") == 0)
            fd = bound(AF_INET, IPPROTO_ICMP, 0);
        else if (strcmp(kind, "ping80") == 0)
            fd = bound(AF_INET, IPPROTO_ICMP, 80);
        else if (strcmp(kind, "ping6") == 0)
            fd = bound(AF_INET6, IPPROTO_ICMPV6, 0);
        else if (strcmp(kind, "vsock") == 0)
            fd = socket_of_family(AF_VSOCK, SOCK_STREAM);
        else {
            fprintf(stderr, "unknown kind %s\n", kind);
            return 111;
        }
    }
    int port = (strcmp(kind, "packet") == 0 || strcmp(kind, "vsock") == 0
                || strcmp(kind, "xdp") == 0) ? 0 : local_port(fd);
    ready("{\"pid\": %d, \"fd\": %d, \"port\": %d}", getpid(), fd, port);
    stdin_closed(-1);
    return 0;
}
