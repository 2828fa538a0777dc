/* Shared helpers and the process-wide configuration. */
#ifndef SANDPIT_UTIL_H
#define SANDPIT_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define AGENT_VERSION "0.1.0"
#define AGENT_MAX_ALLOW 64
#define AGENT_ID_MAX 128

struct agent_config {
    char listen_ip[64];
    int port;
    char *token;          /* NULL: no authentication (host tests only) */
    size_t token_len;
    uint32_t allow[AGENT_MAX_ALLOW]; /* network byte order */
    int nallow;           /* 0: any peer */
    int allow_remote;     /* "remote": any peer but the sandbox itself (loopback, its own address) */
    char run_dir[1024];
    int supervised;       /* server is the child of our own PID 1 */
};

extern struct agent_config g_cfg;

int64_t now_ms(void); /* CLOCK_MONOTONIC in milliseconds */
void sleep_ms(long ms); /* nanosleep that resumes after signals */
void logmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Maps an errno to an HTTP status and one of the protocol's error codes. */
int errno_status(int err, const char **code);

/* Starts fn(arg) on a detached thread with the given stack size. pthread_create's result (0 ok). */
int start_detached_thread(void *(*fn)(void *), void *arg, size_t stack_size);

struct iovec;
/* Drops the first n bytes (already written) from an iovec array: *iov and *cnt move past the entries
 * written whole and the first one left starts after what was written of it. */
void iov_advance(struct iovec **iov, int *cnt, size_t n);

int set_nonblock(int fd, int on);
/* Writes all bytes to a (possibly non-blocking) fd, waiting with poll on EAGAIN. 0 or -1 (errno). */
int write_all_fd(int fd, const void *p, size_t n);

int valid_abs_path(const char *p);
int valid_id(const char *id);
/* Constant-time (for a given expected length) comparison; 1 when equal. */
int ct_equal(const char *a, size_t alen, const char *b, size_t blen);
/* mkdir -p. *created (optional) is set to 1 when the last component was created. 0 or -1 (errno). */
int mkdir_p(const char *path, mode_t mode, mode_t last_mode, int *created);
/* Parses a decimal unsigned integer (whole string). 0 ok, -1 invalid. */
int parse_u64(const char *s, uint64_t *out);

#endif
