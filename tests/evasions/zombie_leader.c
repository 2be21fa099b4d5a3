/* Evasion 1: the main thread calls pthread_exit and another thread holds the listener. The
 * leader is a zombie: /proc/PID/exe and /proc/PID/fd give nothing, the process lives on in
 * /proc/PID/task/TID. */
#include "evasion.h"
#include <pthread.h>
#include <sys/syscall.h>

static pid_t leader;
static int listener;

static int leader_is_zombie(void)
{
    char path[64], text[512];
    snprintf(path, sizeof path, "/proc/%d/task/%d/stat", leader, leader);
    FILE *stat_file = fopen(path, "r");
    if (!stat_file)
        return 0;
    size_t got = fread(text, 1, sizeof text - 1, stat_file);
    fclose(stat_file);
    text[got] = 0;
    char *after_name = strrchr(text, ')');
    return after_name && after_name[1] == ' ' && after_name[2] == 'Z';
}

static void *serve(void *unused)
{
    (void)unused;
    while (!leader_is_zombie())
        usleep(1000);
    ready("{\"pid\": %d, \"tid\": %ld, \"port\": %d}", leader, (long)syscall(SYS_gettid),
          local_port(listener));
    stdin_closed(-1);
    exit(0);
}

int main(int argc, char **argv)
{
    drop_to(uid_argument(argc, argv));
    leader = getpid();
    listener = tcp_listener(0, 0);
    pthread_t thread;
    if (pthread_create(&thread, NULL, serve, NULL) != 0)
        die("pthread_create");
    pthread_exit(NULL);
}
