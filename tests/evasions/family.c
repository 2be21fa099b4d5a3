/* Evasion 7: a parent (run from an executable the test deletes) forks a child; on SIGUSR1 the
 * child opens a listener. Once the parent is reported for its deleted executable, the
 * one-report-per-family rule must not hide the child's socket. */
#include "evasion.h"
#include <signal.h>

static volatile sig_atomic_t open_listener;

static void on_usr1(int signo)
{
    (void)signo;
    open_listener = 1;
}

static void child(void)
{
    int listener = -1;
    for (;;) {
        if (stdin_closed(50))
            _exit(0);
        if (open_listener && listener < 0) {
            listener = tcp_listener(0, 0);
            ready("{\"child_port\": %d}", local_port(listener));
        }
    }
}

int main(int argc, char **argv)
{
    drop_to(uid_argument(argc, argv));
    /* before the fork, so that the child has it when the test can first signal it; no
     * SA_RESTART: the child's poll returns */
    struct sigaction action = {.sa_handler = on_usr1};
    sigaction(SIGUSR1, &action, NULL);
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0)
        child();
    ready("{\"pid\": %d, \"child\": %d}", getpid(), pid);
    stdin_closed(-1);
    return 0;
}
