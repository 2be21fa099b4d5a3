/* Evasions 3, 6 and 9: an ordinary listener; what hides it is where its executable is (a path
 * longer than PATH_MAX, a deleted file, a memfd, a file whose only remaining link is elsewhere).
 *
 *   listener UID            hold a TCP listener on 127.0.0.1
 *   listener UID --quiet    hold no socket (only the executable is the finding)
 *   listener UID --memfd    first copy itself into a memfd and run from there */
#include "evasion.h"
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>

static void exec_from_memfd(char **argv)
{
    int image = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    int memory = memfd_create("listener", 0);
    struct stat image_stat;
    if (image < 0 || memory < 0 || fstat(image, &image_stat) < 0)
        die("memfd_create");
    off_t offset = 0;
    while (offset < image_stat.st_size)
        if (sendfile(memory, image, &offset, image_stat.st_size - offset) <= 0)
            die("sendfile");
    char *again[] = {argv[0], argv[1], NULL};
    fexecve(memory, again, environ);
    die("fexecve");
}

int main(int argc, char **argv)
{
    uid_t uid = uid_argument(argc, argv);
    const char *mode = argc > 2 ? argv[2] : "";
    if (strcmp(mode, "--memfd") == 0)
        exec_from_memfd(argv);
    drop_to(uid);
    if (strcmp(mode, "--quiet") == 0) {
        ready("{\"pid\": %d}", getpid());
    } else {
        int listener = tcp_listener(0, 0);
        ready("{\"pid\": %d, \"port\": %d}", getpid(), local_port(listener));
    }
    stdin_closed(-1);
    return 0;
}
