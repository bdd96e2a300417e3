#include "ct_limits.h"

#include "parse.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

/* "0-3,5,7-8": digits, commas and ranges only, so that it can be written to
 * cpuset.cpus verbatim. */
static bool valid_cpu_list(const char *s)
{
	if (!*s || strlen(s) >= sizeof(((struct ct_limits *)0)->cpuset))
		return false;
	bool need_digit = true;
	for (const char *p = s; *p; p++) {
		if (isdigit((unsigned char)*p)) {
			need_digit = false;
			continue;
		}
		if ((*p != ',' && *p != '-') || need_digit)
			return false;
		need_digit = true;
	}
	return !need_digit;
}

static bool parse_memory(struct ct_limits *l, const char *val, char *err, size_t len)
{
	if (!kvz_parse_size_pair(val, &l->mem_soft, &l->mem_hard) || l->mem_hard < (4u << 20)) {
		snprintf(err, len, "invalid --memory '%s': want SOFT:HARD sizes (e.g. 512M:1G), soft <= hard, hard >= 4M", val);
		return false;
	}
	l->has_memory = true;
	return true;
}

static bool parse_disk(struct ct_limits *l, const char *val, char *err, size_t len)
{
	if (!kvz_parse_size(val, &l->disk) || l->disk < (128ull << 20)) {
		snprintf(err, len, "invalid --disk '%s': want a size of at least 128M (e.g. 1G)", val);
		return false;
	}
	l->has_disk = true;
	return true;
}

bool ct_limit_parse(struct ct_limits *l, const char *key, const char *val,
		    char *err, size_t len)
{
	if (!val)
		val = "";
	if (!strcmp(key, "memory"))
		return parse_memory(l, val, err, len);
	if (!strcmp(key, "disk"))
		return parse_disk(l, val, err, len);
	if (!strcmp(key, "swap")) {
		l->has_swap = kvz_parse_size(val, &l->swap);
		if (!l->has_swap)
			snprintf(err, len, "invalid --swap '%s': want a size (e.g. 256M, 0)", val);
		return l->has_swap;
	}
	if (!strcmp(key, "cpus")) {
		l->has_cpus = kvz_parse_cpus(val, &l->cpus);
		if (!l->has_cpus)
			snprintf(err, len, "invalid --cpus '%s': want a CPU count such as 0.5 or 2", val);
		return l->has_cpus;
	}
	if (!strcmp(key, "cpu-weight")) {
		l->has_cpu_weight = kvz_parse_u64(val, 1, 10000, &l->cpu_weight);
		if (!l->has_cpu_weight)
			snprintf(err, len, "invalid --cpu-weight '%s': want an integer 1..10000", val);
		return l->has_cpu_weight;
	}
	if (!strcmp(key, "io-weight")) {
		l->has_io_weight = kvz_parse_u64(val, 1, 10000, &l->io_weight);
		if (!l->has_io_weight)
			snprintf(err, len, "invalid --io-weight '%s': want an integer 1..10000", val);
		return l->has_io_weight;
	}
	if (!strcmp(key, "pids")) {
		l->has_pids = kvz_parse_u64(val, 1, 4194304, &l->pids);
		if (!l->has_pids)
			snprintf(err, len, "invalid --pids '%s': want an integer 1..4194304", val);
		return l->has_pids;
	}
	if (!strcmp(key, "cpuset")) {
		l->has_cpuset = valid_cpu_list(val);
		if (!l->has_cpuset) {
			snprintf(err, len, "invalid --cpuset '%s': want a CPU list such as 0-1,3", val);
			return false;
		}
		snprintf(l->cpuset, sizeof(l->cpuset), "%s", val);
		return true;
	}
	snprintf(err, len, "unknown limit '%s'", key);
	return false;
}

void ct_limits_merge(struct ct_limits *cur, const struct ct_limits *upd)
{
	if (upd->has_memory) {
		cur->has_memory = true;
		cur->mem_soft = upd->mem_soft;
		cur->mem_hard = upd->mem_hard;
	}
	if (upd->has_swap) {
		cur->has_swap = true;
		cur->swap = upd->swap;
	}
	if (upd->has_cpus) {
		cur->has_cpus = true;
		cur->cpus = upd->cpus;
	}
	if (upd->has_cpu_weight) {
		cur->has_cpu_weight = true;
		cur->cpu_weight = upd->cpu_weight;
	}
	if (upd->has_cpuset) {
		cur->has_cpuset = true;
		memcpy(cur->cpuset, upd->cpuset, sizeof(cur->cpuset));
	}
	if (upd->has_pids) {
		cur->has_pids = true;
		cur->pids = upd->pids;
	}
	if (upd->has_io_weight) {
		cur->has_io_weight = true;
		cur->io_weight = upd->io_weight;
	}
	if (upd->has_disk) {
		cur->has_disk = true;
		cur->disk = upd->disk;
	}
}

static void put_u64(json_t *o, const char *key, uint64_t v)
{
	char buf[32];
	snprintf(buf, sizeof(buf), "%llu", (unsigned long long)v);
	json_object_set_new(o, key, json_string(buf));
}

json_t *ct_limits_to_json(const struct ct_limits *l)
{
	json_t *o = json_object();
	char buf[64];
	if (l->has_memory) {
		snprintf(buf, sizeof(buf), "%llu:%llu", (unsigned long long)l->mem_soft,
			 (unsigned long long)l->mem_hard);
		json_object_set_new(o, "memory", json_string(buf));
	}
	if (l->has_swap)
		put_u64(o, "swap", l->swap);
	if (l->has_cpus) {
		snprintf(buf, sizeof(buf), "%.17g", l->cpus);
		json_object_set_new(o, "cpus", json_string(buf));
	}
	if (l->has_cpu_weight)
		put_u64(o, "cpu-weight", l->cpu_weight);
	if (l->has_cpuset)
		json_object_set_new(o, "cpuset", json_string(l->cpuset));
	if (l->has_pids)
		put_u64(o, "pids", l->pids);
	if (l->has_io_weight)
		put_u64(o, "io-weight", l->io_weight);
	return o;
}

bool ct_limits_from_json(struct ct_limits *l, json_t *obj, char *err, size_t errlen)
{
	const char *key;
	json_t *v;
	if (!json_is_object(obj)) {
		snprintf(err, errlen, "limits: want an object");
		return false;
	}
	json_object_foreach(obj, key, v) {
		if (!json_is_string(v)) {
			snprintf(err, errlen, "limit '%s': want a string", key);
			return false;
		}
		if (!strcmp(key, "disk") || !ct_limit_parse(l, key, json_string_value(v), err, errlen)) {
			if (!strcmp(key, "disk"))
				snprintf(err, errlen, "unknown limit '%s'", key);
			return false;
		}
	}
	return true;
}
