#include "argv_build.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

void arg(struct argv *a, const char *fmt, ...)
{
	if (a->n >= ARGV_MAX)
		return;
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(&a->v[a->n], fmt, ap) >= 0)
		a->n++;
	va_end(ap);
	a->v[a->n] = NULL;
}

void argv_free(struct argv *a)
{
	for (int i = 0; i < a->n; i++)
		free(a->v[i]);
	a->n = 0;
	if (a->keep_fd > 2)
		close(a->keep_fd);
	a->keep_fd = 0;
}
