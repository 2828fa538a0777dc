#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "activity.h"
#include "checkpoint-blockers.h"
#include "exec.h"
#include "files.h"
#include "watch.h"
#include "http.h"
#include "process-guard.h"
#include "util.h"

#define MAX_CONNS 1024
#define CONN_STACK (256 * 1024)

static int g_conns;

int server_listen(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)g_cfg.port);
    if (inet_pton(AF_INET, g_cfg.listen_ip, &a.sin_addr) != 1 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(fd, 128) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static void handle_health(struct http_conn *c)
{
    char json[128];
    int n = snprintf(json, sizeof json, "{\"ok\":true,\"version\":\"%s\",\"pid\":%d}", AGENT_VERSION, (int)getpid());
    http_send_json(c, 200, json, (size_t)n);
}

static int method_is(struct http_conn *c, const char *m)
{
    if (strcmp(c->method, m) == 0) return 1;
    return 0;
}

static void method_not_allowed(struct http_conn *c)
{
    http_send_error(c, 405, "bad_request", "method not allowed");
}

static void route_command(struct http_conn *c, const char *rest)
{
    /* rest = "{id}" or "{id}/{sub}" */
    char id[AGENT_ID_MAX * 3 + 1];
    const char *slash = strchr(rest, '/');
    size_t idlen = slash ? (size_t)(slash - rest) : strlen(rest);
    const char *sub = slash ? slash + 1 : "";
    if (idlen == 0 || idlen >= sizeof id) {
        http_send_error(c, 404, "not_found", "unknown command");
        return;
    }
    memcpy(id, rest, idlen);
    id[idlen] = 0;
    if (http_pct_decode(id, 0) != 0 || !valid_id(id)) {
        http_send_error(c, 400, "bad_request", "invalid command id");
        return;
    }
    if (strcmp(sub, "") == 0) {
        if (method_is(c, "GET")) handle_command_status(c, id);
        else method_not_allowed(c);
    } else if (strcmp(sub, "frames") == 0) {
        if (method_is(c, "GET")) handle_command_frames(c, id);
        else method_not_allowed(c);
    } else if (strcmp(sub, "signal") == 0) {
        if (method_is(c, "POST")) handle_command_signal(c, id);
        else method_not_allowed(c);
    } else if (strcmp(sub, "stdin") == 0) {
        if (method_is(c, "POST")) handle_command_stdin(c, id);
        else method_not_allowed(c);
    } else if (strcmp(sub, "resize") == 0) {
        if (method_is(c, "POST")) handle_command_resize(c, id);
        else method_not_allowed(c);
    } else {
        http_send_error(c, 404, "not_found", "no such endpoint");
    }
}

static void dispatch(struct http_conn *c)
{
    if (!c->authorized) {
        if (!c->body_done) c->keepalive = 0;
        http_send_error(c, 401, "unauthorized", "missing or invalid X-Sandpit-Token");
        return;
    }
    const char *p = c->path;
    if (strcmp(p, "/health") == 0) {
        if (method_is(c, "GET")) handle_health(c);
        else method_not_allowed(c);
    } else if (strcmp(p, "/activity") == 0) {
        if (method_is(c, "GET")) handle_activity(c);
        else method_not_allowed(c);
    } else if (strcmp(p, "/checkpoint-blockers") == 0) {
        if (method_is(c, "GET")) handle_checkpoint_blockers(c);
        else method_not_allowed(c);
    } else if (strcmp(p, "/exec") == 0) {
        if (method_is(c, "POST")) handle_exec(c);
        else method_not_allowed(c);
    } else if (strcmp(p, "/commands") == 0) {
        if (method_is(c, "GET")) handle_commands_list(c);
        else method_not_allowed(c);
    } else if (strncmp(p, "/commands/", 10) == 0) {
        route_command(c, p + 10);
    } else if (strcmp(p, "/files") == 0) {
        if (method_is(c, "GET")) handle_file_get(c);
        else if (method_is(c, "PUT")) handle_file_put(c);
        else if (method_is(c, "DELETE")) handle_file_delete(c);
        else method_not_allowed(c);
    } else if (strcmp(p, "/files/stat") == 0) {
        if (method_is(c, "GET")) handle_file_stat(c);
        else method_not_allowed(c);
    } else if (strcmp(p, "/files/list") == 0) {
        if (method_is(c, "GET")) handle_file_list(c);
        else method_not_allowed(c);
    } else if (strcmp(p, "/files/mkdir") == 0) {
        if (method_is(c, "POST")) handle_file_mkdir(c);
        else method_not_allowed(c);
    } else if (strcmp(p, "/files/watch") == 0) {
        if (method_is(c, "GET")) handle_file_watch(c);
        else method_not_allowed(c);
    } else if (strcmp(p, "/files/move") == 0) {
        if (method_is(c, "POST")) handle_file_move(c);
        else method_not_allowed(c);
    } else {
        http_send_error(c, 404, "not_found", "no such endpoint");
    }
}

static void *conn_main(void *arg)
{
    int fd = (int)(intptr_t)arg;
    struct http_conn c;
    if (http_conn_init(&c, fd) == 0) {
        while (http_read_request(&c) == 1) {
            dispatch(&c);
            if (c.dead || !c.keepalive) break;
            /* whatever the handler did not read of the body is skipped */
            if (!c.body_done && http_body_discard(&c, UINT64_MAX) != 0) break;
        }
    }
    http_conn_free(&c);
    close(fd);
    __atomic_sub_fetch(&g_conns, 1, __ATOMIC_RELAXED);
    return NULL;
}

static int peer_allowed(int fd, const struct sockaddr_in *peer)
{
    if (g_cfg.allow_remote) {
        struct sockaddr_in local;
        socklen_t ll = sizeof local;
        if (getsockname(fd, (struct sockaddr *)&local, &ll) != 0 || local.sin_family != AF_INET) return 0;
        uint32_t p = ntohl(peer->sin_addr.s_addr);
        if ((p >> 24) == 127) return 0;                                 /* loopback: the sandbox itself */
        return peer->sin_addr.s_addr != local.sin_addr.s_addr;          /* its own address: itself too */
    }
    if (g_cfg.nallow == 0) return 1;
    for (int i = 0; i < g_cfg.nallow; i++)
        if (g_cfg.allow[i] == peer->sin_addr.s_addr) return 1;
    return 0;
}

static void *signal_main(void *arg)
{
    sigset_t *set = arg;
    int sig = 0;
    sigwait(set, &sig);
    logmsg("signal %d: killing running commands", sig);
    exec_kill_all();
    _exit(0);
}

void server_main(int lfd)
{
    static sigset_t term_set;
    signal(SIGPIPE, SIG_IGN);
    umask(022);
    if (!g_cfg.supervised) {
        /* host mode: a SIGTERM takes the running commands down with the agent */
        sigemptyset(&term_set);
        sigaddset(&term_set, SIGTERM);
        sigaddset(&term_set, SIGINT);
        sigaddset(&term_set, SIGHUP);
        pthread_sigmask(SIG_BLOCK, &term_set, NULL);
        if (start_detached_thread(signal_main, &term_set, 64 * 1024) != 0) logmsg("cannot start signal thread");
    }
    if (exec_init() != 0) {
        logmsg("cannot start reaper thread");
        _exit(1);
    }
    guard_start();
    int warned = 0;
    while (lfd < 0) {
        lfd = server_listen();
        if (lfd >= 0) break;
        if (!warned) logmsg("listen %s:%d: %s (retrying)", g_cfg.listen_ip, g_cfg.port, strerror(errno));
        warned = 1;
        sleep_ms(200);
    }
    if (!g_cfg.token) logmsg("warning: SANDPIT_AGENT_TOKEN is not set, requests are not authenticated");

    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, CONN_STACK);
    for (;;) {
        struct sockaddr_in peer;
        socklen_t pl = sizeof peer;
        int fd = accept4(lfd, (struct sockaddr *)&peer, &pl, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) sleep_ms(20);
            continue;
        }
        if (pl < sizeof peer || peer.sin_family != AF_INET || !peer_allowed(fd, &peer)) {
            close(fd);
            continue;
        }
        if (__atomic_add_fetch(&g_conns, 1, __ATOMIC_RELAXED) > MAX_CONNS) {
            __atomic_sub_fetch(&g_conns, 1, __ATOMIC_RELAXED);
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
        struct timeval tv = { .tv_sec = 300, .tv_usec = 0 };
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        pthread_t t;
        if (pthread_create(&t, &attr, conn_main, (void *)(intptr_t)fd) != 0) {
            __atomic_sub_fetch(&g_conns, 1, __ATOMIC_RELAXED);
            close(fd);
        }
    }
}
