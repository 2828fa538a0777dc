#include "json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void jb_init(struct jbuf *b)
{
    b->p = NULL;
    b->len = b->cap = 0;
    b->oom = 0;
}

void jb_free(struct jbuf *b)
{
    free(b->p);
    jb_init(b);
}

static int jb_reserve(struct jbuf *b, size_t extra)
{
    if (b->oom) return -1;
    if (extra > SIZE_MAX / 2 - b->len) {
        b->oom = 1;
        return -1;
    }
    size_t need = b->len + extra + 1;
    if (need <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

void jb_raw(struct jbuf *b, const char *s, size_t n)
{
    if (jb_reserve(b, n) != 0) return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

void jb_puts(struct jbuf *b, const char *s) { jb_raw(b, s, strlen(s)); }

void jb_putc(struct jbuf *b, char c) { jb_raw(b, &c, 1); }

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    unsigned min;
    unsigned cp;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        cp = c & 0x1f;
        min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        cp = c & 0x0f;
        min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        cp = c & 0x07;
        min = 0x10000;
    } else {
        return 0;
    }
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return len;
}

void jb_strn(struct jbuf *b, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    static const char hex[] = "0123456789abcdef";
    jb_putc(b, '"');
    size_t i = 0;
    while (i < n) {
        /* copy a run of bytes that need no escaping */
        size_t j = i;
        while (j < n && s[j] >= 0x20 && s[j] < 0x80 && s[j] != '"' && s[j] != '\\') j++;
        if (j > i) {
            jb_raw(b, (const char *)s + i, j - i);
            i = j;
            continue;
        }
        unsigned char c = s[i];
        if (c >= 0x80) {
            size_t l = utf8_len(s + i, n - i);
            if (l == 0) {
                jb_puts(b, "\\ufffd");
                i++;
            } else {
                jb_raw(b, (const char *)s + i, l);
                i += l;
            }
            continue;
        }
        char esc[7];
        switch (c) {
        case '"': jb_raw(b, "\\\"", 2); break;
        case '\\': jb_raw(b, "\\\\", 2); break;
        case '\n': jb_raw(b, "\\n", 2); break;
        case '\r': jb_raw(b, "\\r", 2); break;
        case '\t': jb_raw(b, "\\t", 2); break;
        case '\b': jb_raw(b, "\\b", 2); break;
        case '\f': jb_raw(b, "\\f", 2); break;
        default:
            esc[0] = '\\';
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            jb_raw(b, esc, 6);
        }
        i++;
    }
    jb_putc(b, '"');
}

void jb_str(struct jbuf *b, const char *s) { jb_strn(b, s, strlen(s)); }

void jb_int(struct jbuf *b, long long v)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%lld", v);
    if (n > 0) jb_raw(b, tmp, (size_t)n);
}

void jb_bool(struct jbuf *b, int v) { jb_puts(b, v ? "true" : "false"); }

void jb_key(struct jbuf *b, const char *key, int first)
{
    if (!first) jb_putc(b, ',');
    jb_str(b, key);
    jb_putc(b, ':');
}
