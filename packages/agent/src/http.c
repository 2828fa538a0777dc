#include "http.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "json.h"
#include "util.h"

enum { CH_SIZE, CH_DATA, CH_CRLF, CH_TRAILER };

int http_conn_init(struct http_conn *c, int fd)
{
    memset(c, 0, sizeof *c);
    c->fd = fd;
    c->buf = malloc(HTTP_MAX_HEAD);
    return c->buf ? 0 : -1;
}

void http_conn_free(struct http_conn *c)
{
    free(c->buf);
    free(c->target);
    c->buf = NULL;
    c->target = NULL;
}

size_t http_buffered(const struct http_conn *c) { return c->wpos - c->rpos; }

int http_peek(const struct http_conn *c)
{
    char ch;
    ssize_t k = recv(c->fd, &ch, 1, MSG_PEEK | MSG_DONTWAIT);
    if (k > 0) return 1;
    return k == 0 || (errno != EAGAIN && errno != EINTR) ? -1 : 0;
}

static const char *reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    case 507: return "Insufficient Storage";
    default: return status >= 500 ? "Internal Server Error" : "Error";
    }
}

/* ---------- sending ---------- */

static int wait_writable(struct http_conn *c)
{
    for (;;) {
        int timeout = -1;
        if (c->send_deadline) {
            int64_t left = c->send_deadline - now_ms();
            if (left <= 0) {
                c->send_deadline = 0;
                if (c->deadline_cb) c->deadline_cb(c->deadline_arg);
                continue;
            }
            timeout = left > 0x7fffffff ? 0x7fffffff : (int)left;
        }
        struct pollfd pfd = { .fd = c->fd, .events = POLLOUT };
        int r = poll(&pfd, 1, timeout);
        if (r > 0) return 0;
        if (r < 0 && errno != EINTR) return -1;
    }
}

static int sendv(struct http_conn *c, struct iovec *iov, int cnt)
{
    if (c->dead) return -1;
    size_t total = 0;
    for (int i = 0; i < cnt; i++) total += iov[i].iov_len;
    if (c->corked && c->held_len + total <= sizeof c->held) {
        for (int i = 0; i < cnt; i++) {
            memcpy(c->held + c->held_len, iov[i].iov_base, iov[i].iov_len);
            c->held_len += iov[i].iov_len;
        }
        return 0;
    }
    struct iovec with_held[9];
    if (c->held_len) {
        if (cnt > 8) {
            /* not reached: callers send at most three pieces */
            c->dead = 1;
            return -1;
        }
        with_held[0] = (struct iovec){ .iov_base = c->held, .iov_len = c->held_len };
        memcpy(with_held + 1, iov, (size_t)cnt * sizeof *iov);
        iov = with_held;
        cnt++;
        c->held_len = 0;
    }
    while (cnt > 0) {
        struct msghdr msg;
        memset(&msg, 0, sizeof msg);
        msg.msg_iov = iov;
        msg.msg_iovlen = cnt;
        ssize_t w = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (wait_writable(c) == 0) continue;
            }
            c->dead = 1;
            return -1;
        }
        iov_advance(&iov, &cnt, (size_t)w);
    }
    return 0;
}

void http_cork(struct http_conn *c) { c->corked = 1; }

int http_uncork(struct http_conn *c)
{
    c->corked = 0;
    if (!c->held_len) return c->dead ? -1 : 0;
    struct iovec none = { .iov_base = NULL, .iov_len = 0 };
    return sendv(c, &none, 1);
}

int http_send_all(struct http_conn *c, const void *p, size_t n)
{
    struct iovec iov = { .iov_base = (void *)p, .iov_len = n };
    return sendv(c, &iov, 1);
}

int http_send_head(struct http_conn *c, int status, const char *content_type, long long content_length)
{
    char h[512];
    /* A body we did not read (100-continue never sent) cannot be skipped: close afterwards. */
    if (c->expect_continue && !c->continue_sent && !c->body_done) c->keepalive = 0;
    int n = snprintf(h, sizeof h, "HTTP/1.1 %d %s\r\n", status, reason(status));
    if (content_type)
        n += snprintf(h + n, sizeof h - (size_t)n, "Content-Type: %s\r\n", content_type);
    c->resp_chunked = 0;
    if (content_length == HTTP_NO_BODY) {
        /* 204: neither Content-Length nor a body */
    } else if (content_length >= 0) {
        n += snprintf(h + n, sizeof h - (size_t)n, "Content-Length: %lld\r\n", content_length);
    } else if (!c->http10) {
        n += snprintf(h + n, sizeof h - (size_t)n, "Transfer-Encoding: chunked\r\n");
        c->resp_chunked = 1;
    } else {
        c->keepalive = 0; /* HTTP/1.0: the body ends when the connection closes */
    }
    if (!c->keepalive) n += snprintf(h + n, sizeof h - (size_t)n, "Connection: close\r\n");
    else if (c->http10) n += snprintf(h + n, sizeof h - (size_t)n, "Connection: keep-alive\r\n");
    n += snprintf(h + n, sizeof h - (size_t)n, "\r\n");
    c->resp_started = 1;
    return http_send_all(c, h, (size_t)n);
}

int http_send_json(struct http_conn *c, int status, const char *json, size_t len)
{
    if (http_send_head(c, status, "application/json", (long long)len) != 0) return -1;
    return len ? http_send_all(c, json, len) : 0;
}

int http_send_jbuf(struct http_conn *c, int status, const struct jbuf *b)
{
    if (b->oom) return http_send_error(c, 500, "internal", "out of memory");
    return http_send_json(c, status, b->p, b->len);
}

int http_send_error(struct http_conn *c, int status, const char *code, const char *message)
{
    struct jbuf b;
    jb_init(&b);
    jb_puts(&b, "{\"code\":");
    jb_str(&b, code);
    jb_puts(&b, ",\"message\":");
    jb_str(&b, message ? message : code);
    jb_putc(&b, '}');
    int rc;
    if (b.oom) rc = http_send_json(c, 500, "{\"code\":\"internal\",\"message\":\"out of memory\"}", 46);
    else rc = http_send_json(c, status, b.p, b.len);
    jb_free(&b);
    return rc;
}

int http_send_errno(struct http_conn *c, int err, const char *context)
{
    const char *code;
    int status = errno_status(err, &code);
    char msg[1024];
    if (context) snprintf(msg, sizeof msg, "%s: %s", context, strerror(err));
    else snprintf(msg, sizeof msg, "%s", strerror(err));
    return http_send_error(c, status, code, msg);
}

int http_send_empty(struct http_conn *c, int status)
{
    return http_send_head(c, status, NULL, status == 204 ? HTTP_NO_BODY : 0);
}

int http_chunk(struct http_conn *c, const void *p, size_t n)
{
    if (n == 0) return 0;
    if (!c->resp_chunked) return http_send_all(c, p, n);
    char hdr[24];
    int hl = snprintf(hdr, sizeof hdr, "%zx\r\n", n);
    struct iovec iov[3] = {
        { .iov_base = hdr, .iov_len = (size_t)hl },
        { .iov_base = (void *)p, .iov_len = n },
        { .iov_base = "\r\n", .iov_len = 2 },
    };
    return sendv(c, iov, 3);
}

int http_chunk_frame(struct http_conn *c, int type, const void *p, size_t n)
{
    char hdr[32];
    int hl = 0;
    if (c->resp_chunked) hl = snprintf(hdr, sizeof hdr, "%zx\r\n", n + 5);
    unsigned char *f = (unsigned char *)hdr + hl;
    f[0] = (unsigned char)type;
    f[1] = (unsigned char)(n >> 24);
    f[2] = (unsigned char)(n >> 16);
    f[3] = (unsigned char)(n >> 8);
    f[4] = (unsigned char)n;
    struct iovec iov[3] = {
        { .iov_base = hdr, .iov_len = (size_t)hl + 5 },
        { .iov_base = (void *)p, .iov_len = n },
        { .iov_base = "\r\n", .iov_len = c->resp_chunked ? 2 : 0 },
    };
    return sendv(c, iov, 3);
}

int http_chunk_end(struct http_conn *c)
{
    if (!c->resp_chunked) return 0;
    return http_send_all(c, "0\r\n\r\n", 5);
}

/* ---------- receiving ---------- */

/* Reads more input into the buffer. 1 ok, -1 error/EOF, -2 would block. */
static int fill(struct http_conn *c, int nonblock)
{
    if (c->rpos == c->wpos) {
        c->rpos = c->wpos = 0;
    } else if (c->wpos == HTTP_MAX_HEAD && c->rpos > 0) {
        memmove(c->buf, c->buf + c->rpos, c->wpos - c->rpos);
        c->wpos -= c->rpos;
        c->rpos = 0;
    }
    if (c->wpos == HTTP_MAX_HEAD) return -1;
    for (;;) {
        ssize_t r = recv(c->fd, c->buf + c->wpos, HTTP_MAX_HEAD - c->wpos, nonblock ? MSG_DONTWAIT : 0);
        if (r > 0) {
            c->wpos += (size_t)r;
            return 1;
        }
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (nonblock) return -2;
            /* SO_RCVTIMEO expired */
        }
        return -1;
    }
}

static char *find_nl(struct http_conn *c)
{
    return memchr(c->buf + c->rpos, '\n', c->wpos - c->rpos);
}

static void reset_request(struct http_conn *c)
{
    free(c->target);
    c->target = c->path = c->query = NULL;
    c->method[0] = 0;
    c->http10 = 0;
    c->keepalive = 1;
    c->authorized = 0;
    c->expect_continue = c->continue_sent = 0;
    c->body_mode = BODY_NONE;
    c->body_left = 0;
    c->chunk_state = CH_SIZE;
    c->body_done = 1;
    c->body_err = 0;
    c->resp_started = c->resp_chunked = 0;
    c->send_deadline = 0;
    c->deadline_cb = NULL;
    c->deadline_arg = NULL;
}

static int bad_request(struct http_conn *c, int status, const char *msg)
{
    c->keepalive = 0;
    http_send_error(c, status, "bad_request", msg);
    c->dead = 1;
    return -1;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r')) s[--n] = 0;
    return s;
}

/* Case-insensitive search for a comma-separated token in a header value. */
static int has_token(const char *v, const char *tok)
{
    size_t tl = strlen(tok);
    const char *p = v;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',') p++;
        const char *e = p;
        while (*e && *e != ',') e++;
        const char *t = e;
        while (t > p && (t[-1] == ' ' || t[-1] == '\t')) t--;
        if ((size_t)(t - p) == tl && strncasecmp(p, tok, tl) == 0) return 1;
        p = e;
    }
    return 0;
}

int http_read_request(struct http_conn *c)
{
    reset_request(c);
    if (c->dead) return 0;
    size_t head_end = 0;
    int64_t head_deadline = 0;
    size_t scanned = 0;
    for (;;) {
        /* tolerate empty lines before a request line */
        while (c->rpos < c->wpos && (c->buf[c->rpos] == '\r' || c->buf[c->rpos] == '\n')) {
            c->rpos++;
            scanned = 0;
        }
        /* search for an empty line: "\n\r\n" or "\n\n" */
        size_t start = c->rpos + (scanned > 2 ? scanned - 2 : 0);
        for (size_t i = start; i < c->wpos; i++) {
            if (c->buf[i] != '\n') continue;
            if (i + 1 < c->wpos && c->buf[i + 1] == '\n') {
                head_end = i + 2;
                break;
            }
            if (i + 2 < c->wpos && c->buf[i + 1] == '\r' && c->buf[i + 2] == '\n') {
                head_end = i + 3;
                break;
            }
        }
        if (head_end) break;
        scanned = c->wpos - c->rpos;
        if (c->wpos - c->rpos >= HTTP_MAX_HEAD) return bad_request(c, 431, "request head too large");
        int timeout;
        if (c->rpos == c->wpos) {
            timeout = HTTP_IDLE_TIMEOUT_MS;
        } else {
            if (!head_deadline) head_deadline = now_ms() + HTTP_HEAD_TIMEOUT_MS;
            int64_t left = head_deadline - now_ms();
            if (left <= 0) return bad_request(c, 400, "request head timeout");
            timeout = (int)left;
        }
        struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
        int pr = poll(&pfd, 1, timeout);
        if (pr < 0 && errno == EINTR) continue;
        if (pr <= 0) return c->rpos == c->wpos ? 0 : -1;
        /* scanned is relative to rpos, so compaction inside fill() does not invalidate it */
        int fr = fill(c, 1);
        if (fr == -2) continue;
        if (fr < 0) return c->rpos == c->wpos ? 0 : -1;
    }

    /* NUL-terminate lines in place */
    char *p = c->buf + c->rpos;
    char *end = c->buf + head_end;
    c->rpos = head_end;
    for (char *q = p; q < end; q++) {
        if (*q == 0) return bad_request(c, 400, "NUL in request head");
        if (*q == '\n') *q = 0;
    }

    /* request line */
    char *line = p;
    char *next = line + strlen(line) + 1;
    size_t ll = strlen(line);
    if (ll && line[ll - 1] == '\r') line[--ll] = 0;
    char *sp1 = strchr(line, ' ');
    if (!sp1) return bad_request(c, 400, "malformed request line");
    char *sp2 = strchr(sp1 + 1, ' ');
    if (!sp2) return bad_request(c, 400, "malformed request line");
    *sp1 = 0;
    *sp2 = 0;
    const char *version = sp2 + 1;
    char *target = sp1 + 1;
    if (strlen(line) == 0 || strlen(line) >= sizeof c->method) return bad_request(c, 400, "bad method");
    strcpy(c->method, line);
    if (strcmp(version, "HTTP/1.1") == 0) {
        c->http10 = 0;
    } else if (strcmp(version, "HTTP/1.0") == 0) {
        c->http10 = 1;
        c->keepalive = 0;
    } else {
        return bad_request(c, 505, "unsupported HTTP version");
    }
    if (target[0] != '/') return bad_request(c, 400, "bad request target");
    c->target = strdup(target);
    if (!c->target) return bad_request(c, 500, "out of memory");
    c->path = c->target;
    char *qm = strchr(c->target, '?');
    if (qm) {
        *qm = 0;
        c->query = qm + 1;
    } else {
        c->query = c->target + strlen(c->target);
    }

    /* headers */
    int have_cl = 0, chunked = 0;
    uint64_t cl = 0;
    c->authorized = g_cfg.token == NULL;
    for (line = next; line < end; line = next) {
        next = line + strlen(line) + 1;
        ll = strlen(line);
        if (ll && line[ll - 1] == '\r') line[--ll] = 0;
        if (ll == 0) break;
        if (line[0] == ' ' || line[0] == '\t') return bad_request(c, 400, "obsolete header folding");
        char *colon = strchr(line, ':');
        if (!colon || colon == line) return bad_request(c, 400, "malformed header");
        *colon = 0;
        if (strpbrk(line, " \t")) return bad_request(c, 400, "malformed header name");
        char *v = trim(colon + 1);
        if (strcasecmp(line, "content-length") == 0) {
            uint64_t n;
            if (parse_u64(v, &n) != 0 || n > ((uint64_t)1 << 62)) return bad_request(c, 400, "bad Content-Length");
            if (have_cl && n != cl) return bad_request(c, 400, "conflicting Content-Length");
            have_cl = 1;
            cl = n;
        } else if (strcasecmp(line, "transfer-encoding") == 0) {
            if (strcasecmp(v, "chunked") != 0) return bad_request(c, 501, "unsupported Transfer-Encoding");
            chunked = 1;
        } else if (strcasecmp(line, "connection") == 0) {
            if (has_token(v, "close")) c->keepalive = 0;
            else if (has_token(v, "keep-alive")) c->keepalive = 1;
        } else if (strcasecmp(line, "x-sandpit-token") == 0) {
            if (g_cfg.token) c->authorized = ct_equal(v, strlen(v), g_cfg.token, g_cfg.token_len);
        } else if (strcasecmp(line, "expect") == 0) {
            if (strcasecmp(v, "100-continue") == 0) c->expect_continue = 1;
        }
    }
    if (chunked) {
        if (have_cl) c->keepalive = 0; /* RFC 9112 6.3: ambiguous framing */
        c->body_mode = BODY_CHUNKED;
        c->chunk_state = CH_SIZE;
        c->body_done = 0;
    } else if (have_cl && cl > 0) {
        c->body_mode = BODY_LENGTH;
        c->body_left = cl;
        c->body_done = 0;
    } else {
        c->body_mode = BODY_NONE;
        c->body_done = 1;
    }
    if (c->body_done) c->expect_continue = 0;
    return 1;
}

/* Reads straight from the socket into out (used when nothing is buffered). */
static ssize_t direct_recv(struct http_conn *c, void *out, size_t n, int nonblock)
{
    for (;;) {
        ssize_t r = recv(c->fd, out, n, nonblock ? MSG_DONTWAIT : 0);
        if (r > 0) return r;
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && nonblock && (errno == EAGAIN || errno == EWOULDBLOCK)) return -2;
        return -1;
    }
}

static ssize_t body_fail(struct http_conn *c)
{
    c->body_err = 1;
    c->dead = 1;
    c->keepalive = 0;
    return -1;
}

ssize_t http_body_read(struct http_conn *c, void *out, size_t n, int nonblock)
{
    if (c->body_done) return 0;
    if (c->body_err) return -1;
    if (n == 0) return -2;
    if (c->expect_continue && !c->continue_sent) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        c->continue_sent = 1;
        if (http_send_all(c, cont, sizeof cont - 1) != 0) return body_fail(c);
    }
    for (;;) {
        size_t avail = c->wpos - c->rpos;
        if (c->body_mode == BODY_LENGTH || (c->body_mode == BODY_CHUNKED && c->chunk_state == CH_DATA)) {
            size_t k = n;
            if (k > c->body_left) k = (size_t)c->body_left;
            ssize_t got;
            if (avail) {
                if (k > avail) k = avail;
                memcpy(out, c->buf + c->rpos, k);
                c->rpos += k;
                got = (ssize_t)k;
            } else {
                got = direct_recv(c, out, k, nonblock);
                if (got == -2) return -2;
                if (got < 0) return body_fail(c);
            }
            c->body_left -= (uint64_t)got;
            if (c->body_left == 0) {
                if (c->body_mode == BODY_LENGTH) c->body_done = 1;
                else c->chunk_state = CH_CRLF;
            }
            return got;
        }
        /* chunked framing lines */
        char *nl = find_nl(c);
        if (!nl) {
            if (avail > 4096) return body_fail(c);
            int fr = fill(c, nonblock);
            if (fr == -2) return -2;
            if (fr < 0) return body_fail(c);
            continue;
        }
        char *line = c->buf + c->rpos;
        size_t len = (size_t)(nl - line);
        if (len && line[len - 1] == '\r') len--;
        c->rpos = (size_t)(nl - c->buf) + 1;
        if (c->chunk_state == CH_SIZE) {
            uint64_t size = 0;
            size_t i = 0;
            for (; i < len; i++) {
                char ch = line[i];
                int d;
                if (ch >= '0' && ch <= '9') d = ch - '0';
                else if (ch >= 'a' && ch <= 'f') d = ch - 'a' + 10;
                else if (ch >= 'A' && ch <= 'F') d = ch - 'A' + 10;
                else break;
                if (size >> 56) return body_fail(c);
                size = size * 16 + (uint64_t)d;
            }
            if (i == 0) return body_fail(c);
            if (i < len && line[i] != ';' && line[i] != ' ' && line[i] != '\t') return body_fail(c);
            if (size == 0) {
                c->chunk_state = CH_TRAILER;
            } else {
                c->body_left = size;
                c->chunk_state = CH_DATA;
            }
        } else if (c->chunk_state == CH_CRLF) {
            if (len != 0) return body_fail(c);
            c->chunk_state = CH_SIZE;
        } else { /* CH_TRAILER */
            if (len == 0) {
                c->body_done = 1;
                return 0;
            }
        }
    }
}

int http_body_discard(struct http_conn *c, uint64_t limit)
{
    if (c->body_done) return 0;
    if (c->expect_continue && !c->continue_sent) return -1; /* client has not sent it */
    char tmp[8192];
    uint64_t total = 0;
    for (;;) {
        ssize_t r = http_body_read(c, tmp, sizeof tmp, 0);
        if (r == 0) return 0;
        if (r < 0) return -1;
        total += (uint64_t)r;
        if (total > limit) return -1;
    }
}

/* ---------- query strings ---------- */

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

int http_pct_decode(char *s, int plus_is_space)
{
    char *w = s;
    for (char *r = s; *r; r++) {
        if (*r == '%') {
            int h = r[1] ? hexval(r[1]) : -1;
            int l = (h >= 0 && r[2]) ? hexval(r[2]) : -1;
            if (h < 0 || l < 0) return -1;
            char ch = (char)(h * 16 + l);
            if (ch == 0) return -1;
            *w++ = ch;
            r += 2;
        } else if (*r == '+' && plus_is_space) {
            *w++ = ' ';
        } else {
            *w++ = *r;
        }
    }
    *w = 0;
    return 0;
}

char *http_query_get(const struct http_conn *c, const char *key)
{
    size_t kl = strlen(key);
    const char *q = c->query ? c->query : "";
    while (*q) {
        const char *amp = strchr(q, '&');
        size_t plen = amp ? (size_t)(amp - q) : strlen(q);
        const char *eq = memchr(q, '=', plen);
        size_t namelen = eq ? (size_t)(eq - q) : plen;
        if (namelen == kl && memcmp(q, key, kl) == 0) {
            const char *v = eq ? eq + 1 : q + plen;
            size_t vl = (size_t)(q + plen - v);
            char *out = malloc(vl + 1);
            if (!out) return NULL;
            memcpy(out, v, vl);
            out[vl] = 0;
            if (http_pct_decode(out, 1) != 0) {
                free(out);
                return NULL;
            }
            return out;
        }
        q += plen;
        if (*q == '&') q++;
    }
    return NULL;
}

int http_query_flag(const struct http_conn *c, const char *key)
{
    char *v = http_query_get(c, key);
    if (!v) return 0;
    int on = strcmp(v, "1") == 0 || strcmp(v, "true") == 0;
    free(v);
    return on;
}
