/* connect() in a loop, for benchmarks/connecthook.py: COUNT times, a UDP socket connect()ed to
 * 198.18.0.9:PORT (a UDP connect() sends nothing) and closed, or with "tcp" a TCP connection to
 * 127.0.0.1:PORT (a listener the caller holds) opened and reset (no TIME_WAIT left). Prints the nanoseconds per
 * iteration. With "spread", each connect() goes to another port, so that each is a record of
 * its own in the hook's map. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: connects udp|tcp COUNT PORT [spread]\n");
        return 2;
    }
    int tcp = !strcmp(argv[1], "tcp");
    long count = atol(argv[2]);
    int port = atoi(argv[3]), spread = argc > 4 && !strcmp(argv[4], "spread");
    struct sockaddr_in peer = {.sin_family = AF_INET};
    inet_pton(AF_INET, tcp ? "127.0.0.1" : "198.18.0.9", &peer.sin_addr);
    double start = now();
    for (long i = 0; i < count; i++) {
        peer.sin_port = htons(spread ? 1024 + i % 60000 : port);
        int fd = socket(AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&peer, sizeof peer) < 0) {
            perror("connect");
            return 1;
        }
        if (tcp) {      /* a reset, not TIME_WAIT: the next run's port search stays the same */
            struct linger reset = {1, 0};
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
        }
        close(fd);
    }
    printf("%.1f\n", (now() - start) * 1e9 / count);
    return 0;
}
