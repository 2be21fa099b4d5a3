/* Shared by the evasion programs of tests/test_evasions.py.
 *
 * Each program is started as root with the test uid as argv[1]; it does what needs root (if
 * anything), drops to that uid, does the attack, prints one JSON line on stdout ("ready") and
 * then waits for EOF on stdin: when the test goes away, the program goes away too. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

static void die(const char *what)
{
    fprintf(stderr, "%s: %s\n", what, strerror(errno));
    exit(111);
}

static uid_t uid_argument(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s UID [...]\n", argv[0]);
        exit(111);
    }
    return (uid_t)strtoul(argv[1], NULL, 10);
}

/* Become the test uid; changing uid makes a process non-dumpable, which would make its /proc
 * files root's: make it an ordinary process of that uid again. */
static void drop_to(uid_t uid)
{
    if (setgroups(0, NULL) < 0 || setresgid(uid, uid, uid) < 0 || setresuid(uid, uid, uid) < 0)
        die("drop privileges");
    if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) < 0)
        die("prctl");
}

/* A listening TCP socket on 127.0.0.1; ``port`` 0 picks one. */
static int tcp_listener(int port, int reuse_port)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket");
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuse_port)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0)
        die("bind");
    if (listen(fd, 8) < 0)
        die("listen");
    return fd;
}

static int local_port(int fd)
{
    struct sockaddr_in6 addr;     /* large enough for either family */
    socklen_t len = sizeof addr;
    if (getsockname(fd, (struct sockaddr *)&addr, &len) < 0)
        die("getsockname");
    return ntohs(addr.sin6_port);   /* sin_port and sin6_port share their offset */
}

/* One JSON object on one line; the test waits for it. */
static void ready(const char *format, ...)
{
    va_list args;
    va_start(args, format);
    vprintf(format, args);
    va_end(args);
    putchar('\n');
    fflush(stdout);
}

/* Wait until stdin is closed (or until ``timeout_ms``, -1 for ever); 1 when it was closed. */
static int stdin_closed(int timeout_ms)
{
    char chunk[256];
    struct pollfd wait = {.fd = 0, .events = POLLIN};
    for (;;) {
        int ready_count = poll(&wait, 1, timeout_ms);
        if (ready_count < 0 && errno == EINTR)
            continue;
        if (ready_count <= 0)
            return 0;
        ssize_t got = read(0, chunk, sizeof chunk);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return 1;
    }
}
