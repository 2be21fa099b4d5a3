/* Evasion 5: the listener is registered as an io_uring fixed file and its fd closed. Only the
 * ring's fd remains; /proc/PID/fdinfo/<ring fd> lists the socket. Raw system calls: no
 * liburing needed.
 *
 *   io_uring_fixed UID          a TCP listener on 127.0.0.1
 *   io_uring_fixed UID vsock    an AF_VSOCK socket: in no table, and with no fd left to ask
 *                               what it is; exits 112 when the kernel has no AF_VSOCK */
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
    int vsock = argc > 2 && strcmp(argv[2], "vsock") == 0;
    int listener = vsock ? socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0) : tcp_listener(0, 0);
    if (listener < 0) {
        fprintf(stderr, "socket(family %d): %s\n", AF_VSOCK, strerror(errno));
        exit(errno == EAFNOSUPPORT ? 112 : 111);
    }
    int port = vsock ? 0 : local_port(listener);
    if (syscall(__NR_io_uring_register, ring, IORING_REGISTER_FILES, &listener, 1) < 0)
        die("io_uring_register");
    close(listener);
    ready("{\"pid\": %d, \"port\": %d, \"ring_fd\": %d}", getpid(), port, ring);
    stdin_closed(-1);
    return 0;
}
