/* Minimal JSON writer: a growing buffer plus correctly escaped strings. */
#ifndef SANDPIT_JSON_H
#define SANDPIT_JSON_H

#include <stddef.h>
#include <stdint.h>

struct jbuf {
    char *p;
    size_t len, cap;
    int oom; /* set when an allocation failed; the content is then incomplete */
};

void jb_init(struct jbuf *b);
void jb_free(struct jbuf *b);
void jb_raw(struct jbuf *b, const char *s, size_t n);
void jb_puts(struct jbuf *b, const char *s);
void jb_putc(struct jbuf *b, char c);
/* A quoted JSON string. Control characters are escaped; invalid UTF-8 bytes become U+FFFD. */
void jb_strn(struct jbuf *b, const char *s, size_t n);
void jb_str(struct jbuf *b, const char *s);
void jb_int(struct jbuf *b, long long v);
void jb_bool(struct jbuf *b, int v);
/* "key": (with a leading comma unless first) */
void jb_key(struct jbuf *b, const char *key, int first);

#endif
