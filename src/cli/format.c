/* Output shared by subcommands: sizes, times, the guest table. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "http.h"
#include "log.h"
#include "parse.h"

const char *fmt_size(uint64_t v, char *buf, unsigned len)
{
	if (!v) {
		snprintf(buf, len, "-");
		return buf;
	}
	return kvz_format_size(v, buf, len);
}

const char *fmt_time(int64_t ms, char *buf, unsigned len)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm);
	return buf;
}

void print_json(json_t *j)
{
	json_dumpf(j, stdout, JSON_INDENT(2));
	putchar('\n');
}

static const char *addr_of(json_t *g)
{
	json_t *cfg = json_object_get(g, "config");
	const char *ip = json_string_value(json_object_get(cfg, "ip"));
	if (ip)
		return ip;
	const char *br = json_string_value(json_object_get(cfg, "bridge"));
	return br ? br : "-";
}

static uint64_t cfg_limit(json_t *g)
{
	json_t *cfg = json_object_get(g, "config");
	json_t *v = json_object_get(cfg, "memory_target");
	if (!v)
		v = json_object_get(cfg, "memory_hard");
	return (uint64_t)json_integer_value(v);
}

void print_guest_table(json_t *guests)
{
	printf("%-20s %-4s %-9s %6s %-17s %-15s %s\n", "NAME", "TYPE", "STATE", "CPU%",
	       "MEMORY", "DISK", "ADDRESS");
	size_t i;
	json_t *g;
	json_array_foreach(guests, i, g) {
		json_t *u = json_object_get(g, "usage");
		json_t *cfg = json_object_get(g, "config");
		char cpu[16] = "-", mu[16], ml[16], du[16], ds[16], mem[40], disk[40];
		uint64_t limit = u ? (uint64_t)json_integer_value(json_object_get(u, "mem_limit")) : 0;
		if (!limit)
			limit = cfg_limit(g);
		if (u)
			snprintf(cpu, sizeof(cpu), "%.1f", json_number_value(json_object_get(u, "cpu_pct")));
		snprintf(mem, sizeof(mem), "%s/%s",
			 fmt_size(u ? (uint64_t)json_integer_value(json_object_get(u, "mem_used")) : 0,
				  mu, sizeof(mu)),
			 fmt_size(limit, ml, sizeof(ml)));
		uint64_t dsize = u ? (uint64_t)json_integer_value(json_object_get(u, "disk_size")) : 0;
		if (!dsize)
			dsize = (uint64_t)json_integer_value(json_object_get(cfg, "disk_size"));
		snprintf(disk, sizeof(disk), "%s/%s",
			 fmt_size(u ? (uint64_t)json_integer_value(json_object_get(u, "disk_used")) : 0,
				  du, sizeof(du)),
			 fmt_size(dsize, ds, sizeof(ds)));
		printf("%-20s %-4s %-9s %6s %-17s %-15s %s\n",
		       json_string_value(json_object_get(g, "name")),
		       json_string_value(json_object_get(g, "type")),
		       json_string_value(json_object_get(g, "state")), cpu, mem, disk, addr_of(g));
		/* Why it is in that state (a source a failed migration left
		 * paused), indented under its row. */
		const char *why = json_string_value(json_object_get(g, "state_reason"));
		if (why)
			printf("  %s\n", why);
	}
}

bool name_ok(const char *name)
{
	if (kvz_valid_name(name))
		return true;
	kvz_error("bad guest name \"%s\" (letters, digits, '_', '.', '-'; up to 63)", name);
	return false;
}

json_t *get_guest(const char *name)
{
	if (!name_ok(name))
		return NULL;
	char path[128];
	snprintf(path, sizeof(path), "/v1/guests/%s", name);
	json_t *g = NULL;
	return http_call("GET", path, NULL, &g) ? NULL : g;
}
