/* Evasion 5: the listener is registered as an io_uring fixed file and its fd closed. Only the
 * ring's fd remains; /proc/PID/fdinfo/<ring fd> lists the socket. Raw system calls: no
 * liburing needed. */
#include "evasion.h"
#include <linux/io_uring.h>
#include <sys/syscall.h>

int main(int argc, char **argv)
{
    drop_to(uid_argument(argc, argv));
    struct io_uring_params params;
    memset(&params, 0, sizeof params);
    int ring = (int)syscall(__NR_io_uring_setup, 4, &params);
    if (ring < 0)
        die("io_uring_setup");
    int listener = tcp_listener(0, 0);
    int port = local_port(listener);
    if (syscall(__NR_io_uring_register, ring, IORING_REGISTER_FILES, &listener, 1) < 0)
        die("io_uring_register");
    close(listener);
    ready("{\"pid\": %d, \"port\": %d, \"ring_fd\": %d}", getpid(), port, ring);
    stdin_closed(-1);
    return 0;
}
