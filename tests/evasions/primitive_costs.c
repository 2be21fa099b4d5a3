/* Not a test: what the system calls a fix of issue 12 would add cost on this host, per process,
 * thread and socket, beside what the cores already do. Run as root; prints one JSON object.
 *
 *   gcc -O2 -o primitive_costs primitive_costs.c && ./primitive_costs
 *
 * base:         open /proc/PID, read stat and status, readlink exe, list fd/ and readlink each
 *               (what the compiled core does for every inspected process)
 * tasks:        list /proc/PID/task (the thread ids)
 * kcmp:         kcmp(pid, tid, KCMP_FILES) for every thread but the leader
 * socket_probe: pidfd_open, pidfd_getfd, SO_ACCEPTCONN, getsockname, close, per socket fd
 * tables:       read /proc/net/{udplite,udplite6,icmp,icmp6,packet} once */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void read_file(int dir, const char *name)
{
    char buf[65536];
    int fd = openat(dir, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    while (read(fd, buf, sizeof buf) > 0)
        ;
    close(fd);
}

static int pids[200000];

int main(void)
{
    int count = 0, threads = 0, sockets = 0, probed = 0;
    DIR *proc = opendir("/proc");
    struct dirent *entry;
    while ((entry = readdir(proc)) && count < 200000)
        if (entry->d_name[0] >= '1' && entry->d_name[0] <= '9')
            pids[count++] = atoi(entry->d_name);
    closedir(proc);

    double start = now();
    for (int i = 0; i < count; i++) {
        char path[64], link[4096];
        snprintf(path, sizeof path, "/proc/%d", pids[i]);
        int dir = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dir < 0)
            continue;
        read_file(dir, "stat");
        read_file(dir, "status");
        readlinkat(dir, "exe", link, sizeof link);
        int fd_dir = openat(dir, "fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *fds = fd_dir >= 0 ? fdopendir(fd_dir) : NULL;
        while (fds && (entry = readdir(fds)))
            if (entry->d_name[0] != '.' && readlinkat(fd_dir, entry->d_name, link, sizeof link) > 8
                && memcmp(link, "socket:[", 8) == 0)
                sockets++;
        if (fds)
            closedir(fds);
        close(dir);
    }
    double base = now() - start;

    start = now();
    static int tids[200000][2];
    for (int i = 0; i < count; i++) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/task", pids[i]);
        DIR *tasks = opendir(path);
        while (tasks && (entry = readdir(tasks)))
            if (entry->d_name[0] != '.' && atoi(entry->d_name) != pids[i] && threads < 200000) {
                tids[threads][0] = pids[i];
                tids[threads++][1] = atoi(entry->d_name);
            }
        if (tasks)
            closedir(tasks);
    }
    double tasks_time = now() - start;

    start = now();
    for (int i = 0; i < threads; i++)
        syscall(SYS_kcmp, tids[i][0], tids[i][1], 2 /* KCMP_FILES */, 0, 0);
    double kcmp_time = now() - start;

    /* the socket fds, found first, so that only the probe is timed */
    static int socket_of[20000][2];
    int found = 0;
    for (int i = 0; i < count && found < 20000; i++) {
        char path[64], link[64];
        snprintf(path, sizeof path, "/proc/%d/fd", pids[i]);
        DIR *fds = opendir(path);
        while (fds && (entry = readdir(fds)) && found < 20000) {
            ssize_t n = entry->d_name[0] == '.' ? -1
                : readlinkat(dirfd(fds), entry->d_name, link, sizeof link);
            if (n >= 8 && memcmp(link, "socket:[", 8) == 0) {
                socket_of[found][0] = pids[i];
                socket_of[found++][1] = atoi(entry->d_name);
            }
        }
        if (fds)
            closedir(fds);
    }
    start = now();
    int pidfd = -1, pidfd_of = 0;
    for (int i = 0; i < found; i++) {
        if (socket_of[i][0] != pidfd_of) {       /* one pidfd per process */
            if (pidfd >= 0)
                close(pidfd);
            pidfd_of = socket_of[i][0];
            pidfd = (int)syscall(SYS_pidfd_open, pidfd_of, 0);
        }
        int copy = pidfd < 0 ? -1 : (int)syscall(SYS_pidfd_getfd, pidfd, socket_of[i][1], 0);
        if (copy < 0)
            continue;
        int accepting;
        socklen_t len = sizeof accepting;
        struct sockaddr_storage address;
        socklen_t address_len = sizeof address;
        getsockopt(copy, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len);
        getsockname(copy, (struct sockaddr *)&address, &address_len);
        close(copy);
        probed++;
    }
    if (pidfd >= 0)
        close(pidfd);
    double probe_time = now() - start;

    start = now();
    const char *tables[] = {"udplite", "udplite6", "icmp", "icmp6", "packet"};
    int net = open("/proc/net", O_RDONLY | O_DIRECTORY);
    for (int i = 0; i < 5; i++)
        read_file(net, tables[i]);
    double tables_time = now() - start;

    printf("{\"processes\": %d, \"socket_fds\": %d, \"other_threads\": %d, \"probed_sockets\": %d,"
           " \"base_ms\": %.1f, \"tasks_ms\": %.1f, \"kcmp_ms\": %.1f, \"socket_probe_ms\": %.1f,"
           " \"extra_tables_ms\": %.2f, \"base_us_per_process\": %.2f,"
           " \"tasks_us_per_process\": %.2f, \"kcmp_us_per_thread\": %.2f,"
           " \"socket_probe_us_per_socket\": %.2f}\n",
           count, sockets, threads, probed, base * 1e3, tasks_time * 1e3, kcmp_time * 1e3,
           probe_time * 1e3, tables_time * 1e3, base * 1e6 / count, tasks_time * 1e6 / count,
           threads ? kcmp_time * 1e6 / threads : 0, probed ? probe_time * 1e6 / probed : 0);
    return 0;
}
