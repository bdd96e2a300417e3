/* A NUL-terminated byte buffer that grows as data arrives (HTTP answers
 * read by libcurl callbacks in kvz and kvzd). */
#ifndef KVZ_GROWBUF_H
#define KVZ_GROWBUF_H

#include <stdbool.h>
#include <stddef.h>

struct growbuf {
	char *p;      /* malloc'ed, NUL-terminated; NULL while empty */
	size_t len;
};

/* Appends n bytes; false (nothing appended) past max bytes in all or when
 * out of memory. */
bool growbuf_append(struct growbuf *b, const void *data, size_t n, size_t max);

#endif
