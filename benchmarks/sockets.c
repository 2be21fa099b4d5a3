/* Socket-heavy host: listening, established and TIME_WAIT TCP sockets on loopback.
 *
 * usage: sockets LISTENING ESTABLISHED HOLDERS BASE_UID UIDS
 * HOLDERS processes, holder i of uid BASE_UID + i % UIDS, hold LISTENING listening sockets and
 * ESTABLISHED established ones (both ends of ESTABLISHED / 2 connections, each between two
 * sockets of the same holder) on 127.0.0.1. This process then drops to BASE_UID and makes
 * TIME_WAIT sockets: on each line "fill N SECONDS" read from its standard input it opens and
 * closes loopback connections until N of those it made will still be in TIME_WAIT in SECONDS,
 * and prints "filled TW", TW being /proc/net/sockstat's count of TIME_WAIT sockets (it stops
 * short of net.ipv4.tcp_max_tw_buckets, beyond which the kernel makes none).
 * Prints "ready PID" once the holders are set up. SIGTERM to the process group, then the end of
 * its standard input, ends all; so does the end of the process that started it (see common.h).
 *
 * TIME_WAIT stays with the side that closes first, so the client closes before the server. A
 * TIME_WAIT socket lasts 60 s (TCP_TIMEWAIT_LEN, not tunable), hence the refill on demand; it
 * looks ahead so that the count stays at N or more during a measurement (more at its start when
 * earlier batches are about to expire). Each client binds a source address of 127.1.0.0/16 with
 * IP_BIND_ADDRESS_NO_PORT, so the kernel picks its port per 4-tuple: no 4-tuple repeats within
 * 60 s (tcp_tw_reuse would recycle a TIME_WAIT socket for it) and net.ipv4.ip_local_port_range
 * need not change.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
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

/* A number from /proc (sockstat's "tw", or a sysctl); -1 if unreadable. */
static long proc_number(const char *path, const char *after) {
    char buf[4096];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    if (fd >= 0) close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    char *at = after ? strstr(buf, after) : buf;
    return at ? atol(at + (after ? strlen(after) : 0)) : -1;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void hold(int listening, int connections) {
    int *listeners = calloc(listening, sizeof(int));
    for (int i = 0; i < listening; i++) listeners[i] = loopback_listener();
    for (int i = 0; i < connections; i++) {
        int client, server;
        connect_pair(listeners[i % listening], NULL, &client, &server);
    }
}

/* TIME_WAIT sockets this process made, batch by batch, to know how many are still alive at a
 * given time (each lives TIME_WAIT_SECONDS) without asking the kernel. */
#define TIME_WAIT_SECONDS 60.0
static struct batch { double made_at; long sockets; } *batches;
static size_t nbatches, batches_cap;

static long alive_at(double when) {
    long alive = 0;
    for (size_t i = 0; i < nbatches; i++)
        if (batches[i].made_at > when - TIME_WAIT_SECONDS) alive += batches[i].sockets;
    return alive;
}

/* "fill N SECONDS": make TIME_WAIT sockets until N of ours will still be alive SECONDS from now,
 * so that a measurement lasting that long sees at least N throughout. */
static void make_time_wait(void) {
    int to = loopback_listener();
    unsigned long made = 0;
    char line[128];
    long limit = proc_number("/proc/sys/net/ipv4/tcp_max_tw_buckets", NULL);
    while (fgets(line, sizeof line, stdin)) {
        long want;
        double ahead;
        if (sscanf(line, "fill %ld %lf", &want, &ahead) != 2) continue;
        if (ahead > TIME_WAIT_SECONDS - 10) ahead = TIME_WAIT_SECONDS - 10;  /* else never met */
        long missing;
        while ((missing = want - alive_at(now() + ahead)) > 0 &&
               proc_number("/proc/net/sockstat", " tw ") < limit - 1000) {
            long batch = missing < 1000 ? missing : 1000;
            for (long i = 0; i < batch; i++, made++) {
                struct sockaddr_in from = {.sin_family = AF_INET};
                /* 127.1.0.1 .. 127.1.254.254 */
                from.sin_addr.s_addr = htonl(0x7f010000 | ((made / 254 % 254 + 1) << 8) |
                                             (made % 254 + 1));
                int client, server;
                connect_pair(to, &from, &client, &server);
                close(client);
                close(server);
            }
            if (nbatches == batches_cap)
                batches = realloc(batches, (batches_cap = batches_cap * 2 + 64) * sizeof *batches);
            batches[nbatches++] = (struct batch){now(), batch};
        }
        printf("filled %ld\n", proc_number("/proc/net/sockstat", " tw "));
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
    drop(base);
    end_with_runner(runner);
    printf("ready %d\n", getpid());
    fflush(stdout);
    make_time_wait();               /* until the runner closes our standard input */
    return reap_children();
}
