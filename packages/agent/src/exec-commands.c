/* The /commands endpoints: list, status, signal, stdin, resize and the frames of background commands. */
#include "exec.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "exec-kill.h"
#include "exec-log.h"
#include "exec-registry.h"
#include "json.h"

static void status_json_locked(struct jbuf *b, const struct command *cmd)
{
    int running = cmd->pid == 0 || cmd->running;
    jb_puts(b, "{\"id\":");
    jb_str(b, cmd->id);
    jb_puts(b, ",\"pid\":");
    jb_int(b, cmd->pid);
    jb_puts(b, ",\"running\":");
    jb_bool(b, running);
    jb_puts(b, ",\"exitCode\":");
    int sig = 0;
    if (running) {
        jb_puts(b, "null");
    } else if (WIFSIGNALED(cmd->status)) {
        sig = WTERMSIG(cmd->status);
        jb_int(b, 128 + sig);
    } else {
        jb_int(b, WEXITSTATUS(cmd->status));
    }
    jb_puts(b, ",\"signal\":");
    if (sig) jb_int(b, sig);
    else jb_puts(b, "null");
    jb_puts(b, ",\"timedOut\":");
    jb_bool(b, cmd->timed_out);
    jb_puts(b, ",\"truncated\":");
    jb_bool(b, cmd->truncated);
    jb_puts(b, ",\"durationMs\":");
    if (running) jb_puts(b, "null");
    else jb_int(b, cmd->end_ms - cmd->start_ms);
    jb_putc(b, '}');
}

static void list_entry_locked(struct command *cmd, void *arg)
{
    struct jbuf *b = arg;
    if (b->len > 1) jb_putc(b, ','); /* an entry already follows the [ */
    status_json_locked(b, cmd);
}

void handle_commands_list(struct http_conn *c)
{
    struct jbuf b;
    jb_init(&b);
    jb_putc(&b, '[');
    pthread_mutex_lock(&g_cmd_mu);
    cmd_each_locked(list_entry_locked, &b);
    pthread_mutex_unlock(&g_cmd_mu);
    jb_putc(&b, ']');
    http_send_jbuf(c, 200, &b);
    jb_free(&b);
}

static void not_found(struct http_conn *c) { http_send_error(c, 404, "not_found", "unknown command"); }

/* The command with a reference for the caller, or NULL once a 404 was sent. */
static struct command *find_or_not_found(struct http_conn *c, const char *id)
{
    struct command *cmd = cmd_find(id);
    if (!cmd) not_found(c);
    return cmd;
}

void handle_command_status(struct http_conn *c, const char *id)
{
    struct command *cmd = cmd_find(id);
    if (!cmd) {
        struct jbuf b;
        jb_init(&b);
        if (log_status(id, &b) == 0) http_send_jbuf(c, 200, &b);
        else not_found(c);
        jb_free(&b);
        return;
    }
    struct jbuf b;
    jb_init(&b);
    pthread_mutex_lock(&g_cmd_mu);
    status_json_locked(&b, cmd);
    pthread_mutex_unlock(&g_cmd_mu);
    http_send_jbuf(c, 200, &b);
    jb_free(&b);
    cmd_unref(cmd);
}

void handle_command_signal(struct http_conn *c, const char *id)
{
    char *s = http_query_get(c, "signal");
    uint64_t sig;
    int bad = !s || parse_u64(s, &sig) != 0 || sig > 64;
    free(s);
    if (bad) {
        http_send_error(c, 400, "bad_request", "signal must be a number 0-64");
        return;
    }
    struct command *cmd = find_or_not_found(c, id);
    if (!cmd) return;
    pthread_mutex_lock(&g_cmd_mu);
    pid_t pid = cmd->running ? cmd->pid : 0;
    pthread_mutex_unlock(&g_cmd_mu);
    if (pid > 0) {
        if (sig == SIGKILL) {
            kill_tree(pid, cmd->marker);
        } else if (kill(-pid, (int)sig) != 0 && errno == ESRCH) {
            kill(pid, (int)sig); /* it left its process group */
        }
    }
    cmd_unref(cmd);
    http_send_empty(c, 204);
}

void handle_command_stdin(struct http_conn *c, const char *id)
{
    struct command *cmd = find_or_not_found(c, id);
    if (!cmd) return;
    if (http_query_flag(c, "close")) {
        if (http_body_discard(c, 1 << 20) != 0) c->keepalive = 0;
        cmd_stdin_close(cmd);
        cmd_unref(cmd);
        http_send_empty(c, 204);
        return;
    }
    int rc = cmd_stdin_from_body(c, cmd, NULL, 0);
    cmd_unref(cmd);
    if (rc == -2) http_send_error(c, 500, "internal", "out of memory");
    else if (rc == 1) http_send_error(c, 409, "stdin_closed", "the command's stdin is closed");
    else if (rc == 0) http_send_empty(c, 204);
}

/* POST /commands/{id}/resize?cols=&rows= : the terminal of a command started with pty=1 */
void handle_command_resize(struct http_conn *c, const char *id)
{
    uint64_t cols = 0, rows = 0;
    char *sc = http_query_get(c, "cols"), *sr = http_query_get(c, "rows");
    int bad = !sc || !sr || parse_u64(sc, &cols) != 0 || parse_u64(sr, &rows) != 0 || cols == 0 || rows == 0 ||
              cols > 10000 || rows > 10000;
    free(sc);
    free(sr);
    if (http_body_discard(c, 1 << 20) != 0) c->keepalive = 0;
    if (bad) {
        http_send_error(c, 400, "bad_request", "cols and rows must be 1-10000");
        return;
    }
    struct command *cmd = find_or_not_found(c, id);
    if (!cmd) return;
    if (cmd->pty_fd < 0) {
        cmd_unref(cmd);
        http_send_error(c, 409, "no_terminal", "the command has no terminal");
        return;
    }
    struct winsize ws = { .ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols };
    int rc = ioctl(cmd->pty_fd, TIOCSWINSZ, &ws);
    int e = errno;
    cmd_unref(cmd);
    if (rc != 0) http_send_errno(c, e, "resize");
    else http_send_empty(c, 204);
}

/* GET /commands/{id}/frames?offset=n&follow=1 */
void handle_command_frames(struct http_conn *c, const char *id)
{
    uint64_t off = 0;
    char *s = http_query_get(c, "offset");
    if (s && parse_u64(s, &off) != 0) {
        free(s);
        http_send_error(c, 400, "bad_request", "bad offset");
        return;
    }
    free(s);
    int follow = http_query_flag(c, "follow");
    struct command *cmd = cmd_find(id);
    if (cmd && !cmd->background) {
        cmd_unref(cmd);
        http_send_error(c, 400, "bad_request", "not a background command");
        return;
    }
    char path[PATH_MAX];
    if (log_path(path, sizeof path, id) != 0) {
        if (cmd) cmd_unref(cmd);
        http_send_errno(c, ENAMETOOLONG, NULL);
        return;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (cmd) cmd_unref(cmd);
        if (e == ENOENT) not_found(c);
        else http_send_errno(c, e, "command log");
        return;
    }
    char *buf = malloc(CMD_IOBUF);
    struct follower fl = { .wake_wr = -1, .next = NULL };
    int wake[2] = { -1, -1 };
    if (!buf) {
        close(fd);
        if (cmd) cmd_unref(cmd);
        http_send_error(c, 500, "internal", "out of memory");
        return;
    }
    if (cmd && follow) {
        if (pipe2(wake, O_CLOEXEC | O_NONBLOCK) != 0) {
            int e = errno;
            close(fd);
            free(buf);
            cmd_unref(cmd);
            http_send_errno(c, e, "pipe");
            return;
        }
        fl.wake_wr = wake[1];
        pthread_mutex_lock(&g_cmd_mu);
        fl.next = cmd->followers;
        cmd->followers = &fl;
        pthread_mutex_unlock(&g_cmd_mu);
    }
    int ok = http_send_head(c, 200, "application/x-sandpit-frames", -1) == 0;
    int extra = 0;
    while (ok) {
        uint64_t size;
        int done = 1;
        if (cmd) {
            pthread_mutex_lock(&g_cmd_mu);
            size = cmd->log_size;
            done = cmd->done;
            pthread_mutex_unlock(&g_cmd_mu);
        } else {
            struct stat st;
            size = fstat(fd, &st) == 0 ? (uint64_t)st.st_size : 0;
        }
        while (ok && off < size) {
            size_t want = size - off > CMD_IOBUF ? CMD_IOBUF : (size_t)(size - off);
            ssize_t n = pread(fd, buf, want, (off_t)off);
            if (n <= 0) {
                ok = 0;
                break;
            }
            if (http_chunk(c, buf, (size_t)n) != 0) ok = 0;
            off += (uint64_t)n;
        }
        if (!ok || !cmd || !follow || done) break;
        struct pollfd pf[2] = {
            { .fd = wake[0], .events = POLLIN },
            { .fd = c->fd, .events = extra ? 0 : POLLIN },
        };
        int r = poll(pf, 2, -1);
        if (r < 0 && errno != EINTR) ok = 0;
        if (r <= 0) continue;
        if (pf[0].revents) {
            char tmp[64];
            while (read(wake[0], tmp, sizeof tmp) > 0) {
            }
        }
        if (pf[1].revents & (POLLERR | POLLNVAL | POLLHUP)) {
            ok = 0;
        } else if (pf[1].revents & POLLIN) {
            int peer = http_peek(c);
            if (peer < 0) ok = 0;
            else if (peer > 0) extra = 1;
        }
    }
    if (ok) http_chunk_end(c);
    else c->dead = 1;
    if (fl.wake_wr >= 0) {
        pthread_mutex_lock(&g_cmd_mu);
        for (struct follower **pp = &cmd->followers; *pp; pp = &(*pp)->next) {
            if (*pp == &fl) {
                *pp = fl.next;
                break;
            }
        }
        pthread_mutex_unlock(&g_cmd_mu);
        close(wake[0]);
        close(wake[1]);
    }
    free(buf);
    close(fd);
    if (cmd) cmd_unref(cmd);
}

