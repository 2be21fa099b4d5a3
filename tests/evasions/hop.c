/* Evasion 10: one listener handed from young process to young process: every ``period`` ms
 * the holder forks and exits, so no holder is ever older than the period, while the socket
 * lives on. Each new holder prints {"holder": PID}. */
#include "evasion.h"

int main(int argc, char **argv)
{
    drop_to(uid_argument(argc, argv));
    int period_ms = argc > 2 ? atoi(argv[2]) : 400;
    int listener = tcp_listener(0, 0);
    ready("{\"pid\": %d, \"holder\": %d, \"port\": %d}", getpid(), getpid(),
          local_port(listener));
    while (!stdin_closed(period_ms)) {
        pid_t pid = fork();
        if (pid < 0)
            die("fork");
        if (pid > 0)
            _exit(0);
        ready("{\"holder\": %d}", getpid());
    }
    return 0;
}
