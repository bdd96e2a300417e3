#include "parse.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int unit_shift(char c)
{
	switch (toupper((unsigned char)c)) {
	case 'K': return 10;
	case 'M': return 20;
	case 'G': return 30;
	case 'T': return 40;
	default: return -1;
	}
}

bool kvz_parse_size(const char *s, uint64_t *out)
{
	if (!s || !*s || *s == '-' || isspace((unsigned char)*s))
		return false;
	errno = 0;
	char *end;
	double v = strtod(s, &end);
	if (errno || end == s || v < 0 || !isfinite(v))
		return false;
	int shift = 0;
	if (*end) {
		shift = unit_shift(*end);
		if (shift < 0)
			return false;
		end++;
		/* Accept "512MiB", "512MB", "512Mi". */
		if (*end == 'i' || *end == 'I')
			end++;
		if (*end == 'B' || *end == 'b')
			end++;
		if (*end)
			return false;
	}
	double bytes = ldexp(v, shift);
	if (bytes >= 18446744073709551615.0)
		return false;
	if (shift == 0 && v != floor(v))
		return false;
	*out = (uint64_t)bytes;
	return true;
}

bool kvz_parse_size_pair(const char *s, uint64_t *soft, uint64_t *hard)
{
	if (!s)
		return false;
	const char *colon = strchr(s, ':');
	if (!colon) {
		if (!kvz_parse_size(s, soft))
			return false;
		*hard = *soft;
		return true;
	}
	char left[64];
	size_t n = (size_t)(colon - s);
	if (n == 0 || n >= sizeof(left))
		return false;
	memcpy(left, s, n);
	left[n] = 0;
	uint64_t a, b;
	if (!kvz_parse_size(left, &a) || !kvz_parse_size(colon + 1, &b))
		return false;
	if (a > b)
		return false;
	*soft = a;
	*hard = b;
	return true;
}

bool kvz_parse_cpus(const char *s, double *out)
{
	if (!s || !*s || isspace((unsigned char)*s))
		return false;
	errno = 0;
	char *end;
	double v = strtod(s, &end);
	if (errno || *end || !isfinite(v) || v <= 0 || v > 1024)
		return false;
	*out = v;
	return true;
}

bool kvz_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	if (!s || !isdigit((unsigned char)*s))
		return false;
	errno = 0;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return false;
	*out = v;
	return true;
}

const char *kvz_format_size(uint64_t bytes, char *buf, unsigned len)
{
	static const char units[] = "KMGT";
	if (bytes < 1024) {
		snprintf(buf, len, "%lluB", (unsigned long long)bytes);
		return buf;
	}
	double v = (double)bytes;
	int u = -1;
	while (v >= 1024 && u < 3) {
		v /= 1024;
		u++;
	}
	if (v == floor(v))
		snprintf(buf, len, "%.0f%c", v, units[u]);
	else
		snprintf(buf, len, "%.1f%c", v, units[u]);
	return buf;
}

bool kvz_valid_name(const char *name)
{
	if (!name || !isalnum((unsigned char)name[0]))
		return false;
	size_t n = 0;
	for (const char *p = name; *p; p++, n++) {
		if (n >= 63)
			return false;
		if (!isalnum((unsigned char)*p) && *p != '_' && *p != '.' && *p != '-')
			return false;
	}
	return true;
}
