#include "exec-reaper.h"

#include <errno.h>
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

/* Exits reaped before the spawning thread recorded the pid (the child can exec, fail and exit before
 * clone() returns in its parent). The spawner looks here right after recording the pid; reap_seq keeps
 * an old entry of a reused pid from matching. All of it is under g_cmd_mu. */
#define EARLY_MAX 64
struct early_exit {
    pid_t pid;
    int status;
    int64_t t;
    uint64_t seq;
};
static struct early_exit g_early[EARLY_MAX];
static unsigned g_early_next;
static uint64_t g_reap_seq;

/* Bumped on every spawn: the reaper, with no child left, sleeps until it changes. */
static pthread_cond_t g_spawn_cond = PTHREAD_COND_INITIALIZER;
static uint64_t g_spawn_gen;

static void mark_exited_locked(struct command *c, int st, int64_t t)
{
    c->running = 0;
    c->status = st;
    c->end_ms = t;
    ssize_t w = write(c->exit_wr, "x", 1);
    (void)w;
}

static void *reaper_main(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&g_cmd_mu);
        uint64_t gen = g_spawn_gen;
        pthread_mutex_unlock(&g_cmd_mu);
        int st;
        pid_t pid = waitpid(-1, &st, 0);
        if (pid < 0) {
            if (errno == EINTR) continue;
            /* ECHILD: sleep until something is spawned */
            pthread_mutex_lock(&g_cmd_mu);
            while (g_spawn_gen == gen) pthread_cond_wait(&g_spawn_cond, &g_cmd_mu);
            pthread_mutex_unlock(&g_cmd_mu);
            continue;
        }
        int64_t t = now_ms();
        pthread_mutex_lock(&g_cmd_mu);
        g_reap_seq++;
        struct command *c = cmd_find_running_locked(pid);
        if (c) {
            mark_exited_locked(c, st, t);
        } else {
            struct early_exit *e = &g_early[g_early_next++ % EARLY_MAX];
            e->pid = pid;
            e->status = st;
            e->t = t;
            e->seq = g_reap_seq;
        }
        pthread_mutex_unlock(&g_cmd_mu);
    }
    return NULL;
}

int reaper_start(void) { return start_detached_thread(reaper_main, NULL, 64 * 1024) == 0 ? 0 : -1; }

uint64_t reaper_mark(void)
{
    pthread_mutex_lock(&g_cmd_mu);
    uint64_t mark = g_reap_seq;
    pthread_mutex_unlock(&g_cmd_mu);
    return mark;
}

void reaper_record_spawn(struct command *cmd, pid_t pid, int64_t t0, uint64_t mark)
{
    pthread_mutex_lock(&g_cmd_mu);
    cmd->pid = pid;
    cmd->running = 1;
    cmd->start_ms = t0;
    for (int i = 0; i < EARLY_MAX; i++) {
        struct early_exit *e = &g_early[i];
        if (e->pid == pid && e->seq > mark) {
            mark_exited_locked(cmd, e->status, e->t);
            e->pid = 0;
            break;
        }
    }
    g_spawn_gen++;
    pthread_cond_signal(&g_spawn_cond);
    pthread_mutex_unlock(&g_cmd_mu);
}
