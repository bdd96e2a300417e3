/* Resource limits of a container: parsed from the command line and from the
 * QMP `set` command with the same syntax, then applied by cgroup.c. */
#ifndef KVZ_CT_LIMITS_H
#define KVZ_CT_LIMITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct ct_limits {
	bool has_memory;
	uint64_t mem_soft, mem_hard;
	bool has_swap;
	uint64_t swap;
	bool has_cpus;
	double cpus;
	bool has_cpu_weight;
	uint64_t cpu_weight; /* cgroup v2 scale: 1..10000, default 100 */
	bool has_cpuset;
	char cpuset[128];
	bool has_pids;
	uint64_t pids;
	bool has_io_weight;
	uint64_t io_weight; /* 1..10000, mapped to v1's 10..1000 */
	bool has_disk;
	uint64_t disk;
};

/* key is the option name without dashes: "memory", "swap", "cpus",
 * "cpu-weight", "cpuset", "pids", "io-weight", "disk". Returns false with a
 * message in err for an unknown key or a value that does not parse. */
bool ct_limit_parse(struct ct_limits *l, const char *key, const char *val,
		    char *err, size_t errlen);

/* The limits set in l (not disk) as {"memory": "SOFT:HARD", ...}: each
 * value in the syntax ct_limit_parse() takes back. */
json_t *ct_limits_to_json(const struct ct_limits *l);
/* Parses such an object into l; false with err on a bad key or value. */
bool ct_limits_from_json(struct ct_limits *l, json_t *obj, char *err, size_t errlen);

/* Copies every limit set in upd into cur. */
void ct_limits_merge(struct ct_limits *cur, const struct ct_limits *upd);

#endif
