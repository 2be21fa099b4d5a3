/* The floor: a minimal C scanner doing the system calls ptfast's core does, and nothing else.
 *
 * Reads the inet socket tables (tcp, udp, tcp6, udp6, raw, raw6) into a sorted inode array, then
 * for every /proc/PID: stat (PPid, start time, flags), status (Uid), exe link (and fstatat when
 * it ends in " (deleted)"), cmdline, and for non-root processes older than LIMIT seconds the fd
 * directory, each fd link matched against the socket inodes. Prints how many processes hold an
 * inet socket. usage: floor [LIMIT]
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static unsigned long long *inodes;
static size_t ninodes, cap;

static int cmp(const void *a, const void *b) {
    unsigned long long x = *(const unsigned long long *)a, y = *(const unsigned long long *)b;
    return x < y ? -1 : x > y;
}

static void load_table(const char *path) {
    static char buf[1 << 22];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    size_t len = 0;
    ssize_t n;
    while ((n = read(fd, buf + len, sizeof buf - 1 - len)) > 0) len += n;
    close(fd);
    buf[len] = 0;
    char *line = strchr(buf, '\n');
    while (line && *++line) {
        char *p = line;
        for (int field = 0; field < 9; field++) {      /* inode is the 10th field */
            while (*p == ' ') p++;
            while (*p && *p != ' ') p++;
        }
        unsigned long long inode = strtoull(p, NULL, 10);
        if (inode) {
            if (ninodes == cap) inodes = realloc(inodes, (cap = cap ? cap * 2 : 4096) * 8);
            inodes[ninodes++] = inode;
        }
        line = strchr(line, '\n');
    }
}

static ssize_t read_at(int dir, const char *name, char *buf, size_t size) {
    int fd = openat(dir, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, size);
    close(fd);
    return n;
}

int main(int argc, char **argv) {
    double limit = argc > 1 ? atof(argv[1]) : 60;
    static const char *tables[] = {"/proc/net/tcp", "/proc/net/udp", "/proc/net/tcp6",
                                   "/proc/net/udp6", "/proc/net/raw", "/proc/net/raw6"};
    for (int i = 0; i < 6; i++) load_table(tables[i]);
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
