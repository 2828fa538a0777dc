#include "files.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "json.h"
#include "util.h"

/* File bodies move in 256 KB pieces: under gVisor each write into the sandbox's disk has a fixed cost
 * that 64 KB pieces made the bound of an upload (measured: 250-300 MB/s at 64 KB, 420-430 MB/s at 256 KB,
 * no gain beyond). One buffer per transfer in progress. */
#define IOBUF (256 * 1024)
#define SMALL_FILE_MAX (16u << 20) /* files reporting size 0 (procfs...) are read into memory up to this */
#define RM_MAX_DEPTH 1024

/* Returns the decoded, validated absolute path parameter, or NULL after sending 400. */
static char *path_param(struct http_conn *c, const char *key)
{
    char *p = http_query_get(c, key);
    if (!p || !valid_abs_path(p)) {
        free(p);
        char msg[96];
        snprintf(msg, sizeof msg, "query parameter '%s' must be an absolute path", key);
        http_send_error(c, 400, "bad_request", msg);
        return NULL;
    }
    /* drop trailing slashes (but keep "/") */
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/') p[--n] = 0;
    return p;
}

/* Optional octal mode parameter: 1 present, 0 absent, -1 invalid (400 sent). */
static int mode_param(struct http_conn *c, mode_t *out)
{
    char *s = http_query_get(c, "mode");
    if (!s) return 0;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 8);
    int bad = !*s || *end || errno || v < 0 || v > 07777;
    free(s);
    if (bad) {
        http_send_error(c, 400, "bad_request", "mode must be octal, at most 07777");
        return -1;
    }
    *out = (mode_t)v;
    return 1;
}

/* Optional owner (uid=, gid=) for created files and directories: 1 present, 0 absent, -1 invalid (400 sent). */
static int owner_param(struct http_conn *c, uid_t *uid, gid_t *gid)
{
    char *su = http_query_get(c, "uid"), *sg = http_query_get(c, "gid");
    if (!su && !sg) return 0;
    uint64_t u = 0, g = 0;
    int bad = !su || !sg || parse_u64(su, &u) != 0 || parse_u64(sg, &g) != 0 || u > 0xfffffffeu || g > 0xfffffffeu;
    free(su);
    free(sg);
    if (bad) {
        http_send_error(c, 400, "bad_request", "uid and gid must be given together as numbers");
        return -1;
    }
    *uid = (uid_t)u;
    *gid = (gid_t)g;
    return 1;
}

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return (s && s[1]) ? s + 1 : (s ? "/" : p);
}

static void entry_json(struct jbuf *b, const char *name, const char *path, const struct stat *st,
                       const char *target)
{
    const char *type = S_ISREG(st->st_mode) ? "file"
                       : S_ISDIR(st->st_mode) ? "dir"
                       : S_ISLNK(st->st_mode) ? "symlink"
                                              : "other";
    struct tm tm;
    time_t t = st->st_mtim.tv_sec;
    gmtime_r(&t, &tm);
    char mtime[64];
    snprintf(mtime, sizeof mtime, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, st->st_mtim.tv_nsec / 1000000);
    jb_puts(b, "{\"name\":");
    jb_str(b, name);
    jb_puts(b, ",\"path\":");
    jb_str(b, path);
    jb_puts(b, ",\"type\":");
    jb_str(b, type);
    jb_puts(b, ",\"size\":");
    jb_int(b, (long long)st->st_size);
    jb_puts(b, ",\"mode\":");
    jb_int(b, (long long)(st->st_mode & 07777));
    jb_puts(b, ",\"mtime\":");
    jb_str(b, mtime);
    jb_puts(b, ",\"uid\":");
    jb_int(b, (long long)st->st_uid);
    jb_puts(b, ",\"gid\":");
    jb_int(b, (long long)st->st_gid);
    if (target) {
        jb_puts(b, ",\"target\":");
        jb_str(b, target);
    }
    jb_putc(b, '}');
}

/* readlinkat into a malloc'd string (NULL on failure) */
static char *read_link(int dirfd, const char *name, size_t hint)
{
    size_t cap = hint > 0 && hint < PATH_MAX ? hint + 1 : 256;
    for (;;) {
        char *buf = malloc(cap);
        if (!buf) return NULL;
        ssize_t n = readlinkat(dirfd, name, buf, cap);
        if (n < 0) {
            free(buf);
            return NULL;
        }
        if ((size_t)n < cap) {
            buf[n] = 0;
            return buf;
        }
        free(buf);
        if (cap >= PATH_MAX * 2) return NULL;
        cap *= 2;
    }
}

/* ---------- GET /files ---------- */

/* Only regular files are read: a fifo would block, a device like /dev/zero never ends. */
static void send_not_regular(struct http_conn *c, mode_t mode)
{
    const char *kind = S_ISFIFO(mode)   ? "a fifo"
                       : S_ISCHR(mode)  ? "a character device"
                       : S_ISBLK(mode)  ? "a block device"
                       : S_ISSOCK(mode) ? "a socket"
                       : S_ISDIR(mode)  ? "a directory"
                                        : "of an unknown kind";
    char msg[96];
    snprintf(msg, sizeof msg, "not a regular file (%s): only regular files can be read", kind);
    http_send_error(c, 400, "bad_request", msg);
}

void handle_file_get(struct http_conn *c)
{
    char *path = path_param(c, "path");
    if (!path) return;
    /* O_NONBLOCK: opening a fifo that has no writer must not hang the agent */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    struct stat st;
    if (fd < 0) {
        int err = errno;
        /* a socket cannot be opened at all (ENXIO) */
        if (err == ENXIO && stat(path, &st) == 0 && !S_ISREG(st.st_mode)) send_not_regular(c, st.st_mode);
        else http_send_errno(c, err, path);
        free(path);
        return;
    }
    if (fstat(fd, &st) != 0) {
        http_send_errno(c, errno, path);
        goto out;
    }
    if (S_ISDIR(st.st_mode)) {
        http_send_errno(c, EISDIR, path);
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        send_not_regular(c, st.st_mode);
        goto out;
    }
    set_nonblock(fd, 0);
    if (st.st_size == 0) {
        /* procfs and friends report 0: read what is there (bounded) */
        size_t cap = 4096, len = 0;
        char *buf = malloc(cap);
        int err = 0;
        while (buf) {
            if (len == cap) {
                if (cap >= SMALL_FILE_MAX) {
                    err = EFBIG;
                    break;
                }
                char *nb = realloc(buf, cap * 2);
                if (!nb) {
                    err = ENOMEM;
                    break;
                }
                buf = nb;
                cap *= 2;
            }
            ssize_t n = read(fd, buf + len, cap - len);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) {
                err = errno;
                break;
            }
            if (n == 0) break;
            len += (size_t)n;
        }
        if (!buf) http_send_errno(c, ENOMEM, path);
        else if (err) http_send_errno(c, err, path);
        else if (http_send_head(c, 200, "application/octet-stream", (long long)len) == 0) http_send_all(c, buf, len);
        free(buf);
        goto out;
    }
    if (http_send_head(c, 200, "application/octet-stream", (long long)st.st_size) != 0) goto out;
    off_t off = 0;
    int use_sendfile = 1;
    char *buf = NULL;
    while (off < st.st_size) {
        size_t want = (size_t)(st.st_size - off) > (1u << 20) ? (1u << 20) : (size_t)(st.st_size - off);
        if (use_sendfile) {
            ssize_t n = sendfile(c->fd, fd, &off, want);
            if (n > 0) continue;
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                /* the socket is blocking: should not happen */
                continue;
            }
            if (n < 0 && (errno == EINVAL || errno == ENOSYS) && off == 0) {
                use_sendfile = 0;
                continue;
            }
            break; /* EOF (file shrank) or socket error */
        }
        if (!buf && !(buf = malloc(IOBUF))) break;
        if (want > IOBUF) want = IOBUF;
        ssize_t n = pread(fd, buf, want, off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        if (http_send_all(c, buf, (size_t)n) != 0) break;
        off += n;
    }
    free(buf);
    /* a short body cannot be repaired: the client sees the connection close */
    if (off < st.st_size) c->dead = 1;
out:
    close(fd);
    free(path);
}

/* ---------- PUT /files ---------- */

void handle_file_put(struct http_conn *c)
{
    static unsigned long counter;
    char *path = path_param(c, "path");
    if (!path) return;
    char *tmp = NULL, *real = NULL, *dir = NULL, *buf = NULL;
    int fd = -1;
    mode_t mode = 0644;
    int have_mode = mode_param(c, &mode);
    if (have_mode < 0) goto out;
    uid_t owner_uid = 0;
    gid_t owner_gid = 0;
    int have_owner = owner_param(c, &owner_uid, &owner_gid);
    if (have_owner < 0) goto out;
    if (strcmp(path, "/") == 0) {
        http_send_errno(c, EISDIR, path);
        goto out;
    }
    struct stat st;
    int exists = 0;
    if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode)) {
        /* write through a symlink to an existing file; a dangling link is replaced */
        real = realpath(path, NULL);
        if (real) {
            free(path);
            path = real;
            real = NULL;
        }
    }
    if (lstat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode)) {
            http_send_errno(c, EISDIR, path);
            goto out;
        }
        exists = S_ISREG(st.st_mode);
    }
    if (exists && !have_mode) mode = st.st_mode & 07777;
    dir = strdup(path);
    if (!dir) {
        http_send_errno(c, ENOMEM, path);
        goto out;
    }
    char *slash = strrchr(dir, '/');
    if (slash == dir) slash[1] = 0;
    else *slash = 0;
    if (http_query_flag(c, "mkdirs") && mkdir_p(dir, 0755, 0755, NULL) != 0) {
        http_send_errno(c, errno, dir);
        goto out;
    }
    size_t tl = strlen(dir) + 64;
    tmp = malloc(tl);
    if (!tmp) {
        http_send_errno(c, ENOMEM, path);
        goto out;
    }
    unsigned long n = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
    snprintf(tmp, tl, "%s/" UPLOAD_TEMP_PREFIX "%c.%d.%lu", strcmp(dir, "/") == 0 ? "" : dir,
             exists ? UPLOAD_TEMP_WRITES : UPLOAD_TEMP_CREATES, (int)getpid(), n);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        http_send_errno(c, errno, path);
        goto out;
    }
    buf = malloc(IOBUF);
    if (!buf) {
        http_send_errno(c, ENOMEM, path);
        goto out;
    }
    uint64_t total = 0;
    int werr = 0;
    for (;;) {
        ssize_t r = http_body_read(c, buf, IOBUF, 0);
        if (r == 0) break;
        if (r < 0) {
            /* the client went away mid-body: nothing to answer */
            c->dead = 1;
            goto out;
        }
        total += (uint64_t)r;
        if (!werr && write_all_fd(fd, buf, (size_t)r) != 0) werr = errno; /* keep reading the body */
    }
    if (!werr && fchmod(fd, mode) != 0) werr = errno;
    if (!werr && have_owner) {
        if (fchown(fd, owner_uid, owner_gid) != 0) werr = errno;
    } else if (!werr && exists && geteuid() == 0) {
        if (fchown(fd, st.st_uid, st.st_gid) != 0) { /* best effort */
        }
    }
    if (close(fd) != 0 && !werr) werr = errno;
    fd = -1;
    if (!werr && rename(tmp, path) != 0) werr = errno;
    if (werr) {
        http_send_errno(c, werr, path);
        goto out;
    }
    free(tmp);
    tmp = NULL;
    char json[64];
    int jl = snprintf(json, sizeof json, "{\"size\":%llu}", (unsigned long long)total);
    http_send_json(c, 201, json, (size_t)jl);
out:
    if (fd >= 0) close(fd);
    if (tmp) unlink(tmp);
    free(tmp);
    free(buf);
    free(dir);
    free(real);
    free(path);
}

/* ---------- stat / list ---------- */

void handle_file_stat(struct http_conn *c)
{
    char *path = path_param(c, "path");
    if (!path) return;
    struct stat st;
    if (lstat(path, &st) != 0) {
        http_send_errno(c, errno, path);
        free(path);
        return;
    }
    char *target = S_ISLNK(st.st_mode) ? read_link(AT_FDCWD, path, (size_t)st.st_size) : NULL;
    struct jbuf b;
    jb_init(&b);
    entry_json(&b, base_name(path), path, &st, target);
    http_send_jbuf(c, 200, &b);
    jb_free(&b);
    free(target);
    free(path);
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void handle_file_list(struct http_conn *c)
{
    char *path = path_param(c, "path");
    if (!path) return;
    int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        http_send_errno(c, errno, path);
        free(path);
        return;
    }
    DIR *d = fdopendir(dfd);
    if (!d) {
        http_send_errno(c, errno, path);
        close(dfd);
        free(path);
        return;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    int oom = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 64;
            char **nn = realloc(names, nc * sizeof *names);
            if (!nn) {
                oom = 1;
                break;
            }
            names = nn;
            cap = nc;
        }
        if (!(names[n] = strdup(e->d_name))) {
            oom = 1;
            break;
        }
        n++;
    }
    if (oom) {
        http_send_errno(c, ENOMEM, path);
    } else {
        if (n) qsort(names, n, sizeof *names, cmp_names);
        struct jbuf b;
        jb_init(&b);
        jb_putc(&b, '[');
        int first = 1;
        size_t plen = strlen(path);
        int root = strcmp(path, "/") == 0;
        for (size_t i = 0; i < n; i++) {
            struct stat st;
            if (fstatat(dfd, names[i], &st, AT_SYMLINK_NOFOLLOW) != 0) continue; /* vanished */
            size_t nl = strlen(names[i]);
            char *full = malloc(plen + nl + 2);
            if (!full) {
                b.oom = 1;
                break;
            }
            snprintf(full, plen + nl + 2, "%s/%s", root ? "" : path, names[i]);
            char *target = S_ISLNK(st.st_mode) ? read_link(dfd, names[i], (size_t)st.st_size) : NULL;
            if (!first) jb_putc(&b, ',');
            first = 0;
            entry_json(&b, names[i], full, &st, target);
            free(target);
            free(full);
        }
        jb_putc(&b, ']');
        http_send_jbuf(c, 200, &b);
        jb_free(&b);
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    closedir(d);
    free(path);
}

/* ---------- DELETE /files ---------- */

/* Removes the contents of the directory dfd (consumed), never following symlinks. */
static int rm_contents(int dfd, int depth)
{
    if (depth > RM_MAX_DEPTH) {
        close(dfd);
        errno = ELOOP;
        return -1;
    }
    DIR *d = fdopendir(dfd);
    if (!d) {
        int e = errno;
        close(dfd);
        errno = e;
        return -1;
    }
    int rc = 0, err = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *name = e->d_name;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) continue;
        int isdir = e->d_type == DT_DIR;
        if (e->d_type == DT_UNKNOWN) {
            struct stat st;
            if (fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
            isdir = S_ISDIR(st.st_mode);
        }
        if (isdir) {
            int sub = openat(dirfd(d), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0 || rm_contents(sub, depth + 1) != 0 || unlinkat(dirfd(d), name, AT_REMOVEDIR) != 0) {
                if (errno != ENOENT && !err) err = errno;
                rc = -1;
            }
        } else if (unlinkat(dirfd(d), name, 0) != 0 && errno != ENOENT) {
            if (!err) err = errno;
            rc = -1;
        }
    }
    closedir(d);
    (void)rc; /* entries that vanished meanwhile (ENOENT) are not errors */
    errno = err;
    return err ? -1 : 0;
}

void handle_file_delete(struct http_conn *c)
{
    char *path = path_param(c, "path");
    if (!path) return;
    int recursive = http_query_flag(c, "recursive");
    struct stat st, root;
    if (lstat(path, &st) != 0) {
        http_send_errno(c, errno, path);
    } else if (S_ISDIR(st.st_mode) && stat("/", &root) == 0 && st.st_dev == root.st_dev && st.st_ino == root.st_ino) {
        /* by inode, not by name: "/.", "/tmp/.." and a path through a symlink to / are the root too */
        http_send_error(c, 400, "bad_request", "refusing to remove the root directory /");
    } else if (S_ISDIR(st.st_mode)) {
        int rc = 0;
        if (recursive) {
            int dfd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            rc = dfd < 0 ? -1 : rm_contents(dfd, 0);
        }
        if (rc == 0) rc = rmdir(path);
        if (rc != 0) http_send_errno(c, errno == EEXIST ? ENOTEMPTY : errno, path);
        else http_send_empty(c, 204);
    } else if (unlink(path) != 0) {
        http_send_errno(c, errno, path);
    } else {
        http_send_empty(c, 204);
    }
    free(path);
}

/* ---------- POST /files/mkdir, /files/move ---------- */

void handle_file_mkdir(struct http_conn *c)
{
    char *path = path_param(c, "path");
    if (!path) return;
    mode_t mode = 0755;
    int have_mode = mode_param(c, &mode);
    uid_t owner_uid = 0;
    gid_t owner_gid = 0;
    int have_owner = have_mode >= 0 ? owner_param(c, &owner_uid, &owner_gid) : -1;
    if (have_mode >= 0 && have_owner >= 0) {
        int created = 0, rc;
        if (http_query_flag(c, "parents")) {
            rc = mkdir_p(path, 0755, mode, &created);
        } else {
            rc = mkdir(path, mode);
            created = rc == 0;
        }
        if (rc != 0) {
            http_send_errno(c, errno, path);
        } else {
            if (created && have_mode && chmod(path, mode) != 0) { /* umask applied; best effort */
            }
            if (created && have_owner && lchown(path, owner_uid, owner_gid) != 0) { /* best effort */
            }
            if (created) http_send_json(c, 201, "{\"created\":true}", 16);
            else http_send_json(c, 200, "{\"created\":false}", 17);
        }
    }
    free(path);
}

void handle_file_move(struct http_conn *c)
{
    char *from = path_param(c, "from");
    if (!from) return;
    char *to = path_param(c, "to");
    if (to) {
        if (rename(from, to) != 0) http_send_errno(c, errno, from);
        else http_send_empty(c, 204);
    }
    free(to);
    free(from);
}
