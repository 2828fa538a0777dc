/* GET /files/watch?path=P[&recursive=1]: file changes under a directory as NDJSON lines, streamed
 * (chunked) until the client goes away. inotify sees every change made inside the sandbox. */
#include "watch.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "files.h"
#include "json.h"
#include "util.h"

#define WATCH_MAX 8192 /* directories watched by one request */
#define WATCH_BUF 16384
#define WATCH_MASK                                                                                       \
    (IN_CREATE | IN_DELETE | IN_MODIFY | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF | IN_ATTRIB |      \
     IN_ONLYDIR | IN_EXCL_UNLINK)

struct watch {
    int wd;
    char *path;
};

struct watcher {
    int fd;
    int recursive;
    struct watch *w;
    size_t n, cap;
    int overflowed;
};

static const char *watch_path(struct watcher *ws, int wd)
{
    for (size_t i = 0; i < ws->n; i++)
        if (ws->w[i].wd == wd) return ws->w[i].path;
    return NULL;
}

static void watch_forget(struct watcher *ws, int wd)
{
    for (size_t i = 0; i < ws->n; i++) {
        if (ws->w[i].wd != wd) continue;
        free(ws->w[i].path);
        ws->w[i] = ws->w[--ws->n];
        return;
    }
}

/* Watches a directory (and, when recursive, every directory below it). */
static void watch_add(struct watcher *ws, const char *dir, int depth)
{
    if (ws->n >= WATCH_MAX) {
        ws->overflowed = 1;
        return;
    }
    int wd = inotify_add_watch(ws->fd, dir, WATCH_MASK);
    if (wd < 0) return;
    if (!watch_path(ws, wd)) {
        if (ws->n == ws->cap) {
            size_t nc = ws->cap ? ws->cap * 2 : 64;
            struct watch *nw = realloc(ws->w, nc * sizeof *nw);
            if (!nw) return;
            ws->w = nw;
            ws->cap = nc;
        }
        char *copy = strdup(dir);
        if (!copy) return;
        ws->w[ws->n++] = (struct watch){ .wd = wd, .path = copy };
    }
    if (!ws->recursive || depth > 64) return;
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char child[PATH_MAX];
        int n = snprintf(child, sizeof child, "%s/%s", strcmp(dir, "/") ? dir : "", e->d_name);
        if (n <= 0 || (size_t)n >= sizeof child) continue;
        int is_dir = e->d_type == DT_DIR;
        if (e->d_type == DT_UNKNOWN) {
            struct stat st;
            is_dir = lstat(child, &st) == 0 && S_ISDIR(st.st_mode);
        }
        if (is_dir) watch_add(ws, child, depth + 1);
    }
    closedir(d);
}

static int send_line(struct http_conn *c, struct jbuf *b)
{
    jb_putc(b, '\n');
    if (b->oom) return 0;
    return http_chunk(c, b->p, b->len);
}

static int send_event(struct http_conn *c, const char *type, const char *path, const char *from, int is_dir)
{
    struct jbuf b;
    jb_init(&b);
    jb_puts(&b, "{\"type\":");
    jb_str(&b, type);
    jb_puts(&b, ",\"path\":");
    jb_str(&b, path);
    if (from) {
        jb_puts(&b, ",\"from\":");
        jb_str(&b, from);
    }
    jb_puts(&b, ",\"isDir\":");
    jb_bool(&b, is_dir);
    jb_putc(&b, '}');
    int rc = send_line(c, &b);
    jb_free(&b);
    return rc;
}

/* A rename is a MOVED_FROM and a MOVED_TO with one cookie; an unmatched half is a delete or a create.
 * `upload` is set when the file moved is an upload's temp file (its UPLOAD_TEMP_* letter). */
struct pending_move {
    uint32_t cookie;
    char path[PATH_MAX];
    int is_dir;
    char upload;
};

/* An upload's temp file: its letter (UPLOAD_TEMP_CREATES or UPLOAD_TEMP_WRITES), else 0. A temp file of
 * another writer (the server writes volumes the same way, without the letter) counts as a write. */
static char upload_temp_kind(const char *name)
{
    size_t pl = sizeof UPLOAD_TEMP_PREFIX - 1;
    if (strncmp(name, UPLOAD_TEMP_PREFIX, pl) != 0) return 0;
    return name[pl] == UPLOAD_TEMP_CREATES && name[pl + 1] == '.' ? UPLOAD_TEMP_CREATES : UPLOAD_TEMP_WRITES;
}

/* What an upload did to its target, as the events a direct write would give: a new file is created and
 * written, an existing one written. */
static int send_upload(struct http_conn *c, const char *path, char kind)
{
    if (kind == UPLOAD_TEMP_CREATES && send_event(c, "create", path, NULL, 0) != 0) return -1;
    return send_event(c, "modify", path, NULL, 0);
}

void handle_file_watch(struct http_conn *c)
{
    char *path = http_query_get(c, "path");
    if (!path || !valid_abs_path(path)) {
        free(path);
        http_send_error(c, 400, "bad_request", "query parameter 'path' must be an absolute path");
        return;
    }
    size_t plen = strlen(path);
    while (plen > 1 && path[plen - 1] == '/') path[--plen] = 0;
    struct stat st;
    if (stat(path, &st) != 0) {
        http_send_errno(c, errno, path);
        free(path);
        return;
    }
    if (!S_ISDIR(st.st_mode)) {
        free(path);
        http_send_error(c, 400, "not_directory", "watch a directory");
        return;
    }
    struct watcher ws = { .fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK), .recursive = http_query_flag(c, "recursive") };
    if (ws.fd < 0) {
        http_send_errno(c, errno, "inotify");
        free(path);
        return;
    }
    watch_add(&ws, path, 0);
    c->keepalive = 0; /* the stream ends when either side closes */
    if (http_send_head(c, 200, "application/x-ndjson", -1) != 0) goto done;
    {
        struct jbuf b;
        jb_init(&b);
        jb_puts(&b, "{\"type\":\"ready\",\"path\":");
        jb_str(&b, path);
        jb_puts(&b, ",\"recursive\":");
        jb_bool(&b, ws.recursive);
        jb_puts(&b, ",\"watches\":");
        jb_int(&b, (long long)ws.n);
        jb_putc(&b, '}');
        int rc = send_line(c, &b);
        jb_free(&b);
        if (rc != 0) goto done;
    }
    /* On the heap: connection threads have small stacks. */
    char *buf = aligned_alloc(__alignof__(struct inotify_event), WATCH_BUF);
    struct pending_move *movep = calloc(1, sizeof *movep); /* holds a PATH_MAX path */
    if (!buf || !movep) {
        free(buf);
        free(movep);
        goto done;
    }
    for (;;) {
        struct pollfd fds[2] = { { .fd = ws.fd, .events = POLLIN }, { .fd = c->fd, .events = POLLIN | POLLRDHUP } };
        int pr = poll(fds, 2, movep->cookie ? 50 : 30000);
        if (pr < 0 && errno != EINTR) break;
        /* the client sends nothing on this connection while watching: it can only close it */
        if (fds[1].revents && http_peek(c) < 0) break;
        if (pr == 0 && movep->cookie) {
            /* moved out of the watched tree (an upload's temp file was never shown) */
            if (!movep->upload && send_event(c, "delete", movep->path, NULL, movep->is_dir) != 0) break;
            movep->cookie = 0;
            continue;
        }
        if (!(fds[0].revents & POLLIN)) continue;
        ssize_t len = read(ws.fd, buf, WATCH_BUF);
        if (len <= 0) continue;
        int failed = 0;
        for (char *p = buf; p < buf + len && !failed;) {
            struct inotify_event *ev = (struct inotify_event *)p;
            p += sizeof *ev + ev->len;
            if (ev->mask & IN_Q_OVERFLOW) {
                failed = send_event(c, "overflow", path, NULL, 1) != 0;
                continue;
            }
            if (ev->mask & IN_IGNORED) {
                watch_forget(&ws, ev->wd);
                continue;
            }
            const char *dir = watch_path(&ws, ev->wd);
            if (!dir || !ev->len) continue;
            char full[PATH_MAX];
            int n = snprintf(full, sizeof full, "%s/%s", strcmp(dir, "/") ? dir : "", ev->name);
            if (n <= 0 || (size_t)n >= sizeof full) continue;
            int is_dir = (ev->mask & IN_ISDIR) != 0;
            if (movep->cookie && !((ev->mask & IN_MOVED_TO) && ev->cookie == movep->cookie)) {
                if (!movep->upload) failed = send_event(c, "delete", movep->path, NULL, movep->is_dir) != 0;
                movep->cookie = 0;
            }
            char upload = is_dir ? 0 : upload_temp_kind(ev->name);
            if (upload && !(ev->mask & IN_MOVED_FROM)) {
                /* the temp file being made, written, chmod-ed or cleaned up: Sandpit's doing, not the user's */
                continue;
            }
            if (ev->mask & IN_CREATE) {
                failed = failed || send_event(c, "create", full, NULL, is_dir) != 0;
                if (is_dir && ws.recursive) watch_add(&ws, full, 1);
            } else if (ev->mask & IN_MOVED_FROM) {
                movep->cookie = ev->cookie;
                snprintf(movep->path, sizeof movep->path, "%s", full);
                movep->is_dir = is_dir;
                movep->upload = upload;
            } else if (ev->mask & IN_MOVED_TO) {
                if (movep->cookie && ev->cookie == movep->cookie && movep->upload) {
                    failed = failed || send_upload(c, full, movep->upload) != 0;
                    movep->cookie = 0;
                } else if (movep->cookie && ev->cookie == movep->cookie) {
                    failed = failed || send_event(c, "rename", full, movep->path, is_dir) != 0;
                    movep->cookie = 0;
                } else {
                    failed = failed || send_event(c, "create", full, NULL, is_dir) != 0;
                }
                if (is_dir && ws.recursive) watch_add(&ws, full, 1);
            } else if (ev->mask & IN_DELETE) {
                failed = failed || send_event(c, "delete", full, NULL, is_dir) != 0;
            } else if (ev->mask & IN_MODIFY) {
                failed = failed || send_event(c, "modify", full, NULL, is_dir) != 0;
            } else if (ev->mask & IN_ATTRIB) {
                failed = failed || send_event(c, "chmod", full, NULL, is_dir) != 0;
            }
        }
            if (failed) break;
    }
    free(buf);
    free(movep);
done:
    c->dead = 1;
    for (size_t i = 0; i < ws.n; i++) free(ws.w[i].path);
    free(ws.w);
    close(ws.fd);
    free(path);
}
