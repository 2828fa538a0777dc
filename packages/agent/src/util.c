#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

struct agent_config g_cfg;

int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int start_detached_thread(void *(*fn)(void *), void *arg, size_t stack_size)
{
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, stack_size);
    pthread_t t;
    int rc = pthread_create(&t, &attr, fn, arg);
    pthread_attr_destroy(&attr);
    return rc;
}

void logmsg(const char *fmt, ...)
{
    char buf[512];
    int n = snprintf(buf, sizeof buf, "sandpit-agent[%d]: ", (int)getpid());
    if (n < 0 || (size_t)n >= sizeof buf) return;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0) return;
    size_t len = (size_t)n + (size_t)m;
    if (len > sizeof buf - 2) len = sizeof buf - 2;
    buf[len++] = '\n';
    ssize_t w = write(2, buf, len);
    (void)w;
}

int errno_status(int err, const char **code)
{
    switch (err) {
    case ENOENT: *code = "not_found"; return 404;
    case EISDIR: *code = "is_directory"; return 400;
    case ENOTDIR: *code = "not_directory"; return 400;
    case EEXIST: *code = "exists"; return 409;
    case EACCES:
    case EPERM:
    case EROFS: *code = "permission_denied"; return 403;
    case ENOSPC:
    case EDQUOT: *code = "no_space"; return 507;
    case ENOTEMPTY: *code = "not_empty"; return 409;
    case EBUSY: *code = "busy"; return 409; /* a mount point: rmdir and rename refuse it */
    case ENAMETOOLONG:
    case EINVAL:
    case ELOOP:
    case EXDEV: *code = "bad_request"; return 400;
    case EFBIG: *code = "too_large"; return 413;
    default: *code = "internal"; return 500;
    }
}

void iov_advance(struct iovec **iov, int *cnt, size_t n)
{
    struct iovec *v = *iov;
    while (*cnt > 0 && n >= v->iov_len) {
        n -= v->iov_len;
        v++;
        (*cnt)--;
    }
    if (*cnt > 0) {
        v->iov_base = (char *)v->iov_base + n;
        v->iov_len -= n;
    }
    *iov = v;
}

int set_nonblock(int fd, int on)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0) return -1;
    fl = on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
    return fcntl(fd, F_SETFL, fl);
}

int write_all_fd(int fd, const void *p, size_t n)
{
    const char *s = p;
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w > 0) {
            s += w;
            n -= (size_t)w;
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else if (w < 0 && errno == EAGAIN) {
            struct pollfd pfd = { .fd = fd, .events = POLLOUT };
            if (poll(&pfd, 1, -1) < 0 && errno != EINTR) return -1;
        } else {
            if (w == 0) errno = EIO;
            return -1;
        }
    }
    return 0;
}

int valid_abs_path(const char *p)
{
    return p && p[0] == '/' && strlen(p) < PATH_MAX;
}

int valid_id(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > AGENT_ID_MAX || id[0] == '.') return 0;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
              c == '_' || c == '.'))
            return 0;
    }
    return 1;
}

int ct_equal(const char *a, size_t alen, const char *b, size_t blen)
{
    /* Time depends only on the expected length (blen), never on where the first difference is. */
    unsigned char diff = (unsigned char)(alen != blen);
    for (size_t i = 0; i < blen; i++) {
        unsigned char x = i < alen ? (unsigned char)a[i] : 0;
        diff |= (unsigned char)(x ^ (unsigned char)b[i]);
    }
    return diff == 0;
}

int mkdir_p(const char *path, mode_t mode, mode_t last_mode, int *created)
{
    if (created) *created = 0;
    size_t len = strlen(path);
    if (len == 0 || len >= PATH_MAX) {
        errno = ENAMETOOLONG;
        return -1;
    }
    char *p = malloc(len + 1);
    if (!p) return -1;
    memcpy(p, path, len + 1);
    while (len > 1 && p[len - 1] == '/') p[--len] = 0;
    int rc = 0;
    for (size_t i = 1; i <= len; i++) {
        if (i < len && p[i] != '/') continue;
        int last = i == len;
        char saved = p[i];
        p[i] = 0;
        if (mkdir(p, last ? last_mode : mode) == 0) {
            if (last && created) *created = 1;
        } else if (errno == EEXIST) {
            struct stat st;
            if (stat(p, &st) != 0) {
                rc = -1;
                break;
            }
            if (!S_ISDIR(st.st_mode)) {
                errno = last ? EEXIST : ENOTDIR;
                rc = -1;
                break;
            }
        } else {
            rc = -1;
            break;
        }
        p[i] = saved;
    }
    int e = errno;
    free(p);
    errno = e;
    return rc;
}

int parse_u64(const char *s, uint64_t *out)
{
    if (!s || !*s) return -1;
    uint64_t v = 0;
    for (const char *q = s; *q; q++) {
        if (*q < '0' || *q > '9') return -1;
        if (v > (UINT64_MAX - 9) / 10) return -1;
        v = v * 10 + (uint64_t)(*q - '0');
    }
    *out = v;
    return 0;
}

void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}
