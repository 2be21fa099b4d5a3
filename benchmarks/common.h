/* What the benchmark's C helpers (population.c, sockets.c) share: drop to a customer's uid,
 * listen on loopback, fork a child of the group, wait for the children's "ready" bytes, and end
 * with the runner however it ends.
 *
 * The runner ends a helper's process group with SIGTERM. Should the runner die without doing so
 * (SIGKILL), the helper's main process gets SIGKILL too (PR_SET_PDEATHSIG), and its children,
 * which block on a lifeline pipe whose only write end the main process holds, read end-of-file
 * and exit. (The children cannot use PR_SET_PDEATHSIG: changing uid clears it.) */
#include <arpa/inet.h>
#include <errno.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
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

/* fork(); on failure the whole process group (this helper and its children) ends. The main
 * process ignores SIGTERM (see reap_children), its children do not. */
static pid_t fork_or_end_group(void) {
    signal(SIGTERM, SIG_IGN);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        kill(0, SIGTERM);
        _exit(1);
    }
    if (pid == 0) signal(SIGTERM, SIG_DFL);
    return pid;
}

/* The SIGTERM that ends the group leaves the main process alive to reap every child: orphans
 * would go to init, which may leave them as zombies for minutes, holding pids of the block. */
static int reap_children(void) {
    for (;;)
        if (wait(NULL) < 0 && errno == ECHILD) return 0;
}

static int lifeline[2] = {-1, -1};

/* In the main process, before forking; again after it changes uid (which clears the setting). */
static void end_with_runner(pid_t runner) {
    if (lifeline[0] < 0 && pipe(lifeline)) {
        perror("pipe");
        exit(1);
    }
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != runner) _exit(1);      /* the runner died before the line above */
}

/* In a child, once set up: sleep until the main process ends, accepting connections on
 * ``listener`` (unless it is -1) meanwhile. Never returns. */
static void serve_until_main_ends(int listener) {
    close(lifeline[1]);
    struct pollfd watch[2] = {{.fd = lifeline[0], .events = POLLIN}, {.fd = listener,
                                                                     .events = POLLIN}};
    for (;;) {
        if (poll(watch, listener >= 0 ? 2 : 1, -1) < 0 && errno != EINTR) _exit(1);
        if (watch[0].revents) _exit(0);
        if (listener >= 0 && watch[1].revents) accept(listener, NULL, NULL);
    }
}
