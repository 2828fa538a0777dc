#include "checkpoint-blockers.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "json.h"

#define BLOCKERS_MAX 20
#define MOUNTS_MAX 256
#define DELETED_SUFFIX " (deleted)"

struct mount {
    char *point;
    int host_backed; /* served by runsc's gofer (9p), not kept in the sandbox's memory */
};

struct blockers {
    struct mount mounts[MOUNTS_MAX];
    int nmounts;
    struct jbuf out;
    int count;
};

/* The sandbox's mounts, from the guest's mountinfo: "id parent dev root point options [tags] - type ...". */
static void load_mounts(struct blockers *b)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f) return;
    char line[4096];
    while (b->nmounts < MOUNTS_MAX && fgets(line, sizeof line, f)) {
        char point[4096];
        if (sscanf(line, "%*s %*s %*s %*s %4095s", point) != 1) continue;
        const char *dash = strstr(line, " - ");
        if (!dash) continue;
        char type[64];
        if (sscanf(dash + 3, "%63s", type) != 1) continue;
        char *copy = strdup(point);
        if (!copy) break;
        b->mounts[b->nmounts].point = copy;
        b->mounts[b->nmounts].host_backed = strcmp(type, "9p") == 0;
        b->nmounts++;
    }
    fclose(f);
}

/* Whether the mount holding `path` (the longest mount point that is a prefix of it) is host-backed. */
static int host_backed(const struct blockers *b, const char *path)
{
    size_t best = 0;
    int backed = 0;
    for (int i = 0; i < b->nmounts; i++) {
        const char *p = b->mounts[i].point;
        size_t n = strlen(p);
        int under = strcmp(p, "/") == 0 || (strncmp(path, p, n) == 0 && (path[n] == '/' || path[n] == '\0'));
        if (under && (n >= best)) {
            best = n;
            backed = b->mounts[i].host_backed;
        }
    }
    return backed;
}

/* `target` ends with " (deleted)" and names a host-backed file: strips the suffix and returns 1. Memory files
 * (memfd_create's "/memfd:NAME", System V shared memory's "/SYSV…") look like deleted paths but are saved. */
static int deleted_on_host(const struct blockers *b, char *target)
{
    size_t n = strlen(target), k = strlen(DELETED_SUFFIX);
    if (target[0] != '/' || n <= k || strcmp(target + n - k, DELETED_SUFFIX) != 0) return 0;
    if (strncmp(target, "/memfd:", 7) == 0 || strncmp(target, "/SYSV", 5) == 0) return 0;
    target[n - k] = '\0';
    return host_backed(b, target);
}

static void add(struct blockers *b, long pid, const char *command, const char *path)
{
    if (b->count >= BLOCKERS_MAX) return;
    jb_putc(&b->out, b->count ? ',' : '[');
    jb_puts(&b->out, "{\"pid\":");
    jb_int(&b->out, pid);
    jb_puts(&b->out, ",\"command\":");
    jb_str(&b->out, command);
    jb_puts(&b->out, ",\"path\":");
    jb_str(&b->out, path);
    jb_putc(&b->out, '}');
    b->count++;
}

static void scan_fds(struct blockers *b, long pid, const char *command)
{
    char dir_path[64];
    snprintf(dir_path, sizeof dir_path, "/proc/%ld/fd", pid);
    DIR *fds = opendir(dir_path);
    if (!fds) return;
    struct dirent *e;
    while ((e = readdir(fds)) != NULL && b->count < BLOCKERS_MAX) {
        if (e->d_name[0] == '.') continue;
        char link[352], target[4096];
        snprintf(link, sizeof link, "%s/%s", dir_path, e->d_name);
        ssize_t n = readlink(link, target, sizeof target - 1);
        if (n <= 0) continue;
        target[n] = '\0';
        if (deleted_on_host(b, target)) add(b, pid, command, target);
    }
    closedir(fds);
}

/* A working directory that was removed. */
static void scan_cwd(struct blockers *b, long pid, const char *command)
{
    char link[64], target[4096];
    snprintf(link, sizeof link, "/proc/%ld/cwd", pid);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n <= 0) return;
    target[n] = '\0';
    if (deleted_on_host(b, target)) add(b, pid, command, target);
}

/* Mapped files: a line's path starts at its sixth field ("addr perms offset dev inode path"). */
static void scan_maps(struct blockers *b, long pid, const char *command)
{
    char maps_path[64];
    snprintf(maps_path, sizeof maps_path, "/proc/%ld/maps", pid);
    FILE *f = fopen(maps_path, "re");
    if (!f) return;
    char line[4352], last[4096] = "";
    while (fgets(line, sizeof line, f) && b->count < BLOCKERS_MAX) {
        line[strcspn(line, "\n")] = '\0';
        char *path = strchr(line, '/');
        if (!path || !deleted_on_host(b, path) || strcmp(path, last) == 0) continue;
        snprintf(last, sizeof last, "%s", path);
        add(b, pid, command, path);
    }
    fclose(f);
}

void handle_checkpoint_blockers(struct http_conn *c)
{
    struct blockers *b = calloc(1, sizeof *b);
    DIR *proc = b ? opendir("/proc") : NULL;
    if (!proc) {
        http_send_error(c, 500, "internal", b ? strerror(errno) : "out of memory");
        free(b);
        return;
    }
    load_mounts(b);
    jb_init(&b->out);
    struct dirent *e;
    while ((e = readdir(proc)) != NULL && b->count < BLOCKERS_MAX) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (end == e->d_name || *end) continue;
        char comm_path[64], command[64] = "";
        snprintf(comm_path, sizeof comm_path, "/proc/%ld/comm", pid);
        int fd = open(comm_path, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            ssize_t n = read(fd, command, sizeof command - 1);
            close(fd);
            command[n > 0 ? n : 0] = '\0';
            command[strcspn(command, "\n")] = '\0';
        }
        scan_cwd(b, pid, command);
        scan_fds(b, pid, command);
        scan_maps(b, pid, command);
    }
    closedir(proc);
    if (!b->count) jb_putc(&b->out, '[');
    jb_putc(&b->out, ']');
    http_send_jbuf(c, 200, &b->out);
    jb_free(&b->out);
    for (int i = 0; i < b->nmounts; i++) free(b->mounts[i].point);
    free(b);
}
