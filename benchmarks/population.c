/* Benchmark population: N real sleeping processes over many uids.
 *
 * usage: population N UIDS BASE_UID
 * Every child drops to uid BASE_UID + i % UIDS, opens a few files and a pipe, then sleeps.
 * 1% listen on a loopback TCP port and accept; 10% hold an established connection to one of
 * them. Prints "ready PID" once every child is set up. SIGTERM to the process group ends all;
 * so does the end of the process that started it (see common.h).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"


static void common_fds(void) {
    int fds[2];
    open("/etc/hostname", O_RDONLY);
    open("/etc/passwd", O_RDONLY);
    open("/dev/null", O_RDWR);
    if (pipe(fds)) perror("pipe");
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: population N UIDS BASE_UID\n");
        return 2;
    }
    int n = atoi(argv[1]), uids = atoi(argv[2]), base = atoi(argv[3]);
    int listeners = n / 100 > 0 ? n / 100 : 1;
    int clients = n / 10;
    int *ports = calloc(listeners, sizeof(int));
    int ready[2];
    if (pipe(ready)) return 1;
    setpgid(0, 0);
    end_with_runner(getppid());
    for (int i = 0; i < n; i++) {
        int port_pipe[2] = {-1, -1};
        int listener = i < listeners;
        if (listener && pipe(port_pipe)) return 1;
        pid_t pid = fork_or_end_group();
        if (pid == 0) {
            close(ready[0]);
            uid_t uid = base + i % uids;
            common_fds();
            if (listener) {
                int s = loopback_listener();
                struct sockaddr_in a;
                socklen_t len = sizeof a;
                getsockname(s, (void *)&a, &len);
                int port = ntohs(a.sin_port);
                if (write(port_pipe[1], &port, sizeof port) != sizeof port) _exit(1);
                drop(uid);
                if (write(ready[1], "x", 1) != 1) _exit(1);
                serve_until_main_ends(s);
            }
            if (i >= listeners && i < listeners + clients) {
                int s = socket(AF_INET, SOCK_STREAM, 0);
                struct sockaddr_in a = {.sin_family = AF_INET};
                a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
                a.sin_port = htons(ports[i % listeners]);
                if (connect(s, (void *)&a, sizeof a)) perror("connect");
            }
            drop(uid);
            if (write(ready[1], "x", 1) != 1) _exit(1);
            serve_until_main_ends(-1);
        }
        if (listener) {
            close(port_pipe[1]);
            if (read(port_pipe[0], &ports[i], sizeof(int)) != sizeof(int)) return 1;
            close(port_pipe[0]);
        }
    }
    close(ready[1]);
    if (wait_ready(ready[0], n)) return 1;
    printf("ready %d\n", getpid());
    fflush(stdout);
    return reap_children();
}
