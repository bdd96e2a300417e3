#include "growbuf.h"

#include <stdlib.h>
#include <string.h>

bool growbuf_append(struct growbuf *b, const void *data, size_t n, size_t max)
{
	if (b->len + n > max)
		return false;
	char *np = realloc(b->p, b->len + n + 1);
	if (!np)
		return false;
	b->p = np;
	memcpy(b->p + b->len, data, n);
	b->len += n;
	b->p[b->len] = 0;
	return true;
}
