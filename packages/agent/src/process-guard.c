#include "process-guard.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

/* Inherited by the server across fork (not exec: O_CLOEXEC keeps them from commands). */
static int g_procs_fd = -1;   /* the commands' cgroup.procs */
static int g_current_fd = -1; /* its pids.current */

/* Near the limit the guard looks every 5 ms, so that a bash bomb (one fork every few ms under systrap)
 * meets it within a few hundred forks of the limit. Far below it, every 100 ms: each wake-up of an idle
 * sandbox costs host CPU under systrap (5 ms polls raised an idle sandbox above 10 % of a core), and a
 * bomb needs seconds to climb from a quarter of the limit to all of it. */
#define GUARD_POLL_NEAR_MS 5
#define GUARD_POLL_FAR_MS 100
#define GUARD_NEAR_TASKS (GUARD_PIDS_MAX / 4)

static int write_file_at(int dirfd, const char *name, const char *text)
{
    int fd = openat(dirfd, name, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t w = write(fd, text, strlen(text));
    int e = errno;
    close(fd);
    errno = e;
    return w == (ssize_t)strlen(text) ? 0 : -1;
}

int guard_setup(const char *run_dir)
{
    char mnt[512];
    snprintf(mnt, sizeof mnt, "%s.pids-cgroup", run_dir);
    if (mkdir(mnt, 0700) != 0 && errno != EEXIST) goto fail;
    if (mount("cgroup", mnt, "cgroup", MS_NOSUID | MS_NODEV | MS_NOEXEC, "pids") != 0) goto fail;
    int root = open(mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root < 0) goto fail_mounted;
    if (mkdirat(root, "sandpit-commands", 0700) != 0 && errno != EEXIST) goto fail_root;
    int dir = openat(root, "sandpit-commands", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0) goto fail_root;
    char max[32];
    snprintf(max, sizeof max, "%d", GUARD_PIDS_MAX);
    if (write_file_at(dir, "pids.max", max) != 0) goto fail_dir;
    g_procs_fd = openat(dir, "cgroup.procs", O_RDWR | O_CLOEXEC);
    g_current_fd = openat(dir, "pids.current", O_RDONLY | O_CLOEXEC);
    if (g_procs_fd < 0 || g_current_fd < 0) goto fail_dir;
    close(dir);
    close(root);
    /* The descriptors stay usable; the path goes, so no command (root included) can raise pids.max or
     * move itself out. Mounting cgroupfs again needs CAP_SYS_ADMIN, which commands never get. */
    umount2(mnt, MNT_DETACH);
    rmdir(mnt);
    logmsg("process guard: commands limited to %d tasks", GUARD_PIDS_MAX);
    return 0;
fail_dir : {
    int e = errno;
    close(dir);
    errno = e;
}
fail_root : {
    int e = errno;
    close(root);
    errno = e;
}
fail_mounted : {
    int e = errno;
    umount2(mnt, MNT_DETACH);
    errno = e;
}
fail:
    logmsg("process guard unavailable (%s): commands run without a process limit", strerror(errno));
    rmdir(mnt);
    if (g_procs_fd >= 0) close(g_procs_fd);
    if (g_current_fd >= 0) close(g_current_fd);
    g_procs_fd = g_current_fd = -1;
    return -1;
}

int guard_enter(void)
{
    if (g_procs_fd < 0) return 0;
    char buf[24];
    char *p = buf + sizeof buf;
    long pid = syscall(SYS_getpid);
    do {
        *--p = (char)('0' + pid % 10);
        pid /= 10;
    } while (pid > 0);
    long w = syscall(SYS_pwrite64, g_procs_fd, p, (size_t)(buf + sizeof buf - p), 0);
    return w < 0 ? errno : 0;
}

static long read_count(int fd)
{
    char buf[32];
    ssize_t r = pread(fd, buf, sizeof buf - 1, 0);
    if (r <= 0) return -1;
    buf[r] = 0;
    return strtol(buf, NULL, 10);
}

/* Every process of the guest's PID namespace other than the guest init and this server is a command or
 * a descendant of one, so all of them are in the commands' cgroup: one kill(-1) ends them all at once.
 * Killing them one by one from cgroup.procs is too slow: under a bomb each kill() gives the survivors
 * time to fork again. Returns the tasks left when it gave up waiting (zombies whose parent
 * has not reaped them yet stay counted for a moment). */
static long empty_cgroup(void)
{
    int64_t deadline = now_ms() + 5000;
    long left;
    do {
        kill(-1, SIGKILL);
        left = read_count(g_current_fd);
        if (left <= 0) break;
        sleep_ms(1);
    } while (now_ms() < deadline);
    return left;
}

static void *guard_main(void *arg)
{
    (void)arg;
    long n = 0;
    for (;;) {
        sleep_ms(n < GUARD_NEAR_TASKS ? GUARD_POLL_FAR_MS : GUARD_POLL_NEAR_MS);
        n = read_count(g_current_fd);
        if (n < GUARD_PIDS_MAX) continue;
        int64_t t0 = now_ms();
        long left = empty_cgroup();
        logmsg("process guard: commands reached %ld of %d tasks (a fork bomb?): killed them all in %lld ms, %ld left",
               n, GUARD_PIDS_MAX, (long long)(now_ms() - t0), left);
        n = 0;
    }
    return NULL;
}

void guard_start(void)
{
    if (g_current_fd < 0) return;
    if (start_detached_thread(guard_main, NULL, 64 * 1024) != 0) logmsg("cannot start the process guard thread");
}
