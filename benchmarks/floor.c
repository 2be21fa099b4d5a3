/* The floor: a minimal C scanner doing the system calls ptfast's core does, and nothing else.
 *
 * Reads the inet socket tables (tcp, udp, tcp6, udp6, raw, raw6) into a sorted inode array, then
 * for every /proc/PID: stat (PPid, start time, flags), status (Uid), exe link (and fstatat when
 * it ends in " (deleted)"), cmdline, and for non-root processes older than LIMIT seconds the fd
 * directory, each fd link matched against the socket inodes. Prints how many processes hold an
 * inet socket.
 *
 *   floor [LIMIT]              the scan, socket tables read from /proc/net
 *   floor --sockdiag [LIMIT]   the same, but the TCP tables come from sock_diag netlink
 *   floor --tables ROUNDS      no scan: times reading the TCP tables (IPv4 and IPv6) ROUNDS
 *                              times each way, interleaved, and prints JSON (seconds per read)
 *
 * sock_diag asks for every TCP state but TIME_WAIT and SYN_RECV (the kernel adds request
 * sockets, NEW_SYN_RECV, to SYN_RECV): neither has an inode, so /proc/net/tcp lists them with
 * inode 0 and the scan drops them after paying to read and parse their lines.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { TCP_SYN_RECV = 3, TCP_TIME_WAIT = 6 };

static unsigned long long *inodes;
static size_t ninodes, cap;
static char *text;              /* one table's text; grows to the largest table */
static size_t text_cap;
static size_t table_bytes;      /* bytes of table text read, for --tables */

static int cmp(const void *a, const void *b) {
    unsigned long long x = *(const unsigned long long *)a, y = *(const unsigned long long *)b;
    return x < y ? -1 : x > y;
}

static void add_inode(unsigned long long inode) {
    if (ninodes == cap) inodes = realloc(inodes, (cap = cap ? cap * 2 : 4096) * 8);
    inodes[ninodes++] = inode;
}

/* Lines read (the header excluded); sockets with an inode go to the inode array. */
static long load_table(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    size_t len = 0;
    ssize_t n;
    do {
        if (text_cap - len < 65536) text = realloc(text, text_cap = text_cap * 2 + 65536);
        n = read(fd, text + len, text_cap - 1 - len);
        if (n > 0) len += n;
    } while (n > 0);
    close(fd);
    text[len] = 0;
    table_bytes += len;
    long lines = 0;
    char *line = strchr(text, '\n');
    while (line && *++line) {
        char *p = line;
        for (int field = 0; field < 9; field++) {      /* inode is the 10th field */
            while (*p == ' ') p++;
            while (*p && *p != ' ') p++;
        }
        unsigned long long inode = strtoull(p, NULL, 10);
        if (inode) add_inode(inode);
        lines++;
        line = strchr(line, '\n');
    }
    return lines;
}

/* Messages received: the TCP sockets of ``family`` that have an inode. -1 on failure. */
static long load_tcp_diag(int family) {
    static char buf[65536];        /* the kernel fills at most 32 KB per dump message batch */
    struct {
        struct nlmsghdr header;
        struct inet_diag_req_v2 request;
    } message = {
        .header = {.nlmsg_len = sizeof message, .nlmsg_type = SOCK_DIAG_BY_FAMILY,
                   .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP, .nlmsg_seq = 1},
        .request = {.sdiag_family = family, .sdiag_protocol = IPPROTO_TCP,
                    .idiag_states = ~(1U << TCP_TIME_WAIT | 1U << TCP_SYN_RECV)},
    };
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (fd < 0 || sendto(fd, &message, sizeof message, 0, (void *)&kernel, sizeof kernel) < 0) {
        if (fd >= 0) close(fd);
        return -1;
    }
    long sockets = 0;
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        for (struct nlmsghdr *h = (void *)buf; NLMSG_OK(h, n); h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_type == NLMSG_DONE) goto done;
            if (h->nlmsg_type == NLMSG_ERROR) { sockets = -1; goto done; }
            struct inet_diag_msg *socket = NLMSG_DATA(h);
            if (socket->idiag_inode) add_inode(socket->idiag_inode);
            sockets++;
        }
    }
done:
    close(fd);
    return sockets;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void print_times(const char *name, double *seconds, int rounds) {
    printf("\"%s\": [", name);
    for (int i = 0; i < rounds; i++) printf("%s%.6f", i ? ", " : "", seconds[i]);
    printf("]");
}

/* --tables: /proc/net/tcp + tcp6 against sock_diag, interleaved, on the same host state. */
static int time_tables(int rounds) {
    double *proc_net = calloc(rounds, sizeof(double)), *sock_diag = calloc(rounds, sizeof(double));
    long lines = 0, messages = 0, proc_inodes = 0;
    for (int i = 0; i < rounds; i++) {
        double started = now();
        ninodes = table_bytes = 0;
        lines = load_table("/proc/net/tcp") + load_table("/proc/net/tcp6");
        proc_net[i] = now() - started;
        proc_inodes = ninodes;
        started = now();
        ninodes = 0;
        long v4 = load_tcp_diag(AF_INET), v6 = load_tcp_diag(AF_INET6);
        sock_diag[i] = now() - started;
        if (v4 < 0 || v6 < 0) {
            fprintf(stderr, "floor: sock_diag failed\n");
            return 2;
        }
        messages = v4 + v6;
    }
    qsort(proc_net, rounds, sizeof(double), by_value);
    qsort(sock_diag, rounds, sizeof(double), by_value);
    printf("{\"proc_net_lines\": %ld, \"proc_net_bytes\": %zu, \"proc_net_inodes\": %ld, "
           "\"sock_diag_sockets\": %ld, \"sock_diag_inodes\": %zu, ",
           lines, table_bytes, proc_inodes, messages, ninodes);
    print_times("proc_net", proc_net, rounds);
    printf(", ");
    print_times("sock_diag", sock_diag, rounds);
    printf("}\n");
    return 0;
}

static ssize_t read_at(int dir, const char *name, char *buf, size_t size) {
    int fd = openat(dir, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, size);
    close(fd);
    return n;
}

int main(int argc, char **argv) {
    if (argc > 2 && strcmp(argv[1], "--tables") == 0) return time_tables(atoi(argv[2]));
    int sockdiag = argc > 1 && strcmp(argv[1], "--sockdiag") == 0;
    double limit = argc > 1 + sockdiag ? atof(argv[1 + sockdiag]) : 60;
    static const char *tables[] = {"/proc/net/tcp", "/proc/net/udp", "/proc/net/tcp6",
                                   "/proc/net/udp6", "/proc/net/raw", "/proc/net/raw6"};
    for (int i = 0; i < 6; i++) {
        if (sockdiag && strncmp(tables[i], "/proc/net/tcp", 13) == 0) {
            if (load_tcp_diag(strchr(tables[i], '6') ? AF_INET6 : AF_INET) < 0) return 2;
        } else {
            load_table(tables[i]);
        }
    }
    qsort(inodes, ninodes, 8, cmp);
    char buf[4096], status[4096], exe[4096], cmdline[65536], link[4096];
    if (read_at(AT_FDCWD, "/proc/uptime", buf, sizeof buf) <= 0) return 1;
    double uptime = atof(buf);
    long hz = sysconf(_SC_CLK_TCK);
    int proc = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fdopendir(dup(proc));
    struct dirent *e;
    long processes = 0, holders = 0, sockets = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
        int pd = openat(proc, e->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (pd < 0) continue;
        ssize_t n = read_at(pd, "stat", buf, sizeof buf - 1);
        if (n <= 0) { close(pd); continue; }
        buf[n] = 0;
        char *p = strrchr(buf, ')');
        unsigned long flags = 0, long_fields[24];
        unsigned long long start = 0;
        if (!p) { close(pd); continue; }
        p += 2;
        for (int field = 3; field <= 24 && *p; field++) {   /* state, ppid, ... */
            while (*p == ' ') p++;
            long_fields[field - 1] = strtoull(p, NULL, 10);
            while (*p && *p != ' ') p++;
        }
        flags = long_fields[8];
        start = long_fields[21];
        if (flags & 0x00200000) { close(pd); continue; }  /* kernel thread */
        n = read_at(pd, "status", status, sizeof status - 1);
        if (n <= 0) { close(pd); continue; }
        status[n] = 0;
        char *uid_line = strstr(status, "\nUid:");
        long uid = -1;
        if (uid_line) {
            char *end = strchr(uid_line + 1, '\n');
            char *last = end;
            while (last > uid_line && (last[-1] >= '0' && last[-1] <= '9')) last--;
            uid = strtol(last, NULL, 10);
        }
        n = readlinkat(pd, "exe", exe, sizeof exe);
        if (n < 0) { close(pd); continue; }
        if (n > 10 && memcmp(exe + n - 10, " (deleted)", 10) == 0) {
            struct stat st;
            fstatat(pd, "exe", &st, 0);
        }
        read_at(pd, "cmdline", cmdline, sizeof cmdline);
        processes++;
        if (uid != 0 && uptime - (double)start / hz > limit) {
            int fdd = openat(pd, "fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            DIR *fds = fdd >= 0 ? fdopendir(fdd) : NULL;
            struct dirent *f;
            int held = 0;
            while (fds && (f = readdir(fds))) {
                if (f->d_name[0] == '.') continue;
                n = readlinkat(fdd, f->d_name, link, sizeof link - 1);
                if (n > 8 && memcmp(link, "socket:[", 8) == 0) {
                    link[n] = 0;
                    unsigned long long inode = strtoull(link + 8, NULL, 10);
                    if (bsearch(&inode, inodes, ninodes, 8, cmp)) { held = 1; sockets++; }
                }
            }
            if (fds) closedir(fds);
            holders += held;
        }
        close(pd);
    }
    printf("%ld processes, %ld hold %ld inet sockets\n", processes, holders, sockets);
    return 0;
}
