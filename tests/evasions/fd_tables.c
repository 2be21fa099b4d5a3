/* Many fd tables: fd_tables UID THREADS HOLDER
 *
 * THREADS threads are started one after another; each unshares its fd table (CLONE_FILES), and
 * thread number HOLDER (from 1, in creation order, which is /proc/PID/task order) then opens a
 * TCP listener on 127.0.0.1, which shows only in that thread's own table. The cores read a
 * bounded number of threads' tables (_corespec.MAX_FD_TABLES): beyond it they must say so. */
#include "evasion.h"
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <sys/syscall.h>

static sem_t started;
static long holder_number;
static int holder_port = -1;
static long holder_tid = -1;

static void *own_table(void *arg)
{
    if (unshare(CLONE_FILES) < 0)
        die("unshare(CLONE_FILES)");
    if ((long)arg == holder_number) {
        int listener = tcp_listener(0, 0);
        holder_port = local_port(listener);
        holder_tid = (long)syscall(SYS_gettid);
    }
    sem_post(&started);
    for (;;)
        pause();
    return NULL;
}

int main(int argc, char **argv)
{
    uid_t uid = uid_argument(argc, argv);
    if (argc < 4) {
        fprintf(stderr, "usage: %s UID THREADS HOLDER\n", argv[0]);
        return 111;
    }
    long threads = strtol(argv[2], NULL, 10);
    holder_number = strtol(argv[3], NULL, 10);
    drop_to(uid);
    if (sem_init(&started, 0, 0) < 0)
        die("sem_init");
    pthread_attr_t attributes;
    pthread_attr_init(&attributes);
    pthread_attr_setstacksize(&attributes, 64 * 1024);
    for (long number = 1; number <= threads; number++) {
        pthread_t thread;
        if (pthread_create(&thread, &attributes, own_table, (void *)number) != 0)
            die("pthread_create");
        while (sem_wait(&started) < 0)      /* one at a time: the task order is fixed */
            if (errno != EINTR)
                die("sem_wait");
    }
    ready("{\"pid\": %d, \"tid\": %ld, \"port\": %d, \"threads\": %ld}", getpid(), holder_tid,
          holder_port, threads);
    stdin_closed(-1);
    exit(0);
}
