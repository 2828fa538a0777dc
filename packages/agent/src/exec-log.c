#include "exec-log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "exec.h"

int log_path(char *out, size_t n, const char *id)
{
    return (size_t)snprintf(out, n, "%s/%s.frames", g_cfg.run_dir, id) < n ? 0 : -1;
}

int log_open(const char *id)
{
    if (mkdir_p(g_cfg.run_dir, 0700, 0700, NULL) != 0) return -1;
    char path[PATH_MAX];
    if (log_path(path, sizeof path, id) != 0) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
}

void log_notify_locked(struct command *cmd)
{
    for (struct follower *f = cmd->followers; f; f = f->next) {
        ssize_t w = write(f->wake_wr, "x", 1);
        (void)w;
    }
}

int log_append(struct command *cmd, int type, const void *data, size_t len)
{
    unsigned char hdr[5] = { (unsigned char)type, (unsigned char)(len >> 24), (unsigned char)(len >> 16),
                             (unsigned char)(len >> 8), (unsigned char)len };
    struct iovec iov[2] = { { hdr, 5 }, { (void *)data, len } };
    int cnt = 2;
    struct iovec *v = iov;
    size_t total = 5 + len, done = 0;
    while (done < total) {
        ssize_t w = writev(cmd->log_fd, v, cnt);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            logmsg("command %s: log write failed: %s", cmd->id, strerror(errno));
            pthread_mutex_lock(&g_cmd_mu);
            uint64_t keep = cmd->log_size;
            pthread_mutex_unlock(&g_cmd_mu);
            if (ftruncate(cmd->log_fd, (off_t)keep) != 0) { /* nothing more to do */
            }
            return -1;
        }
        done += (size_t)w;
        iov_advance(&v, &cnt, (size_t)w);
    }
    pthread_mutex_lock(&g_cmd_mu);
    cmd->log_size += total;
    log_notify_locked(cmd);
    pthread_mutex_unlock(&g_cmd_mu);
    return 0;
}

int log_status(const char *id, struct jbuf *b)
{
    char path[PATH_MAX];
    if (log_path(path, sizeof path, id) != 0) return -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    long long pid = 0;
    char payload[512];
    int found = 0;
    off_t off = 0;
    for (;;) {
        unsigned char h[5];
        if (pread(fd, h, 5, off) != 5) break;
        size_t len = (size_t)h[1] << 24 | (size_t)h[2] << 16 | (size_t)h[3] << 8 | h[4];
        if ((h[0] == FRAME_STARTED || h[0] == FRAME_EXIT) && len < sizeof payload) {
            if (pread(fd, payload, len, off + 5) != (ssize_t)len) break;
            payload[len] = 0;
            if (h[0] == FRAME_STARTED) {
                const char *q = strstr(payload, "\"pid\":");
                if (q) pid = atoll(q + 6);
            } else if (payload[0] == '{' && len > 2) {
                jb_puts(b, "{\"id\":");
                jb_str(b, id);
                jb_puts(b, ",\"pid\":");
                jb_int(b, pid);
                jb_puts(b, ",\"running\":false,");
                jb_raw(b, payload + 1, len - 1); /* the exit frame's fields are the status fields */
                found = 1;
                break;
            }
        }
        off += 5 + (off_t)len;
    }
    close(fd);
    return found ? 0 : -1;
}
