/* POST /exec: parses the request's fields, spawns the command and pumps its output (foreground) or
 * hands it to a pump thread (background); exec_init starts the machinery. */
#include "exec.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "exec-kill.h"
#include "exec-log.h"
#include "exec-pump.h"
#include "exec-reaper.h"
#include "exec-registry.h"
#include "exec-spawn.h"
#include "json.h"
#include "util.h"

#define FIELDS_MAX (1u << 20)          /* arg/env/... fields of one /exec request */
#define DEFAULT_MAX_OUTPUT (16u << 20) /* stdout+stderr bytes delivered per command */

int exec_init(void)
{
    spawn_init();
    return reaper_start();
}

struct exec_req {
    char *fields; /* the fields, each NUL-terminated in place */
    size_t fields_len, cap, body_len; /* stdin bytes are fields[fields_len, body_len) */
    char **argv_mem;
    char **envp;
    const char *id, *cwd, *path;
    size_t nenv;
    uint64_t timeout_ms, max_output;
    int background, stdin_open, set_uid, set_gid, pty;
    unsigned short cols, rows;
    uid_t uid;
    gid_t gid;
};

static void exec_req_free(struct exec_req *r)
{
    free(r->fields);
    free(r->argv_mem);
    free(r->envp);
}

static int starts(const char *s, const char *prefix, const char **rest)
{
    size_t n = strlen(prefix);
    if (strncmp(s, prefix, n) != 0) return 0;
    *rest = s + n;
    return 1;
}

/* Reads the fields part of the body. 0 ok; -1 error response sent (or connection dead). */
static int read_exec_fields(struct http_conn *c, struct exec_req *r)
{
    size_t len = 0, scan = 0, fstart = 0;
    for (;;) {
        if (len == r->cap) {
            if (r->cap >= FIELDS_MAX) {
                http_send_error(c, 413, "too_large", "exec fields exceed 1 MiB");
                return -1;
            }
            size_t nc = r->cap ? r->cap * 2 : 4096;
            char *nf = realloc(r->fields, nc);
            if (!nf) {
                http_send_error(c, 500, "internal", "out of memory");
                return -1;
            }
            r->fields = nf;
            r->cap = nc;
        }
        ssize_t n = http_body_read(c, r->fields + len, r->cap - len, 0);
        if (n < 0) return -1;
        if (n == 0) {
            if (len != fstart) {
                http_send_error(c, 400, "bad_request", "unterminated field");
                return -1;
            }
            r->fields_len = len;
            r->body_len = len;
            return 0;
        }
        len += (size_t)n;
        for (; scan < len; scan++) {
            if (r->fields[scan] != 0) continue;
            if (scan == fstart) { /* the empty field: stdin follows */
                r->fields_len = scan;
                r->body_len = len;
                return 0;
            }
            fstart = scan + 1;
        }
    }
}

static int parse_exec_fields(struct http_conn *c, struct exec_req *r)
{
    size_t nargs = 0, nenv = 0;
    for (size_t i = 0; i < r->fields_len; i += strlen(r->fields + i) + 1) {
        const char *f = r->fields + i, *v;
        if (starts(f, "arg=", &v)) nargs++;
        else if (starts(f, "env=", &v)) nenv++;
    }
    r->argv_mem = calloc(nargs + 2, sizeof *r->argv_mem);
    r->envp = calloc(nenv + 2, sizeof *r->envp); /* + the command marker */
    if (!r->argv_mem || !r->envp) {
        http_send_error(c, 500, "internal", "out of memory");
        return -1;
    }
    char **argv = r->argv_mem + 1;
    size_t ai = 0, ei = 0;
    r->cwd = "/";
    r->max_output = DEFAULT_MAX_OUTPUT;
    for (size_t i = 0; i < r->fields_len; i += strlen(r->fields + i) + 1) {
        const char *f = r->fields + i, *v;
        uint64_t n;
        if (starts(f, "arg=", &v)) {
            argv[ai++] = (char *)v;
        } else if (starts(f, "env=", &v)) {
            if (!strchr(v, '=')) {
                http_send_error(c, 400, "bad_request", "env entries must be K=V");
                return -1;
            }
            if (strncmp(v, "SANDPIT_COMMAND_ID=", 19) == 0) continue; /* the agent sets it */
            r->envp[ei++] = (char *)v;
            r->nenv = ei;
            if (strncmp(v, "PATH=", 5) == 0) r->path = v + 5;
        } else if (starts(f, "cwd=", &v)) {
            if (!valid_abs_path(v)) {
                http_send_error(c, 400, "bad_request", "cwd must be an absolute path");
                return -1;
            }
            r->cwd = v;
        } else if (starts(f, "id=", &v)) {
            if (!valid_id(v)) {
                http_send_error(c, 400, "bad_request", "id must be 1-128 characters of [A-Za-z0-9._-]");
                return -1;
            }
            r->id = v;
        } else if (starts(f, "timeout_ms=", &v)) {
            if (parse_u64(v, &n) != 0 || n > ((uint64_t)1 << 40)) goto bad_number;
            r->timeout_ms = n;
        } else if (starts(f, "max_output=", &v)) {
            if (parse_u64(v, &n) != 0) goto bad_number;
            r->max_output = n;
        } else if (starts(f, "uid=", &v)) {
            if (parse_u64(v, &n) != 0 || n > 0xfffffffeu) goto bad_number;
            r->uid = (uid_t)n;
            r->set_uid = 1;
        } else if (starts(f, "gid=", &v)) {
            if (parse_u64(v, &n) != 0 || n > 0xfffffffeu) goto bad_number;
            r->gid = (gid_t)n;
            r->set_gid = 1;
        } else if (starts(f, "background=", &v)) {
            r->background = strcmp(v, "1") == 0 || strcmp(v, "true") == 0;
        } else if (starts(f, "stdin_open=", &v)) {
            r->stdin_open = strcmp(v, "1") == 0 || strcmp(v, "true") == 0;
        } else if (starts(f, "pty=", &v)) {
            r->pty = strcmp(v, "1") == 0 || strcmp(v, "true") == 0;
        } else if (starts(f, "cols=", &v)) {
            if (parse_u64(v, &n) != 0 || n == 0 || n > 10000) goto bad_number;
            r->cols = (unsigned short)n;
        } else if (starts(f, "rows=", &v)) {
            if (parse_u64(v, &n) != 0 || n == 0 || n > 10000) goto bad_number;
            r->rows = (unsigned short)n;
        }
        /* unknown fields are ignored (forward compatibility) */
    }
    if (nargs == 0) {
        http_send_error(c, 400, "bad_request", "at least one arg= field is required");
        return -1;
    }
    return 0;
bad_number:
    http_send_error(c, 400, "bad_request", "invalid numeric field");
    return -1;
}

static void send_started_json(struct http_conn *c, const char *id, pid_t pid)
{
    struct jbuf b;
    jb_init(&b);
    jb_puts(&b, "{\"id\":");
    jb_str(&b, id);
    jb_puts(&b, ",\"pid\":");
    jb_int(&b, pid);
    jb_putc(&b, '}');
    http_send_jbuf(c, 200, &b);
    jb_free(&b);
}

void handle_exec(struct http_conn *c)
{
    static uint64_t auto_id;
    struct exec_req r;
    memset(&r, 0, sizeof r);
    if (read_exec_fields(c, &r) != 0 || parse_exec_fields(c, &r) != 0) {
        exec_req_free(&r);
        return;
    }
    char idbuf[64];
    if (!r.id) {
        pthread_mutex_lock(&g_cmd_mu);
        uint64_t n = ++auto_id;
        pthread_mutex_unlock(&g_cmd_mu);
        snprintf(idbuf, sizeof idbuf, "cmd-%d-%llu", (int)getpid(), (unsigned long long)n);
        r.id = idbuf;
    }
    struct command *cmd = cmd_new(r.id, r.background);
    if (!cmd) {
        http_send_errno(c, errno, "exec");
        exec_req_free(&r);
        return;
    }
    if (cmd_register(cmd) != 0) {
        http_send_error(c, 409, "exists", "a command with this id exists");
        cmd_unref(cmd);
        exec_req_free(&r);
        return;
    }
    if (r.background) {
        cmd->log_fd = log_open(cmd->id);
        if (cmd->log_fd < 0) {
            http_send_errno(c, errno, "command log");
            goto fail_unregister;
        }
    }

    snprintf(cmd->marker, sizeof cmd->marker, "SANDPIT_COMMAND_ID=%s", cmd->id);
    r.envp[r.nenv] = cmd->marker;

    struct spawn_spec sp = {
        .argv = r.argv_mem + 1,
        .envp = r.envp,
        .path = r.path,
        .cwd = r.cwd,
        .set_uid = r.set_uid,
        .set_gid = r.set_gid,
        .uid = r.uid,
        .gid = r.gid,
        .pty = r.pty,
        .cols = r.cols,
        .rows = r.rows,
    };
    int out_fd, err_fd;
    struct child_err ce;
    if (spawn_command(cmd, &sp, &out_fd, &err_fd, &ce) != 0) {
        http_send_errno(c, errno, "spawn");
        goto fail_unregister;
    }

    struct pump *p = calloc(1, sizeof *p);
    if (!p) {
        kill_tree(cmd->pid, cmd->marker);
        close(out_fd);
        if (err_fd >= 0) close(err_fd);
        http_send_error(c, 500, "internal", "out of memory");
        goto fail_unregister;
    }
    p->cmd = cmd;
    p->out_fd = out_fd;
    p->err_fd = err_fd;
    p->max_output = r.max_output;
    p->stdin_open = r.stdin_open;
    if (r.timeout_ms) p->deadline = cmd->start_ms + (int64_t)r.timeout_ms;

    /* stdin bytes that arrived together with the fields */
    const char *pre = r.fields + r.fields_len + (r.fields_len < r.body_len ? 1 : 0);
    size_t prelen = (size_t)(r.fields + r.body_len - pre);

    if (r.background) {
        emit_started(p, cmd->pid);
        if (ce.stage != STAGE_OK) emit_spawn_error(p, &ce, sp.argv[0], r.cwd);
        pid_t pid = cmd->pid;
        int rc = pump_start_background(p);
        if (rc != 0) {
            kill_tree(pid, cmd->marker);
            close(out_fd);
            if (err_fd >= 0) close(err_fd);
            free(p);
            http_send_errno(c, rc, "thread");
            goto fail_unregister;
        }
        /* p now belongs to the thread */
        int fr = cmd_stdin_from_body(c, cmd, pre, prelen);
        if (!r.stdin_open) cmd_stdin_close(cmd);
        if (fr >= 0) send_started_json(c, cmd->id, pid);
        cmd_unref(cmd);
        exec_req_free(&r);
        return;
    }

    /* foreground */
    p->conn = c;
    /* reuse the fields buffer (no longer needed after the fork) as the stdin staging buffer */
    memmove(r.fields, pre, prelen);
    p->inbuf = r.fields;
    p->incap = r.cap;
    p->in_off = 0;
    p->in_len = prelen;
    p->body_eof = c->body_done;
    http_cork(c);
    if (http_send_head(c, 200, "application/x-sandpit-frames", -1) != 0) pump_client_gone(p);
    emit_started(p, cmd->pid);
    if (ce.stage != STAGE_OK) emit_spawn_error(p, &ce, sp.argv[0], r.cwd);
    if (http_uncork(c) != 0) pump_client_gone(p);
    int exited = pump_run(p);
    if (exited && !p->client_gone) {
        http_cork(c);
        emit_exit(p);
        if (!p->client_gone) http_chunk_end(c);
        if (http_uncork(c) != 0) pump_client_gone(p);
    }
    if (!exited || p->client_gone) c->dead = 1;
    free(p);
    cmd_stdin_close(cmd);
    cmd_unregister(cmd);
    cmd_unref(cmd);
    exec_req_free(&r);
    return;

fail_unregister:
    cmd_unregister(cmd);
    cmd_unref(cmd);
    exec_req_free(&r);
}
