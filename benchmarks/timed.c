/* Runs a command and writes its wall seconds and peak resident memory (KB) to file descriptor FD.
 *
 * usage: timed FD COMMAND [ARGS...]   (exits with the command's status)
 * The runner cannot take the peak from its own wait4(): a child's ru_maxrss starts from the
 * parent's high-water mark when it execs (the kernel keeps the larger), so every contender would
 * show the Python runner's size. This program is small, so the mark it passes on is too.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: timed FD COMMAND [ARGS...]\n");
        return 2;
    }
    int report = atoi(argv[1]);
    fcntl(report, F_SETFD, FD_CLOEXEC);     /* the report channel is not the command's */
    double started = now();
    pid_t pid = fork();
    if (pid == 0) {
        /* killed with us: the runner kills this process when it is interrupted */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() == 1) _exit(1);
        execvp(argv[2], argv + 2);
        perror(argv[2]);
        _exit(127);
    }
    int status;
    struct rusage usage;
    if (pid < 0 || wait4(pid, &status, 0, &usage) < 0) return 2;
    dprintf(report, "%.6f %ld\n", now() - started, usage.ru_maxrss);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
