/* Socket-heavy host: listening, established and TIME_WAIT TCP sockets on loopback.
 *
 * usage: sockets LISTENING ESTABLISHED HOLDERS BASE_UID UIDS
 * HOLDERS processes, holder i of uid BASE_UID + i % UIDS, hold LISTENING listening sockets and
 * ESTABLISHED established ones (both ends of ESTABLISHED / 2 connections, each between two
 * sockets of the same holder) on 127.0.0.1. This process then drops to BASE_UID and makes
 * TIME_WAIT sockets: on each line "fill N" read from its standard input it opens and closes
 * loopback connections until /proc/net/sockstat counts N sockets in TIME_WAIT, and prints
 * "filled TW" (fewer than N when the count stops growing, e.g. at net.ipv4.tcp_max_tw_buckets).
 * Prints "ready PID" once the holders are set up. SIGTERM to the process group ends all; so
 * does the end of the process that started it (see common.h).
 *
 * TIME_WAIT stays with the side that closes first, so the client closes before the server. A
 * TIME_WAIT socket lasts 60 s (TCP_TIMEWAIT_LEN, not tunable), hence the refill on demand. Each
 * client binds a source address of 127.1.0.0/16 with IP_BIND_ADDRESS_NO_PORT, so the kernel picks
 * its port per 4-tuple: no 4-tuple repeats within 60 s (which would let tcp_tw_reuse recycle a
 * TIME_WAIT socket) and net.ipv4.ip_local_port_range need not change.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

/* A client socket connected to ``to`` and the accepted server end. */
static void connect_pair(int to, const struct sockaddr_in *from, int *client, int *server) {
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    int one = 1;
    getsockname(to, (void *)&a, &len);
    *client = socket(AF_INET, SOCK_STREAM, 0);
    if (*client < 0) {
        perror("socket");
        _exit(1);
    }
    if (from) {
        setsockopt(*client, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(*client, (const void *)from, sizeof *from)) {
            perror("bind source address");
            _exit(1);
        }
    }
    if (connect(*client, (void *)&a, sizeof a) || (*server = accept(to, NULL, NULL)) < 0) {
        perror("connect");
        _exit(1);
    }
}

static long time_wait_count(void) {
    char buf[4096];
    int fd = open("/proc/net/sockstat", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    if (fd >= 0) close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    char *tw = strstr(buf, " tw ");
    return tw ? atol(tw + 4) : -1;
}

static void hold(int listening, int connections) {
    int *listeners = calloc(listening, sizeof(int));
    for (int i = 0; i < listening; i++) listeners[i] = loopback_listener();
    for (int i = 0; i < connections; i++) {
        int client, server;
        connect_pair(listeners[i % listening], NULL, &client, &server);
    }
}

static void make_time_wait(void) {
    int to = loopback_listener();
    unsigned long made = 0;
    char line[128];
    while (fgets(line, sizeof line, stdin)) {
        long want = strncmp(line, "fill ", 5) == 0 ? atol(line + 5) : -1;
        if (want < 0) continue;
        long count = time_wait_count(), before = -1;
        while (count < want && count > before) {     /* stop when a batch adds nothing */
            before = count;
            for (long i = 0; i < (want - count < 1000 ? want - count : 1000); i++, made++) {
                struct sockaddr_in from = {.sin_family = AF_INET};
                /* 127.1.0.1 .. 127.1.254.254 */
                from.sin_addr.s_addr = htonl(0x7f010000 | ((made / 254 % 254 + 1) << 8) |
                                             (made % 254 + 1));
                int client, server;
                connect_pair(to, &from, &client, &server);
                close(client);
                close(server);
            }
            count = time_wait_count();
        }
        printf("filled %ld\n", count);
        fflush(stdout);
    }
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: sockets LISTENING ESTABLISHED HOLDERS BASE_UID UIDS\n");
        return 2;
    }
    int listening = atoi(argv[1]), connections = atoi(argv[2]) / 2, holders = atoi(argv[3]);
    int base = atoi(argv[4]), uids = atoi(argv[5]);
    if (holders < 1 || listening < holders || uids < 1) {
        fprintf(stderr, "sockets: need 1 <= HOLDERS <= LISTENING and UIDS >= 1\n");
        return 2;
    }
    int ready[2];
    if (pipe(ready)) return 1;
    pid_t runner = getppid();
    setpgid(0, 0);
    end_with_runner(runner);
    for (int i = 0; i < holders; i++) {
        pid_t pid = fork_or_end_group();
        if (pid == 0) {
            close(ready[0]);
            drop(base + i % uids);
            /* spread the remainders so that the totals are exact */
            hold(listening / holders + (i < listening % holders),
                 connections / holders + (i < connections % holders));
            if (write(ready[1], "x", 1) != 1) _exit(1);
            serve_until_main_ends(-1);
        }
    }
    close(ready[1]);
    if (wait_ready(ready[0], holders)) return 1;
    signal(SIGCHLD, SIG_IGN);        /* the holders only end when killed: the kernel reaps them */
    drop(base);
    end_with_runner(runner);
    printf("ready %d\n", getpid());
    fflush(stdout);
    make_time_wait();
    return 0;
}
