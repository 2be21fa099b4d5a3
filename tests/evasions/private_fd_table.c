/* Evasion 2: a thread unshares its file table (CLONE_FILES) and then opens the listener, which
 * shows only under /proc/PID/task/TID/fd. */
#include "evasion.h"
#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>

static void *serve(void *unused)
{
    (void)unused;
    if (unshare(CLONE_FILES) < 0)
        die("unshare(CLONE_FILES)");
    int listener = tcp_listener(0, 0);
    ready("{\"pid\": %d, \"tid\": %ld, \"port\": %d}", getpid(), (long)syscall(SYS_gettid),
          local_port(listener));
    stdin_closed(-1);
    exit(0);
}

int main(int argc, char **argv)
{
    drop_to(uid_argument(argc, argv));
    pthread_t thread;
    if (pthread_create(&thread, NULL, serve, NULL) != 0)
        die("pthread_create");
    pthread_join(thread, NULL);
    return 0;
}
