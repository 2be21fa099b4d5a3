/* What the benchmark's C helpers (population.c, sockets.c) share: drop to a customer's uid,
 * listen on loopback, fork a child of the group, wait for the children's "ready" bytes. */
#include <arpa/inet.h>
#include <grp.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

static void drop(uid_t uid) {
    if (setgroups(0, NULL) || setresgid(uid, uid, uid) || setresuid(uid, uid, uid)) {
        perror("drop privileges");
        _exit(1);
    }
    /* setuid clears it, and a non-dumpable process hides its fds and exe from other uids */
    prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
}

/* A TCP socket listening on 127.0.0.1 at a port the kernel picks. */
static int loopback_listener(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (s < 0 || bind(s, (void *)&a, sizeof a) || listen(s, 4096)) {
        perror("listen on loopback");
        _exit(1);
    }
    return s;
}

/* Each child writes one byte to the pipe once it is set up; 0 once all ``children`` have. */
static int wait_ready(int pipe_read_end, long children) {
    char buf[4096];
    long got = 0;
    while (got < children) {
        ssize_t r = read(pipe_read_end, buf, sizeof buf);
        if (r <= 0) return -1;
        got += r;
    }
    return 0;
}

/* fork(); on failure the whole process group (this helper and its children) ends. */
static pid_t fork_or_end_group(void) {
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        kill(0, SIGTERM);
        _exit(1);
    }
    return pid;
}
