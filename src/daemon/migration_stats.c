/* A migrated guest's usage history travels with the commit: the source's
 * raw samples of the last hour and one-minute rows of the last day, as
 * rows [resolution, ts_ms, cpu_pct, mem_used, mem_limit, disk_used,
 * disk_size, net_rx, net_tx], and beside them ("sample_disks", one entry
 * per row: a target that does not know it still takes the rows) each
 * row's disks, null or [{device, used, size, rd_bytes, wr_bytes}]; the
 * target checks each row and disk (the peer is another host) before it
 * takes them in. */
#include "migration_stats.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"

#define HOUR_MS (3600 * 1000LL)
#define DAY_MS (24 * HOUR_MS)
/* A day of one-minute rows plus an hour of raw samples at 1 s. */
#define MAX_ROWS (1440 + 3600)

static void add_rows(json_t *rows, json_t *disks, json_t *list, int resolution)
{
	size_t i;
	json_t *m;
	json_array_foreach(list, i, m) {
		json_t *r = json_pack("[i, I, f, I, I, I, I, I, I]", resolution,
				      json_integer_value(json_object_get(m, "ts_ms")),
				      json_real_value(json_object_get(m, "cpu_pct")),
				      json_integer_value(json_object_get(m, "mem_used")),
				      json_integer_value(json_object_get(m, "mem_limit")),
				      json_integer_value(json_object_get(m, "disk_used")),
				      json_integer_value(json_object_get(m, "disk_size")),
				      json_integer_value(json_object_get(m, "net_rx")),
				      json_integer_value(json_object_get(m, "net_tx")));
		json_t *dl = json_object_get(m, "disks");
		if (r && json_array_size(rows) < MAX_ROWS) {
			json_array_append_new(rows, r);
			json_array_append_new(disks, json_is_array(dl) ? json_incref(dl) : json_null());
		} else {
			json_decref(r);
		}
	}
}

json_t *mig_stats_export(struct store *s, const char *name, int64_t now_ms)
{
	json_t *rows = json_array(), *disks = json_array();
	json_t *minutes = store_sample_list(s, name, 60, now_ms - DAY_MS);
	json_t *raw = store_sample_list(s, name, 0, now_ms - HOUR_MS);
	add_rows(rows, disks, minutes, 60);
	add_rows(rows, disks, raw, 0);
	json_decref(minutes);
	json_decref(raw);
	return json_pack("{s:o, s:o}", "samples", rows, "sample_disks", disks);
}

static bool count_ok(json_t *v, uint64_t *out)
{
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return false;
	*out = (uint64_t)json_integer_value(v);
	return true;
}

/* One row into smp; false when anything is off. */
static bool row_ok(json_t *r, int64_t now_ms, int *res, struct sample *smp)
{
	if (!json_is_array(r) || json_array_size(r) != 9)
		return false;
	json_t *rv = json_array_get(r, 0), *ts = json_array_get(r, 1), *cpu = json_array_get(r, 2);
	if (!json_is_integer(rv) || !json_is_integer(ts) || !json_is_number(cpu))
		return false;
	*res = (int)json_integer_value(rv);
	smp->ts_ms = json_integer_value(ts);
	smp->cpu_pct = json_number_value(cpu);
	if ((*res != 0 && *res != 60) || smp->ts_ms < now_ms - DAY_MS ||
	    smp->ts_ms > now_ms + 60000 || !isfinite(smp->cpu_pct) || smp->cpu_pct < 0 ||
	    smp->cpu_pct > 1e6)
		return false;
	uint64_t *f[] = {&smp->mem_used, &smp->mem_limit, &smp->disk_used, &smp->disk_size,
			 &smp->net_rx, &smp->net_tx};
	for (size_t i = 0; i < 6; i++)
		if (!count_ok(json_array_get(r, 3 + i), f[i]))
			return false;
	return true;
}

/* A row's disks (null: none) into smp; false when anything is off. */
static bool disks_ok(json_t *list, struct sample *smp)
{
	smp->ndisks = 0;
	if (json_is_null(list))
		return true;
	if (!json_is_array(list) || json_array_size(list) > SAMPLE_DISKS)
		return false;
	size_t i;
	json_t *o;
	json_array_foreach(list, i, o) {
		struct sample_disk *sd = &smp->disks[i];
		const char *dev = json_string_value(json_object_get(o, "device"));
		if (!json_is_object(o) || !sample_device_ok(dev))
			return false;
		snprintf(sd->device, sizeof(sd->device), "%s", dev);
		if (!count_ok(json_object_get(o, "used"), &sd->used) ||
		    !count_ok(json_object_get(o, "size"), &sd->size) ||
		    !count_ok(json_object_get(o, "rd_bytes"), &sd->rd) ||
		    !count_ok(json_object_get(o, "wr_bytes"), &sd->wr))
			return false;
		smp->ndisks++;
	}
	return true;
}

int mig_stats_import(struct store *s, const char *name, json_t *body, int64_t now_ms,
		     char *err, size_t errlen)
{
	json_t *rows = json_object_get(body, "samples");
	json_t *disks = json_object_get(body, "sample_disks");
	if (!rows)
		return 0;
	size_t n = json_array_size(rows);
	if (!json_is_array(rows) || n > MAX_ROWS) {
		snprintf(err, errlen, "samples: an array of at most %d rows", MAX_ROWS);
		return -1;
	}
	if (disks && (!json_is_array(disks) || json_array_size(disks) != n)) {
		snprintf(err, errlen, "sample_disks: an array with one entry per row of samples");
		return -1;
	}
	struct sample *by_res[2] = {calloc(n + 1, sizeof(struct sample)),
				    calloc(n + 1, sizeof(struct sample))};
	size_t count[2] = {0, 0};
	int rc = by_res[0] && by_res[1] ? 0 : -1;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		int res;
		struct sample smp;
		memset(&smp, 0, sizeof(smp));
		if (!row_ok(json_array_get(rows, i), now_ms, &res, &smp)) {
			snprintf(err, errlen, "samples: row %zu is malformed", i);
			rc = -1;
			break;
		}
		if (disks && !disks_ok(json_array_get(disks, i), &smp)) {
			snprintf(err, errlen, "sample_disks: entry %zu is malformed", i);
			rc = -1;
			break;
		}
		int k = res == 60;
		by_res[k][count[k]++] = smp;
	}
	if (rc == 0 && (store_samples_import(s, name, 0, by_res[0], count[0]) ||
			store_samples_import(s, name, 60, by_res[1], count[1]))) {
		snprintf(err, errlen, "samples: cannot store them");
		rc = -1;
	}
	free(by_res[0]);
	free(by_res[1]);
	return rc;
}
