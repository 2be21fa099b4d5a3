/* Process churn for benchmarks/live.py: RATE new processes a second for SECONDS.
 *
 * usage: spawn exec|fork RATE SECONDS
 * exec: each child execs /bin/true (fork, exec and exit events); fork: each child exits at
 * once (fork and exit). Paced against the clock (a late start is caught up, never skipped),
 * children reaped as they go. Prints "made N" at the end; ends with the runner.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 4 || (strcmp(argv[1], "exec") && strcmp(argv[1], "fork"))) {
        fprintf(stderr, "usage: spawn exec|fork RATE SECONDS\n");
        return 2;
    }
    int exec_child = !strcmp(argv[1], "exec");
    double rate = atof(argv[2]), seconds = atof(argv[3]);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    long made = 0, total = (long)(rate * seconds);
    double start = now();
    while (made < total) {
        double due = start + made / rate, left = due - now();
        if (left > 0) {
            struct timespec pause = {(time_t)left, (long)((left - (time_t)left) * 1e9)};
            nanosleep(&pause, NULL);
        }
        pid_t pid = fork();
        if (pid < 0) {
            if (errno == EAGAIN) { while (waitpid(-1, NULL, WNOHANG) > 0) {} continue; }
            perror("fork");
            return 1;
        }
        if (pid == 0) {
            if (exec_child) execl("/bin/true", "true", (char *)NULL);
            _exit(0);
        }
        made++;
        while (waitpid(-1, NULL, WNOHANG) > 0) {}
    }
    while (wait(NULL) > 0 || errno == EINTR) {}
    printf("made %ld in %.2f s\n", made, now() - start);
    return 0;
}
