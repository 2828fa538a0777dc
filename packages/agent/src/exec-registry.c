#include "exec-registry.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_FINISHED_KEPT 256 /* finished background commands remembered for /commands */

pthread_mutex_t g_cmd_mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t g_seq;
static struct command *g_cmds;

struct command *cmd_new(const char *id, int background)
{
    struct command *cmd = calloc(1, sizeof *cmd);
    if (!cmd) return NULL;
    int p[2];
    if (pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) {
        free(cmd);
        return NULL;
    }
    cmd->exit_rd = p[0];
    cmd->exit_wr = p[1];
    cmd->refs = 1;
    snprintf(cmd->id, sizeof cmd->id, "%s", id);
    cmd->background = background;
    cmd->stdin_fd = -1;
    cmd->log_fd = -1;
    cmd->pty_fd = -1;
    pthread_mutex_init(&cmd->stdin_mu, NULL);
    return cmd;
}

static void cmd_destroy(struct command *cmd)
{
    close(cmd->exit_rd);
    close(cmd->exit_wr);
    if (cmd->stdin_fd >= 0) close(cmd->stdin_fd);
    if (cmd->log_fd >= 0) close(cmd->log_fd);
    if (cmd->pty_fd >= 0) close(cmd->pty_fd);
    pthread_mutex_destroy(&cmd->stdin_mu);
    free(cmd);
}

void cmd_ref(struct command *cmd)
{
    pthread_mutex_lock(&g_cmd_mu);
    cmd->refs++;
    pthread_mutex_unlock(&g_cmd_mu);
}

/* Returns 1 when the caller must destroy cmd (after unlocking). */
static int cmd_unref_locked(struct command *cmd) { return --cmd->refs == 0; }

void cmd_unref(struct command *cmd)
{
    pthread_mutex_lock(&g_cmd_mu);
    int last = cmd_unref_locked(cmd);
    pthread_mutex_unlock(&g_cmd_mu);
    if (last) cmd_destroy(cmd);
}

static struct command *find_locked(const char *id)
{
    for (struct command *c = g_cmds; c; c = c->next)
        if (strcmp(c->id, id) == 0) return c;
    return NULL;
}

struct command *cmd_find(const char *id)
{
    pthread_mutex_lock(&g_cmd_mu);
    struct command *c = find_locked(id);
    if (c) c->refs++;
    pthread_mutex_unlock(&g_cmd_mu);
    return c;
}

struct command *cmd_find_running_locked(pid_t pid)
{
    for (struct command *c = g_cmds; c; c = c->next)
        if (c->running && c->pid == pid) return c;
    return NULL;
}

void cmd_each_locked(void (*fn)(struct command *cmd, void *arg), void *arg)
{
    for (struct command *c = g_cmds; c; c = c->next) fn(c, arg);
}

static void unlink_locked(struct command *cmd)
{
    for (struct command **pp = &g_cmds; *pp; pp = &(*pp)->next) {
        if (*pp == cmd) {
            *pp = cmd->next;
            cmd->next = NULL;
            cmd->in_table = 0;
            return;
        }
    }
}

/* Drops the oldest finished background commands beyond MAX_FINISHED_KEPT. Their logs stay on disk. */
static void evict_locked(struct command **to_destroy)
{
    for (;;) {
        int finished = 0;
        struct command *oldest = NULL;
        for (struct command *c = g_cmds; c; c = c->next) {
            if (!c->done || c->running) continue;
            finished++;
            if (!oldest || c->seq < oldest->seq) oldest = c;
        }
        if (finished <= MAX_FINISHED_KEPT || !oldest) return;
        unlink_locked(oldest);
        if (cmd_unref_locked(oldest)) {
            oldest->next = *to_destroy;
            *to_destroy = oldest;
        }
    }
}

int cmd_register(struct command *cmd)
{
    struct command *dead = NULL;
    pthread_mutex_lock(&g_cmd_mu);
    if (find_locked(cmd->id)) {
        pthread_mutex_unlock(&g_cmd_mu);
        return -1;
    }
    cmd->refs++;
    cmd->in_table = 1;
    cmd->seq = ++g_seq;
    cmd->next = g_cmds;
    g_cmds = cmd;
    evict_locked(&dead);
    pthread_mutex_unlock(&g_cmd_mu);
    while (dead) {
        struct command *n = dead->next;
        cmd_destroy(dead);
        dead = n;
    }
    return 0;
}

void cmd_unregister(struct command *cmd)
{
    pthread_mutex_lock(&g_cmd_mu);
    int last = 0;
    if (cmd->in_table) {
        unlink_locked(cmd);
        last = cmd_unref_locked(cmd);
    }
    pthread_mutex_unlock(&g_cmd_mu);
    if (last) cmd_destroy(cmd);
}

void cmd_stdin_close(struct command *cmd)
{
    pthread_mutex_lock(&cmd->stdin_mu);
    if (cmd->stdin_fd >= 0) close(cmd->stdin_fd);
    cmd->stdin_fd = -1;
    pthread_mutex_unlock(&cmd->stdin_mu);
}

/* Caller holds stdin_mu. 0 written; -1 the reader is gone (stdin is now closed). */
static int stdin_write_locked(struct command *cmd, const void *p, size_t n)
{
    if (write_all_fd(cmd->stdin_fd, p, n) == 0) return 0;
    close(cmd->stdin_fd);
    cmd->stdin_fd = -1;
    return -1;
}

int cmd_stdin_from_body(struct http_conn *c, struct command *cmd, const char *pre, size_t prelen)
{
    char *buf = malloc(CMD_IOBUF);
    if (!buf) return -2;
    pthread_mutex_lock(&cmd->stdin_mu);
    int closed = cmd->stdin_fd < 0, rc = 0;
    if (!closed && prelen && stdin_write_locked(cmd, pre, prelen) != 0) closed = 1;
    for (;;) {
        ssize_t n = http_body_read(c, buf, CMD_IOBUF, 0);
        if (n == 0) break;
        if (n < 0) {
            rc = -1;
            break;
        }
        if (!closed && stdin_write_locked(cmd, buf, (size_t)n) != 0) closed = 1; /* drop the rest */
    }
    pthread_mutex_unlock(&cmd->stdin_mu);
    free(buf);
    return rc < 0 ? rc : closed;
}
