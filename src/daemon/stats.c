/* Usage series: GET /v1/guests/NAME/stats and GET /v1/host. */
#include <string.h>

#include "api.h"
#include "guest_driver.h"
#include "hostinfo.h"
#include "monitor.h"
#include "parse.h"
#include "store.h"

/* A VM's disks one by one: [{"device", "used", "size", "rd_bytes",
 * "wr_bytes"}]. */
static json_t *disks_json(const struct sample *s)
{
	json_t *a = json_array();
	for (unsigned i = 0; a && i < s->ndisks && i < SAMPLE_DISKS; i++) {
		const struct sample_disk *d = &s->disks[i];
		json_array_append_new(a, json_pack("{s:s, s:I, s:I, s:I, s:I}", "device", d->device,
						   "used", (json_int_t)d->used, "size", (json_int_t)d->size,
						   "rd_bytes", (json_int_t)d->rd, "wr_bytes", (json_int_t)d->wr));
	}
	return a;
}

static json_t *sample_json(const struct sample *s)
{
	json_t *o = json_pack("{s:I, s:f, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
			      "ts_ms", (json_int_t)s->ts_ms, "cpu_pct", s->cpu_pct,
			      "mem_used", (json_int_t)s->mem_used, "mem_limit", (json_int_t)s->mem_limit,
			      "disk_used", (json_int_t)s->disk_used, "disk_size", (json_int_t)s->disk_size,
			      "disk_rd_bytes", (json_int_t)s->disk_rd, "disk_wr_bytes",
			      (json_int_t)s->disk_wr, "net_rx", (json_int_t)s->net_rx, "net_tx",
			      (json_int_t)s->net_tx);
	if (o && s->ndisks)
		json_object_set_new(o, "disks", disks_json(s));
	return o;
}

json_t *stats_usage_json(const char *name)
{
	struct sample s;
	return monitor_latest(name, &s) ? sample_json(&s) : NULL;
}

/* ?range=1h (raw samples of the last hour, the default) or 24h (one-minute
 * averages of the last day); ?since=MS narrows either. */
static void series(struct api_req *r, struct api_resp *resp, const char *name, json_t *out)
{
	const char *range = api_query(r, "range");
	const char *since_s = api_query(r, "since");
	int resolution = 0;
	int64_t span = 3600 * 1000LL;
	if (range && !strcmp(range, "24h")) {
		resolution = 60;
		span = 24 * 3600 * 1000LL;
	} else if (range && strcmp(range, "1h")) {
		api_error(resp, 400, "range must be 1h or 24h");
		json_decref(out);
		return;
	}
	uint64_t since = 0;
	if (since_s && !kvz_parse_u64(since_s, 0, INT64_MAX, &since)) {
		api_error(resp, 400, "since must be milliseconds since the epoch");
		json_decref(out);
		return;
	}
	int64_t from = kvzd_now_ms() - span;
	if ((int64_t)since > from)
		from = (int64_t)since;
	json_object_set_new(out, "resolution_s", json_integer(resolution));
	json_object_set_new(out, "samples", store_sample_list(r->d->store, name, resolution, from));
	json_t *latest = stats_usage_json(name);
	json_object_set_new(out, "latest", latest ? latest : json_null());
	api_json(resp, 200, out);
}

void stats_guest(struct api_req *r, struct api_resp *resp, const char *name)
{
	json_t *g = store_guest_get(r->d->store, name);
	if (!g) {
		api_error(resp, 404, "no guest named %s", name);
		return;
	}
	json_decref(g);
	series(r, resp, name, json_pack("{s:s}", "name", name));
}

static json_t *host_json(struct kvzd *d)
{
	struct host_mem m = {0};
	host_meminfo(&m);
	json_t *list = store_guest_list(d->store);
	json_t *states = json_object();
	uint64_t vm_mem = 0;
	size_t i;
	json_t *g;
	json_array_foreach(list, i, g) {
		const char *st = json_string_value(json_object_get(g, "state"));
		json_int_t n = json_integer_value(json_object_get(states, st));
		json_object_set_new(states, st, json_integer(n + 1));
		if (guest_state_has_supervisor(st) && guest_driver_of(g)->reserves_memory)
			vm_mem += (uint64_t)json_integer_value(
				json_object_get(json_object_get(g, "config"), "memory"));
	}
	char model[256];
	host_cpu_model(model, sizeof(model));
	json_t *out = json_pack("{s:s, s:i, s:s, s:I, s:I, s:I, s:i, s:o, s:s, s:s, s:s}",
				"version", "0.1.0", "cpus", host_ncpus(), "cpu_model", model,
				"mem_total", (json_int_t)m.total,
				"mem_available", (json_int_t)m.available,
				"vm_memory_assigned", (json_int_t)vm_mem,
				"guests", (int)json_array_size(list), "states", states,
				"state_dir", d->state_dir, "run_dir", d->run_dir,
				"ct_bin", d->ct_bin);
	json_decref(list);
	return out;
}

bool stats_route(struct api_req *r, struct api_resp *resp)
{
	bool host = !strcmp(r->path, "/v1/host");
	bool host_stats = !strcmp(r->path, "/v1/host/stats");
	if (!host && !host_stats)
		return false;
	if (strcmp(r->method, "GET")) {
		api_error(resp, 405, "%s is not allowed on %s", r->method, r->path);
		return true;
	}
	if (host) {
		json_t *out = host_json(r->d);
		json_t *latest = stats_usage_json(MONITOR_HOST);
		json_object_set_new(out, "usage", latest ? latest : json_null());
		api_json(resp, 200, out);
		return true;
	}
	series(r, resp, MONITOR_HOST, json_pack("{s:s}", "name", "host"));
	return true;
}
