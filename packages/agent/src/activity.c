#include "activity.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The pid a /proc entry names, or -1 for the entries that are not processes. */
static long pid_of(const char *name)
{
    char *end;
    long pid = strtol(name, &end, 10);
    return end != name && *end == '\0' ? pid : -1;
}

/* Whether a task's stat line shows state R. The state follows the command name, which is in parentheses
 * and may itself contain ") ", hence the last one. */
static int task_running(const char *stat_path)
{
    int fd = open(stat_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    char buf[512];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = '\0';
    const char *close_paren = strrchr(buf, ')');
    return close_paren && close_paren[1] == ' ' && close_paren[2] == 'R';
}

static long running_threads(long pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/task", pid);
    DIR *tasks = opendir(path);
    if (!tasks) return 0; /* it exited meanwhile */
    long running = 0;
    struct dirent *e;
    while ((e = readdir(tasks)) != NULL) {
        long tid = pid_of(e->d_name);
        if (tid < 0) continue;
        char stat_path[96];
        snprintf(stat_path, sizeof stat_path, "/proc/%ld/task/%ld/stat", pid, tid);
        running += task_running(stat_path);
    }
    closedir(tasks);
    return running;
}

void handle_activity(struct http_conn *c)
{
    DIR *proc = opendir("/proc");
    if (!proc) {
        http_send_error(c, 500, "internal", strerror(errno));
        return;
    }
    long self = (long)getpid(), processes = 0, running = 0;
    struct dirent *e;
    while ((e = readdir(proc)) != NULL) {
        long pid = pid_of(e->d_name);
        if (pid < 0) continue;
        processes++;
        if (pid != 1 && pid != self) running += running_threads(pid);
    }
    closedir(proc);
    char json[96];
    int n = snprintf(json, sizeof json, "{\"processes\":%ld,\"running\":%ld}", processes, running);
    http_send_json(c, 200, json, (size_t)n);
}
