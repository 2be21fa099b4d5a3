/* Evasion 4: the listener is re-created every 2 ms: a new socket on the same port
 * (SO_REUSEPORT) replaces the old one on the same fd number (dup2 is atomic), so the process
 * always holds a listener, but never one inode for long. */
#include "evasion.h"

#define LISTENER_FD 10

int main(int argc, char **argv)
{
    drop_to(uid_argument(argc, argv));
    int first = tcp_listener(0, 1);
    int port = local_port(first);
    if (dup2(first, LISTENER_FD) < 0)
        die("dup2");
    close(first);
    ready("{\"pid\": %d, \"port\": %d, \"fd\": %d}", getpid(), port, LISTENER_FD);
    while (!stdin_closed(2)) {
        int next = tcp_listener(port, 1);
        if (dup2(next, LISTENER_FD) < 0)
            die("dup2");
        close(next);
    }
    return 0;
}
