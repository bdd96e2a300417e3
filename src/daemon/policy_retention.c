#include "policy_retention.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define DAY_MS 86400000LL

static int newest_first(const void *a, const void *b)
{
	json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
	json_int_t cx = json_integer_value(json_object_get(x, "created_ms"));
	json_int_t cy = json_integer_value(json_object_get(y, "created_ms"));
	if (cx != cy)
		return cx > cy ? -1 : 1;
	const char *nx = json_string_value(json_object_get(x, "name"));
	const char *ny = json_string_value(json_object_get(y, "name"));
	return strcmp(ny ? ny : "", nx ? nx : "");
}

json_t *policy_retention_drop(json_t *items, int keep_last, int keep_daily, int64_t now_ms)
{
	size_t n = json_array_size(items);
	json_t *drop = json_array();
	json_t **v = calloc(n ? n : 1, sizeof(*v));
	bool *day_taken = calloc((size_t)keep_daily + 1, sizeof(bool));
	if (!v || !day_taken) {
		free(v);
		free(day_taken);
		return drop;   /* out of memory: remove nothing */
	}
	for (size_t i = 0; i < n; i++)
		v[i] = json_array_get(items, i);
	qsort(v, n, sizeof(*v), newest_first);
	int64_t today = now_ms / DAY_MS;
	for (size_t i = 0; i < n; i++) {
		int64_t age = today - json_integer_value(json_object_get(v[i], "created_ms")) / DAY_MS;
		bool keep = (int64_t)i < keep_last;
		if (age >= 0 && age < keep_daily && !day_taken[age]) {
			day_taken[age] = true;   /* the newest of that day */
			keep = true;
		}
		if (!keep)
			json_array_insert_new(drop, 0, json_incref(json_object_get(v[i], "name")));
	}
	free(v);
	free(day_taken);
	return drop;
}
