#include "idmap_pool.h"

#include <stdlib.h>
#include <string.h>

static int add(struct id_spans *s, uint64_t start, uint64_t count)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 32;
		struct id_span *v = realloc(s->v, cap * sizeof(*v));
		if (!v)
			return -1;
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = (struct id_span){start, count};
	return 0;
}

/* The colon-separated field number idx (0-based) of line as a number;
 * false when absent or not a number. */
static bool field_u64(const char *line, int idx, uint64_t *out)
{
	const char *p = line;
	for (int i = 0; i < idx; i++) {
		p += strcspn(p, ":\n");
		if (*p != ':')
			return false; /* the line ends first */
		p++;
	}
	if (*p < '0' || *p > '9')
		return false;
	char *end;
	unsigned long long v = strtoull(p, &end, 10);
	if (*end != ':' && *end != '\n' && *end != 0)
		return false;
	*out = v;
	return true;
}

/* Calls fn on every line that is not a comment. */
static int each_line(struct id_spans *s, const char *text,
		     int (*fn)(struct id_spans *, const char *))
{
	for (const char *line = text; line && *line; ) {
		if (*line != '#' && *line != '\n' && fn(s, line) < 0)
			return -1;
		line = strchr(line, '\n');
		if (line)
			line++;
	}
	return 0;
}

static int db_line(struct id_spans *s, const char *line)
{
	uint64_t id;
	return field_u64(line, 2, &id) ? add(s, id, 1) : 0;
}

static int subid_line(struct id_spans *s, const char *line)
{
	uint64_t start, count;
	return field_u64(line, 1, &start) && field_u64(line, 2, &count) && count
		       ? add(s, start, count) : 0;
}

int id_spans_add_db(struct id_spans *s, const char *text)
{
	return each_line(s, text, db_line);
}

int id_spans_add_subid(struct id_spans *s, const char *text)
{
	return each_line(s, text, subid_line);
}

void id_spans_free(struct id_spans *s)
{
	free(s->v);
	memset(s, 0, sizeof(*s));
}

bool id_spans_overlap(const struct id_spans *s, uint64_t start, uint64_t count)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->v[i].start < start + count && start < s->v[i].start + s->v[i].count)
			return true;
	return false;
}

static bool in_list(const uint32_t *v, size_t n, uint32_t x)
{
	for (size_t i = 0; i < n; i++)
		if (v[i] == x)
			return true;
	return false;
}

uint32_t idmap_pool_pick(uint32_t pool_start, uint32_t pool_end, uint32_t count,
			 const uint32_t *used, size_t nused, const struct id_spans *s)
{
	for (uint64_t b = pool_start; b + count <= pool_end; b += count)
		if (!in_list(used, nused, (uint32_t)b) && !id_spans_overlap(s, b, count))
			return (uint32_t)b;
	return 0;
}
