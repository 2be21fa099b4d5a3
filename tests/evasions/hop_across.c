/* Issue 20.5: a listener created by one account and handed from young process to young
 * process of OTHER accounts. argv: CREATOR_UID PERIOD_MS HOLDER_UID... A process of CREATOR_UID
 * creates the listener, passes it (SCM_RIGHTS) to this root helper and exits; the helper then
 * forks one holder after another, each of the next HOLDER_UID in turn (round robin), each
 * living PERIOD_MS and passing the listener back (SCM_RIGHTS) for the next. The helper holds it
 * only between two holders. Each holder prints {"holder": PID, "uid": UID}; the first line also
 * has the creator's pid and the port. */
#include "evasion.h"
#include <sys/wait.h>

static void send_fd(int channel, int fd)
{
    char byte = 0;
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    union { struct cmsghdr header; char space[CMSG_SPACE(sizeof(int))]; } control;
    struct msghdr message = {.msg_iov = &iov, .msg_iovlen = 1,
                             .msg_control = control.space, .msg_controllen = sizeof control.space};
    struct cmsghdr *header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(header), &fd, sizeof(int));
    if (sendmsg(channel, &message, 0) < 0)
        die("sendmsg");
}

/* The fd passed over ``channel``, or -1 when the other end closed without passing one. */
static int receive_fd(int channel)
{
    char byte;
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    union { struct cmsghdr header; char space[CMSG_SPACE(sizeof(int))]; } control;
    struct msghdr message = {.msg_iov = &iov, .msg_iovlen = 1,
                             .msg_control = control.space, .msg_controllen = sizeof control.space};
    ssize_t got;
    do
        got = recvmsg(channel, &message, MSG_CMSG_CLOEXEC);
    while (got < 0 && errno == EINTR);
    if (got <= 0)
        return -1;
    struct cmsghdr *header = CMSG_FIRSTHDR(&message);
    if (header == NULL || header->cmsg_type != SCM_RIGHTS)
        return -1;
    int fd;
    memcpy(&fd, CMSG_DATA(header), sizeof(int));
    return fd;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s CREATOR_UID PERIOD_MS HOLDER_UID...\n", argv[0]);
        return 111;
    }
    uid_t creator = uid_argument(argc, argv);
    int period_ms = atoi(argv[2]);
    int holders = argc - 3;
    int channel[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, channel) < 0)
        die("socketpair");
    pid_t creator_pid = fork();
    if (creator_pid < 0)
        die("fork");
    if (creator_pid == 0) {
        drop_to(creator);
        send_fd(channel[1], tcp_listener(0, 0));
        _exit(0);
    }
    close(channel[1]);
    int listener = receive_fd(channel[0]);
    close(channel[0]);
    waitpid(creator_pid, NULL, 0);
    if (listener < 0)
        die("the creator passed no listener");
    int port = local_port(listener);
    for (long turn = 0;; turn++) {
        uid_t uid = (uid_t)strtoul(argv[3 + turn % holders], NULL, 10);
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, channel) < 0)
            die("socketpair");
        pid_t holder = fork();
        if (holder < 0)
            die("fork");
        if (holder == 0) {          /* inherits the listener */
            close(channel[0]);
            drop_to(uid);
            if (turn == 0)
                ready("{\"pid\": %d, \"creator\": %d, \"port\": %d, \"holder\": %d, \"uid\": %u}",
                      getppid(), creator_pid, port, getpid(), uid);
            else
                ready("{\"holder\": %d, \"uid\": %u}", getpid(), uid);
            int done = stdin_closed(period_ms);
            if (!done)
                send_fd(channel[1], listener);
            _exit(0);
        }
        close(channel[1]);
        close(listener);            /* the holder has it now */
        listener = receive_fd(channel[0]);
        close(channel[0]);
        waitpid(holder, NULL, 0);
        if (listener < 0)           /* stdin closed: the test is over */
            return 0;
    }
}
