/* GET /metrics: the Prometheus text exposition format (version 0.0.4). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "hostinfo.h"
#include "monitor.h"
#include "store.h"

struct buf {
	char *p;
	size_t len, cap;
	bool oom;
};

static void put(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct buf *b, const char *fmt, ...)
{
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
		va_end(ap);
		if (n < 0 || b->oom)
			return;
		if (b->p && b->len + (size_t)n < b->cap) {
			b->len += (size_t)n;
			return;
		}
		size_t ncap = (b->cap ? b->cap * 2 : 4096) + (size_t)n;
		char *np = realloc(b->p, ncap);
		if (!np) {
			b->oom = true;
			return;
		}
		b->p = np;
		b->cap = ncap;
	}
}

struct metric {
	const char *name, *type, *help;
	size_t offset;  /* of the uint64_t field in struct sample; SIZE_MAX: cpu_pct */
};

static const struct metric guest_metrics[] = {
	{"kvz_guest_cpu_percent", "gauge", "CPU use of the guest, percent of one CPU", SIZE_MAX},
	{"kvz_guest_memory_used_bytes", "gauge", "Memory the guest uses", offsetof(struct sample, mem_used)},
	{"kvz_guest_memory_limit_bytes", "gauge", "Memory limit (containers) or balloon target (VMs)", offsetof(struct sample, mem_limit)},
	{"kvz_guest_disk_used_bytes", "gauge", "Disk bytes allocated to the guest", offsetof(struct sample, disk_used)},
	{"kvz_guest_disk_size_bytes", "gauge", "Disk size of the guest", offsetof(struct sample, disk_size)},
	{"kvz_guest_disk_read_bytes_total", "counter", "Bytes the guest read from all its disks (VMs)", offsetof(struct sample, disk_rd)},
	{"kvz_guest_disk_written_bytes_total", "counter", "Bytes the guest wrote to all its disks (VMs)", offsetof(struct sample, disk_wr)},
	{"kvz_guest_network_receive_bytes_total", "counter", "Bytes the guest received", offsetof(struct sample, net_rx)},
	{"kvz_guest_network_transmit_bytes_total", "counter", "Bytes the guest sent", offsetof(struct sample, net_tx)},
};

/* A VM's disks one by one (label device: vda, vdb, ...), beside the
 * totals above: the same four figures, so a sum over device is the total. */
static const struct metric disk_metrics[] = {
	{"kvz_vm_disk_used_bytes", "gauge", "Bytes allocated to one disk of a VM", offsetof(struct sample_disk, used)},
	{"kvz_vm_disk_size_bytes", "gauge", "Size of one disk of a VM", offsetof(struct sample_disk, size)},
	{"kvz_vm_disk_read_bytes_total", "counter", "Bytes a VM read from one disk", offsetof(struct sample_disk, rd)},
	{"kvz_vm_disk_written_bytes_total", "counter", "Bytes a VM wrote to one disk", offsetof(struct sample_disk, wr)},
};

static void put_value(struct buf *b, const struct metric *m, const struct sample *s)
{
	if (m->offset == SIZE_MAX)
		put(b, "%.3f\n", s->cpu_pct);
	else
		put(b, "%llu\n", (unsigned long long)*(const uint64_t *)((const char *)s + m->offset));
}

/* The latest sample of a running guest; false for one not running or not
 * sampled yet. */
static bool running_sample(json_t *g, struct sample *s)
{
	return !strcmp(json_string_value(json_object_get(g, "state")), "running") &&
	       monitor_latest(json_string_value(json_object_get(g, "name")), s);
}

static void guests_section(struct buf *b, json_t *list)
{
	put(b, "# HELP kvz_guest_up 1 when the guest runs, 0 otherwise\n# TYPE kvz_guest_up gauge\n");
	size_t i;
	json_t *g;
	json_array_foreach(list, i, g)
		put(b, "kvz_guest_up{name=\"%s\",type=\"%s\",state=\"%s\"} %d\n",
		    json_string_value(json_object_get(g, "name")),
		    json_string_value(json_object_get(g, "type")),
		    json_string_value(json_object_get(g, "state")),
		    !strcmp(json_string_value(json_object_get(g, "state")), "running"));
	for (size_t m = 0; m < sizeof(guest_metrics) / sizeof(guest_metrics[0]); m++) {
		const struct metric *mt = &guest_metrics[m];
		put(b, "# HELP %s %s\n# TYPE %s %s\n", mt->name, mt->help, mt->name, mt->type);
		json_array_foreach(list, i, g) {
			const char *name = json_string_value(json_object_get(g, "name"));
			struct sample s;
			if (!running_sample(g, &s))
				continue;
			put(b, "%s{name=\"%s\",type=\"%s\"} ", mt->name, name,
			    json_string_value(json_object_get(g, "type")));
			put_value(b, mt, &s);
		}
	}
}

static void disks_section(struct buf *b, json_t *list)
{
	for (size_t m = 0; m < sizeof(disk_metrics) / sizeof(disk_metrics[0]); m++) {
		const struct metric *mt = &disk_metrics[m];
		put(b, "# HELP %s %s\n# TYPE %s %s\n", mt->name, mt->help, mt->name, mt->type);
		size_t i;
		json_t *g;
		json_array_foreach(list, i, g) {
			const char *name = json_string_value(json_object_get(g, "name"));
			struct sample s;
			if (!running_sample(g, &s))
				continue;
			/* device comes from kvz-vmm's query-blockstats: only a
			 * vdX name goes into a label (monitor.c keeps those). */
			for (unsigned k = 0; k < s.ndisks && k < SAMPLE_DISKS; k++)
				put(b, "%s{name=\"%s\",device=\"%s\"} %llu\n", mt->name, name,
				    s.disks[k].device, (unsigned long long)*(const uint64_t *)
				    ((const char *)&s.disks[k] + mt->offset));
		}
	}
}

static void host_section(struct buf *b)
{
	struct host_mem m;
	if (host_meminfo(&m) == 0)
		put(b, "# HELP kvz_host_memory_total_bytes Host memory\n"
		    "# TYPE kvz_host_memory_total_bytes gauge\nkvz_host_memory_total_bytes %llu\n"
		    "# HELP kvz_host_memory_available_bytes Host memory available\n"
		    "# TYPE kvz_host_memory_available_bytes gauge\nkvz_host_memory_available_bytes %llu\n",
		    (unsigned long long)m.total, (unsigned long long)m.available);
	struct sample s;
	if (monitor_latest(MONITOR_HOST, &s))
		put(b, "# HELP kvz_host_cpu_percent Host CPU use, percent of all CPUs\n"
		    "# TYPE kvz_host_cpu_percent gauge\nkvz_host_cpu_percent %.3f\n", s.cpu_pct);
	put(b, "# HELP kvz_host_cpus Online CPUs\n# TYPE kvz_host_cpus gauge\nkvz_host_cpus %d\n",
	    host_ncpus());
}

bool metrics_route(struct api_req *r, struct api_resp *resp)
{
	if (strcmp(r->path, "/metrics"))
		return false;
	if (strcmp(r->method, "GET")) {
		api_error(resp, 405, "%s is not allowed on %s", r->method, r->path);
		return true;
	}
	struct buf b = {0};
	json_t *list = store_guest_list(r->d->store);
	/* Guest names are [A-Za-z0-9_.-]: nothing in a label needs escaping. */
	guests_section(&b, list);
	disks_section(&b, list);
	json_decref(list);
	host_section(&b);
	if (b.oom) {
		free(b.p);
		api_error(resp, 500, "out of memory");
		return true;
	}
	resp->status = 200;
	resp->text = b.p;
	resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
	return true;
}
