#include "exec-pump.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "exec-kill.h"
#include "exec-log.h"
#include "exec.h"
#include "json.h"

#define DRAIN_MS 100 /* pipes are drained this long after the main process exited */

static void pump_kill(struct pump *p)
{
    pid_t pid;
    pthread_mutex_lock(&g_cmd_mu);
    pid = p->cmd->running ? p->cmd->pid : 0;
    pthread_mutex_unlock(&g_cmd_mu);
    kill_tree(pid > 0 ? pid : p->cmd->pid, p->cmd->marker);
}

static void pump_timeout(struct pump *p)
{
    p->deadline = 0;
    if (p->conn) p->conn->send_deadline = 0;
    pthread_mutex_lock(&g_cmd_mu);
    int running = p->cmd->running;
    if (running) p->cmd->timed_out = 1;
    pthread_mutex_unlock(&g_cmd_mu);
    if (running) pump_kill(p);
}

static void on_send_deadline(void *arg) { pump_timeout(arg); }

void pump_client_gone(struct pump *p)
{
    if (p->client_gone) return;
    p->client_gone = 1;
    if (p->conn) p->conn->dead = 1;
    pump_kill(p);
}

static int emit(struct pump *p, int type, const void *data, size_t len)
{
    if (p->conn) {
        if (p->client_gone) return -1;
        if (http_chunk_frame(p->conn, type, data, len) != 0) {
            pump_client_gone(p);
            return -1;
        }
        return 0;
    }
    if (p->log_broken) return -1;
    if (log_append(p->cmd, type, data, len) != 0) {
        p->log_broken = 1;
        return -1;
    }
    return 0;
}

static int emit_json(struct pump *p, int type, struct jbuf *b)
{
    if (b->oom) return -1;
    return emit(p, type, b->p, b->len);
}

void emit_started(struct pump *p, pid_t pid)
{
    struct jbuf b;
    jb_init(&b);
    jb_puts(&b, "{\"pid\":");
    jb_int(&b, pid);
    jb_putc(&b, '}');
    emit_json(p, FRAME_STARTED, &b);
    jb_free(&b);
}

void emit_spawn_error(struct pump *p, const struct child_err *ce, const char *argv0, const char *cwd)
{
    const char *code;
    errno_status(ce->err, &code);
    char msg[1024];
    switch (ce->stage) {
    case STAGE_CWD: snprintf(msg, sizeof msg, "cwd %.900s: %s", cwd, strerror(ce->err)); break;
    case STAGE_GID: snprintf(msg, sizeof msg, "setgid: %s", strerror(ce->err)); break;
    case STAGE_UID: snprintf(msg, sizeof msg, "setuid: %s", strerror(ce->err)); break;
    case STAGE_EXEC: snprintf(msg, sizeof msg, "exec %.900s: %s", argv0, strerror(ce->err)); break;
    default: snprintf(msg, sizeof msg, "spawn: %s", strerror(ce->err)); break;
    }
    struct jbuf b;
    jb_init(&b);
    jb_puts(&b, "{\"code\":");
    jb_str(&b, code);
    jb_puts(&b, ",\"message\":");
    jb_str(&b, msg);
    jb_putc(&b, '}');
    emit_json(p, FRAME_ERROR, &b);
    jb_free(&b);
}

static void deliver(struct pump *p, int type, const char *buf, size_t n)
{
    uint64_t room = p->max_output > p->delivered ? p->max_output - p->delivered : 0;
    size_t k = n;
    if (k > room) {
        k = (size_t)room;
        if (!p->cmd->truncated) {
            pthread_mutex_lock(&g_cmd_mu);
            p->cmd->truncated = 1;
            pthread_mutex_unlock(&g_cmd_mu);
        }
    }
    if (k == 0) return;
    p->delivered += k;
    emit(p, type, buf, k);
}

static void read_output(struct pump *p, int *fdp, int type, char *buf)
{
    ssize_t n = read(*fdp, buf, CMD_IOBUF);
    if (n > 0) {
        deliver(p, type, buf, (size_t)n);
    } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        close(*fdp);
        *fdp = -1;
    }
}

/* Foreground: writes pending request-body bytes to the child's stdin without blocking. */
static void stdin_flush(struct pump *p)
{
    struct command *cmd = p->cmd;
    while (p->in_off < p->in_len) {
        pthread_mutex_lock(&cmd->stdin_mu);
        int fd = cmd->stdin_fd;
        ssize_t w = -1;
        int e = EPIPE;
        if (fd >= 0) {
            w = write(fd, p->inbuf + p->in_off, p->in_len - p->in_off);
            e = errno;
            if (w < 0 && e != EAGAIN && e != EINTR) {
                close(fd); /* reader gone (EPIPE): the rest of stdin is dropped */
                cmd->stdin_fd = -1;
            }
        }
        pthread_mutex_unlock(&cmd->stdin_mu);
        if (w > 0) {
            p->in_off += (size_t)w;
        } else if (w < 0 && e == EAGAIN) {
            return;
        } else if (w < 0 && e == EINTR) {
            continue;
        } else {
            p->in_off = p->in_len;
        }
    }
    p->in_off = p->in_len = 0;
    if (p->body_eof && !p->stdin_open && !p->stdin_done) {
        p->stdin_done = 1;
        cmd_stdin_close(cmd);
    }
}

static int ms_until(int64_t t)
{
    int64_t d = t - now_ms();
    if (d < 0) return 0;
    return d > 0x7fffffff ? 0x7fffffff : (int)d;
}

/* Drains for DRAIN_MS at most once the main process exited: processes it left behind may hold the pipes
 * open. */
int pump_run(struct pump *p)
{
    struct command *cmd = p->cmd;
    char *buf = malloc(CMD_IOBUF);
    if (!buf) {
        pump_kill(p);
        return 0;
    }
    int exited = 0;
    int64_t drain_until = 0;
    if (p->conn) {
        p->conn->deadline_cb = on_send_deadline;
        p->conn->deadline_arg = p;
        p->conn->send_deadline = p->deadline;
    }
    for (;;) {
        if (p->client_gone) break;
        if (exited && ((p->out_fd < 0 && p->err_fd < 0) || now_ms() >= drain_until)) break;
        if (!exited && p->deadline && now_ms() >= p->deadline) pump_timeout(p);

        if (p->conn) {
            if (!p->body_eof && p->in_off == p->in_len) {
                ssize_t r = http_body_read(p->conn, p->inbuf, p->incap, 1);
                if (r > 0) {
                    p->in_off = 0;
                    p->in_len = (size_t)r;
                } else if (r == 0) {
                    p->body_eof = 1;
                } else if (r == -1) {
                    pump_client_gone(p);
                    break;
                }
            }
            stdin_flush(p);
        }

        struct pollfd fds[5];
        int nf = 0, i_out = -1, i_err = -1, i_exit = -1, i_sock = -1, i_in = -1;
        if (p->out_fd >= 0) {
            fds[nf] = (struct pollfd){ .fd = p->out_fd, .events = POLLIN };
            i_out = nf++;
        }
        if (p->err_fd >= 0) {
            fds[nf] = (struct pollfd){ .fd = p->err_fd, .events = POLLIN };
            i_err = nf++;
        }
        if (!exited) {
            fds[nf] = (struct pollfd){ .fd = cmd->exit_rd, .events = POLLIN };
            i_exit = nf++;
        }
        if (p->conn) {
            short ev = 0;
            if (!p->body_eof) {
                if (p->in_off == p->in_len) ev = POLLIN; /* more body wanted */
            } else if (!p->sock_extra) {
                ev = POLLIN; /* EOF = client went away */
            }
            fds[nf] = (struct pollfd){ .fd = p->conn->fd, .events = ev };
            i_sock = nf++;
            if (p->in_off < p->in_len) {
                pthread_mutex_lock(&cmd->stdin_mu);
                int fd = cmd->stdin_fd;
                pthread_mutex_unlock(&cmd->stdin_mu);
                if (fd >= 0) {
                    fds[nf] = (struct pollfd){ .fd = fd, .events = POLLOUT };
                    i_in = nf++;
                }
            }
        }
        int timeout = -1;
        if (exited) timeout = ms_until(drain_until);
        else if (p->deadline) timeout = ms_until(p->deadline);
        int r = poll(fds, (nfds_t)nf, timeout);
        if (r < 0) {
            if (errno == EINTR) continue;
            logmsg("poll: %s", strerror(errno));
            pump_client_gone(p);
            break;
        }
        if (r == 0) continue;
        if (i_exit >= 0 && fds[i_exit].revents) {
            char x;
            if (read(cmd->exit_rd, &x, 1) == 1) {
                exited = 1;
                drain_until = now_ms() + DRAIN_MS;
                if (p->conn) p->conn->send_deadline = 0;
            }
        }
        if (i_out >= 0 && fds[i_out].revents) read_output(p, &p->out_fd, FRAME_STDOUT, buf);
        if (i_err >= 0 && fds[i_err].revents) read_output(p, &p->err_fd, FRAME_STDERR, buf);
        if (i_sock >= 0 && fds[i_sock].revents) {
            short re = fds[i_sock].revents;
            if (re & (POLLERR | POLLNVAL | POLLHUP)) {
                pump_client_gone(p); /* POLLHUP: nothing can be sent any more */
            } else if (p->body_eof && (re & POLLIN)) {
                int peer = http_peek(p->conn);
                if (peer < 0) pump_client_gone(p);
                else if (peer > 0) p->sock_extra = 1; /* a pipelined request: leave it for later */
            }
        }
        (void)i_in; /* stdin becomes writable: flushed at the top of the loop */
    }
    free(buf);
    if (p->out_fd >= 0) close(p->out_fd);
    if (p->err_fd >= 0) close(p->err_fd);
    p->out_fd = p->err_fd = -1;
    if (p->conn) {
        p->conn->send_deadline = 0;
        p->conn->deadline_cb = NULL;
    }
    return exited;
}

void emit_exit(struct pump *p)
{
    struct command *cmd = p->cmd;
    pthread_mutex_lock(&g_cmd_mu);
    int st = cmd->status;
    int timed_out = cmd->timed_out, truncated = cmd->truncated;
    int64_t dur = cmd->end_ms - cmd->start_ms;
    pthread_mutex_unlock(&g_cmd_mu);
    int code = 0, sig = 0;
    if (WIFEXITED(st)) {
        code = WEXITSTATUS(st);
    } else if (WIFSIGNALED(st)) {
        sig = WTERMSIG(st);
        code = 128 + sig;
    }
    struct jbuf b;
    jb_init(&b);
    jb_puts(&b, "{\"exitCode\":");
    jb_int(&b, code);
    jb_puts(&b, ",\"signal\":");
    if (sig) jb_int(&b, sig);
    else jb_puts(&b, "null");
    jb_puts(&b, ",\"timedOut\":");
    jb_bool(&b, timed_out);
    jb_puts(&b, ",\"truncated\":");
    jb_bool(&b, truncated);
    jb_puts(&b, ",\"durationMs\":");
    jb_int(&b, dur < 0 ? 0 : dur);
    jb_putc(&b, '}');
    p->log_broken = 0; /* the exit frame is always attempted */
    emit_json(p, FRAME_EXIT, &b);
    jb_free(&b);
}

static void *bg_main(void *arg)
{
    struct pump *p = arg;
    struct command *cmd = p->cmd;
    if (pump_run(p)) emit_exit(p);
    cmd_stdin_close(cmd);
    pthread_mutex_lock(&g_cmd_mu);
    cmd->done = 1;
    log_notify_locked(cmd);
    pthread_mutex_unlock(&g_cmd_mu);
    free(p);
    cmd_unref(cmd);
    return NULL;
}

int pump_start_background(struct pump *p)
{
    cmd_ref(p->cmd); /* for the pump thread */
    int rc = start_detached_thread(bg_main, p, 128 * 1024);
    if (rc != 0) cmd_unref(p->cmd);
    return rc;
}
