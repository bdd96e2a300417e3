#include "policy_cron.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct field {
	const char *name;
	int min, max;
};

static const struct field fields[5] = {
	{"minute", 0, 59}, {"hour", 0, 23}, {"day of month", 1, 31},
	{"month", 1, 12}, {"day of week", 0, 7},
};

/* A decimal number of at most 2 digits; end is set past it. */
static int read_num(const char *s, const char **end)
{
	if (s[0] < '0' || s[0] > '9')
		return -1;
	int v = s[0] - '0';
	s++;
	if (*s >= '0' && *s <= '9')
		v = v * 10 + (*s++ - '0');
	if (*s >= '0' && *s <= '9')
		return -1;
	*end = s;
	return v;
}

/* One comma-separated element: "*", "N", "N-M", each optionally "/STEP". */
static int parse_elem(const char *s, const struct field *f, uint64_t *bits)
{
	int lo, hi;
	const char *p = s;
	if (*p == '*') {
		lo = f->min;
		hi = f->max;
		p++;
	} else {
		lo = read_num(p, &p);
		if (lo < 0)
			return -1;
		hi = lo;
		if (*p == '-') {
			hi = read_num(p + 1, &p);
			if (hi < 0)
				return -1;
		}
	}
	int step = 1;
	if (*p == '/') {
		step = read_num(p + 1, &p);
		if (step <= 0)
			return -1;
		if (s[0] != '*' && hi == lo)
			hi = f->max;   /* "N/S": from N to the end, as Vixie cron */
	}
	if (*p || lo < f->min || hi > f->max || lo > hi)
		return -1;
	for (int v = lo; v <= hi; v += step)
		*bits |= 1ull << v;
	return 0;
}

static int parse_field(char *tok, const struct field *f, uint64_t *bits)
{
	*bits = 0;
	char *save = NULL;
	if (!*tok || tok[strlen(tok) - 1] == ',' || tok[0] == ',' || strstr(tok, ",,"))
		return -1;
	for (char *e = strtok_r(tok, ",", &save); e; e = strtok_r(NULL, ",", &save))
		if (parse_elem(e, f, bits))
			return -1;
	return 0;
}

int cron_parse(const char *spec, struct cron *c, char *err, size_t errlen)
{
	char buf[256];
	if (strlen(spec) >= sizeof(buf)) {
		snprintf(err, errlen, "longer than %zu characters", sizeof(buf) - 1);
		return -1;
	}
	snprintf(buf, sizeof(buf), "%s", spec);
	char *tok[6] = {0};
	int n = 0;
	char *save = NULL;
	for (char *t = strtok_r(buf, " \t", &save); t; t = strtok_r(NULL, " \t", &save)) {
		if (n == 5) {
			n++;
			break;
		}
		tok[n++] = t;
	}
	if (n != 5) {
		snprintf(err, errlen, "needs 5 fields (minute hour day-of-month month day-of-week)");
		return -1;
	}
	uint64_t bits[5];
	for (int i = 0; i < 5; i++) {
		if (parse_field(tok[i], &fields[i], &bits[i])) {
			snprintf(err, errlen, "bad %s field \"%s\" (%d-%d, *, lists, ranges, /steps)",
				 fields[i].name, tok[i], fields[i].min, fields[i].max);
			return -1;
		}
	}
	memset(c, 0, sizeof(*c));
	c->minute = bits[0];
	c->hour = (uint32_t)bits[1];
	c->mday = (uint32_t)bits[2];
	c->month = (uint16_t)bits[3];
	uint64_t w = bits[4];
	if (w & (1u << 7))
		w |= 1u;       /* 7 is Sunday too */
	c->wday = (uint8_t)(w & 0x7f);
	c->mday_any = tok[2][0] == '*';
	c->wday_any = tok[4][0] == '*';
	return 0;
}

static bool day_matches(const struct cron *c, const struct tm *tm)
{
	bool md = c->mday & (1u << tm->tm_mday);
	bool wd = c->wday & (1u << tm->tm_wday);
	if (c->mday_any || c->wday_any)
		return md && wd;
	return md || wd;
}

bool cron_matches(const struct cron *c, time_t t)
{
	struct tm tm;
	if (!gmtime_r(&t, &tm))
		return false;
	return (c->minute & (1ull << tm.tm_min)) && (c->hour & (1u << tm.tm_hour)) &&
	       (c->month & (1u << (tm.tm_mon + 1))) && day_matches(c, &tm);
}

time_t cron_next(const struct cron *c, time_t t)
{
	time_t m = t - (t % 60 + 60) % 60 + 60;
	time_t end = t + 5 * 366 * 86400;
	while (m <= end) {
		struct tm tm;
		if (!gmtime_r(&m, &tm))
			return -1;
		/* Skip whole days and hours that cannot match: a few thousand
		 * steps at most over five years. */
		if (!(c->month & (1u << (tm.tm_mon + 1))) || !day_matches(c, &tm)) {
			m += 86400 - (tm.tm_hour * 3600 + tm.tm_min * 60);
			continue;
		}
		if (!(c->hour & (1u << tm.tm_hour))) {
			m += 3600 - tm.tm_min * 60;
			continue;
		}
		if (c->minute & (1ull << tm.tm_min))
			return m;
		m += 60;
	}
	return -1;
}
