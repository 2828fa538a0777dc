#include "exec-kill.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "exec-registry.h"
#include "exec.h"

struct pinfo {
    pid_t pid, ppid, pgrp;
    int marked; /* its environment carries the command's marker */
};

/* Whether /proc/<pid>/environ holds the entry `marker` exactly. */
static int environ_has(const char *pid, const char *marker)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%.20s/environ", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    enum { ENVIRON_MAX = 65536 };
    char *buf = malloc(ENVIRON_MAX);
    if (!buf) {
        close(fd);
        return 0;
    }
    ssize_t r = read(fd, buf, ENVIRON_MAX - 1);
    close(fd);
    int found = 0;
    size_t mlen = strlen(marker);
    for (ssize_t i = 0; r > 0 && i < r && !found;) {
        size_t len = strnlen(buf + i, (size_t)(r - i));
        found = len == mlen && memcmp(buf + i, marker, mlen) == 0;
        i += (ssize_t)len + 1;
    }
    free(buf);
    return found;
}

static size_t scan_procs(struct pinfo **out, const char *marker)
{
    *out = NULL;
    DIR *d = opendir("/proc");
    if (!d) return 0;
    size_t n = 0, cap = 0;
    struct pinfo *v = NULL;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
        char path[64];
        snprintf(path, sizeof path, "/proc/%.20s/stat", e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        char buf[512];
        ssize_t r = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (r <= 0) continue;
        buf[r] = 0;
        char *rp = strrchr(buf, ')');
        if (!rp || rp[1] != ' ') continue;
        char state;
        int ppid, pgrp;
        if (sscanf(rp + 2, "%c %d %d", &state, &ppid, &pgrp) != 3) continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 256;
            struct pinfo *nv = realloc(v, nc * sizeof *v);
            if (!nv) break;
            v = nv;
            cap = nc;
        }
        v[n].pid = (pid_t)atoi(e->d_name);
        v[n].ppid = ppid;
        v[n].pgrp = pgrp;
        v[n].marked = marker ? environ_has(e->d_name, marker) : 0;
        n++;
    }
    closedir(d);
    *out = v;
    return n;
}

static int pid_in(const pid_t *set, size_t n, pid_t p)
{
    for (size_t i = 0; i < n; i++)
        if (set[i] == p) return 1;
    return 0;
}

void kill_tree(pid_t root, const char *marker)
{
    if (root <= 1) return;
    pid_t self = getpid();
    size_t n = 0, cap = 64;
    pid_t *set = malloc(cap * sizeof *set);
    kill(-root, SIGSTOP);
    kill(root, SIGSTOP);
    if (set) {
        set[n++] = root;
        for (int pass = 0; pass < 32; pass++) {
            struct pinfo *v;
            size_t nv = scan_procs(&v, marker);
            int grew = 0, changed;
            do {
                changed = 0;
                for (size_t i = 0; i < nv; i++) {
                    pid_t p = v[i].pid;
                    if (p <= 1 || p == self || pid_in(set, n, p)) continue;
                    if (v[i].pgrp != root && !v[i].marked && !pid_in(set, n, v[i].ppid)) continue;
                    if (n == cap) {
                        pid_t *ns = realloc(set, cap * 2 * sizeof *set);
                        if (!ns) continue;
                        set = ns;
                        cap *= 2;
                    }
                    set[n++] = p;
                    kill(p, SIGSTOP); /* stopped processes cannot fork any more */
                    changed = grew = 1;
                }
            } while (changed);
            free(v);
            if (!grew) break; /* a full scan found nothing new: the tree is complete */
        }
        for (size_t i = 0; i < n; i++) kill(set[i], SIGKILL);
        free(set);
    }
    kill(-root, SIGKILL);
    kill(root, SIGKILL);
}

static void kill_if_running(struct command *c, void *arg)
{
    (void)arg;
    if (c->running && c->pid > 0) kill_tree(c->pid, c->marker);
}

void exec_kill_all(void)
{
    pthread_mutex_lock(&g_cmd_mu);
    cmd_each_locked(kill_if_running, NULL);
    pthread_mutex_unlock(&g_cmd_mu);
}
