/* Minimal HTTP/1.1 server side: request heads (bounded), Content-Length and chunked request bodies,
 * fixed-length and chunked responses, keep-alive. One struct per connection, used by one thread. */
#ifndef SANDPIT_HTTP_H
#define SANDPIT_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define HTTP_MAX_HEAD 65536        /* request line + headers */
#define HTTP_IDLE_TIMEOUT_MS 600000 /* keep-alive idle connections are closed after 10 minutes */
#define HTTP_HEAD_TIMEOUT_MS 30000  /* a started request head must complete within 30 s */

enum { BODY_NONE = 0, BODY_LENGTH = 1, BODY_CHUNKED = 2 };

struct http_conn {
    int fd;
    char *buf; /* HTTP_MAX_HEAD bytes; unread input is buf[rpos, wpos) */
    size_t rpos, wpos;

    /* current request */
    char method[16];
    char *target; /* malloc'd copy of the request target; path and query point into it */
    char *path;
    char *query;
    int http10;
    int keepalive;
    int authorized;
    int expect_continue, continue_sent;
    int body_mode;
    uint64_t body_left; /* Content-Length: bytes left; chunked: bytes left in the current chunk */
    int chunk_state;
    int body_done;
    int body_err;

    /* current response */
    int resp_started;
    int resp_chunked;

    int dead; /* the socket failed or must be closed after this request */

    /* While corked, small writes are held here and leave with the uncork (or the next larger write)
     * in one segment: a response head with its first frame, the last frame with the chunked end. */
    int corked;
    size_t held_len;
    char held[1024];

    /* Optional send deadline (monotonic ms): when a blocking send is still waiting at that time,
     * deadline_cb is called once (it must clear send_deadline) and the send continues. */
    int64_t send_deadline;
    void (*deadline_cb)(void *arg);
    void *deadline_arg;
};

int http_conn_init(struct http_conn *c, int fd);

/* Holds the small writes that follow until http_uncork, which sends them at once (0 ok, -1 dead). */
void http_cork(struct http_conn *c);
int http_uncork(struct http_conn *c);
void http_conn_free(struct http_conn *c);

/* Reads and parses the next request head. 1: request ready; 0: connection closed or idle;
 * -1: error (a 4xx was sent when possible). */
int http_read_request(struct http_conn *c);

/* Reads body bytes. >0 bytes, 0 end of body, -1 error (connection is dead), -2 would block
 * (only with nonblock). */
ssize_t http_body_read(struct http_conn *c, void *out, size_t n, int nonblock);
/* Bytes of the body (or of the next request) already buffered. */
size_t http_buffered(const struct http_conn *c);
/* Looks at the socket without reading from it: -1 the client closed it (or it failed), 1 bytes are
 * waiting (a pipelined request), 0 nothing yet. */
int http_peek(const struct http_conn *c);
/* Reads and drops the rest of the body. 0 ok, -1 the connection is unusable. */
int http_body_discard(struct http_conn *c, uint64_t limit);

#define HTTP_NO_BODY (-2LL) /* content_length for 204: no length header, no body */

/* Responses. content_length -1: chunked (or close-delimited for HTTP/1.0). 0 ok, -1 send failed. */
int http_send_head(struct http_conn *c, int status, const char *content_type, long long content_length);
int http_send_all(struct http_conn *c, const void *p, size_t n);
int http_send_json(struct http_conn *c, int status, const char *json, size_t len);
struct jbuf;
/* The JSON in b, or a 500 when building it ran out of memory. */
int http_send_jbuf(struct http_conn *c, int status, const struct jbuf *b);
int http_send_error(struct http_conn *c, int status, const char *code, const char *message);
/* Error response for an errno: "<context>: <strerror>" */
int http_send_errno(struct http_conn *c, int err, const char *context);
int http_send_empty(struct http_conn *c, int status);
int http_chunk(struct http_conn *c, const void *p, size_t n);
/* One frame (type:u8 | length:u32be | payload) as one chunk. */
int http_chunk_frame(struct http_conn *c, int type, const void *p, size_t n);
int http_chunk_end(struct http_conn *c);

/* Query parameter, percent-decoded ('+' is a space), malloc'd; NULL when absent or when it decodes
 * to something containing NUL. */
char *http_query_get(const struct http_conn *c, const char *key);
/* 1 when the parameter is "1" or "true". */
int http_query_flag(const struct http_conn *c, const char *key);
/* Percent-decodes in place; -1 when it would contain NUL or is malformed. */
int http_pct_decode(char *s, int plus_is_space);

#endif
