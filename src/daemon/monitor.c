#include "monitor.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "guest_driver.h"
#include "guest_ops.h"
#include "hostinfo.h"
#include "log.h"
#include "periodic.h"
#include "qmp_client.h"
#include "storage.h"
#include "supervisor.h"

#define MAX_TRACKED 512

/* Latest samples and the counters the next CPU % is computed from. One
 * table for the process: the monitor thread writes it, API threads read it. */
static struct {
	pthread_mutex_t lock;
	struct tracked {
		char name[72];
		pid_t pid;
		uint64_t cpu;       /* ticks (VM) or ns (container) at ts_ms */
		int64_t cpu_ts_ms;
		bool have;
		struct sample last;
	} t[MAX_TRACKED];
	int n;
} mon = {.lock = PTHREAD_MUTEX_INITIALIZER};

static struct tracked *find(const char *name, bool create)
{
	for (int i = 0; i < mon.n; i++)
		if (!strcmp(mon.t[i].name, name))
			return &mon.t[i];
	if (!create || mon.n == MAX_TRACKED)
		return NULL;
	struct tracked *t = &mon.t[mon.n++];
	memset(t, 0, sizeof(*t));
	snprintf(t->name, sizeof(t->name), "%s", name);
	return t;
}

static void forget(const char *name)
{
	pthread_mutex_lock(&mon.lock);
	struct tracked *t = find(name, false);
	if (t)
		*t = mon.t[--mon.n];
	pthread_mutex_unlock(&mon.lock);
}

bool monitor_latest(const char *name, struct sample *out)
{
	pthread_mutex_lock(&mon.lock);
	struct tracked *t = find(name, false);
	bool ok = t && t->have;
	if (ok)
		*out = t->last;
	pthread_mutex_unlock(&mon.lock);
	return ok;
}

/* CPU % from a cumulative counter: units per second of one CPU = scale. */
static double cpu_percent(const char *name, pid_t pid, uint64_t counter, int64_t now,
			  double scale)
{
	pthread_mutex_lock(&mon.lock);
	struct tracked *t = find(name, true);
	double pct = 0;
	if (t && t->pid == pid && t->cpu_ts_ms && now > t->cpu_ts_ms && counter >= t->cpu)
		pct = (double)(counter - t->cpu) / scale * 100.0 /
		      ((double)(now - t->cpu_ts_ms) / 1000.0);
	if (t) {
		t->pid = pid;
		t->cpu = counter;
		t->cpu_ts_ms = now;
	}
	pthread_mutex_unlock(&mon.lock);
	return pct;
}

static void publish(struct kvzd *d, const char *name, const struct sample *s)
{
	pthread_mutex_lock(&mon.lock);
	struct tracked *t = find(name, true);
	if (t) {
		t->last = *s;
		t->have = true;
	}
	pthread_mutex_unlock(&mon.lock);
	store_sample_add(d->store, name, s);
}

/* utime + stime of a process, in clock ticks. */
static int proc_cpu_ticks(pid_t pid, uint64_t *ticks, uint64_t *rss)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	char *p = strrchr(buf, ')');
	if (!p)
		return -1;
	unsigned long long ut, st;
	long long rss_pages;
	/* Fields after ')': 3 state ... 14 utime 15 stime ... 24 rss. */
	if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu"
		   " %*d %*d %*d %*d %*d %*d %*u %*u %lld", &ut, &st, &rss_pages) != 3)
		return -1;
	*ticks = ut + st;
	*rss = rss_pages > 0 ? (uint64_t)rss_pages * (uint64_t)sysconf(_SC_PAGESIZE) : 0;
	return 0;
}

static uint64_t read_u64_file(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	unsigned long long v = 0;
	if (fscanf(f, "%llu", &v) != 1)
		v = 0;
	fclose(f);
	return v;
}

/* What the guest has now, per its balloon (QMP query-balloon); s's
 * mem_limit stays when the VMM cannot say. */
static void balloon_actual(struct qmp_client *c, const char *name, struct sample *s)
{
	char err[256];
	json_t *r = NULL;
	if (qmp_client_execute(c, "query-balloon", NULL, &r, NULL, 0, err, sizeof(err)) == 0 &&
	    json_integer_value(json_object_get(r, "actual")) > 0)
		s->mem_limit = (uint64_t)json_integer_value(json_object_get(r, "actual"));
	else if (!r)
		kvz_debug("monitor: %s: query-balloon: %s", name, err);
	json_decref(r);
}

/* Bytes read and written per disk (QMP query-blockstats, one entry per
 * --disk in order), into s->disks[] and the totals. */
static void block_io(struct qmp_client *c, const char *name, struct sample *s)
{
	char err[256];
	json_t *r = NULL;
	if (qmp_client_execute(c, "query-blockstats", NULL, &r, NULL, 0, err, sizeof(err))) {
		kvz_debug("monitor: %s: query-blockstats: %s", name, err);
		return;
	}
	for (size_t i = 0; i < s->ndisks && i < json_array_size(r); i++) {
		json_t *o = json_array_get(r, i), *st = json_object_get(o, "stats");
		struct sample_disk *sd = &s->disks[i];
		const char *dev = json_string_value(json_object_get(o, "device"));
		if (sample_device_ok(dev))
			snprintf(sd->device, sizeof(sd->device), "%s", dev);
		json_int_t rd = json_integer_value(json_object_get(st, "rd_bytes"));
		json_int_t wr = json_integer_value(json_object_get(st, "wr_bytes"));
		sd->rd = rd > 0 ? (uint64_t)rd : 0;
		sd->wr = wr > 0 ? (uint64_t)wr : 0;
		s->disk_rd += sd->rd;
		s->disk_wr += sd->wr;
	}
	json_decref(r);
}

/* Every disk's space (its file), summed into disk_used/disk_size. */
static void vm_disk_space(json_t *cfg, struct sample *s)
{
	json_t *disks = json_object_get(cfg, "disks");
	size_t n = json_array_size(disks);
	const char *d0 = json_string_value(json_object_get(cfg, "disk_path"));
	if (!n && d0)
		n = 1;   /* a record from before the disks list */
	for (size_t i = 0; i < n && i < SAMPLE_DISKS; i++) {
		struct sample_disk *sd = &s->disks[i];
		const char *p = i ? json_string_value(json_object_get(json_array_get(disks, i), "path"))
				  : d0;
		snprintf(sd->device, sizeof(sd->device), "vd%c", (char)('a' + i));
		if (p)
			storage_usage(p, &sd->used, &sd->size);
		s->disk_used += sd->used;
		s->disk_size += sd->size;
		s->ndisks = (unsigned)i + 1;
	}
}

void monitor_sample_vm(struct kvzd *d, json_t *g, int64_t now)
{
	const char *name = json_string_value(json_object_get(g, "name"));
	json_t *cfg = json_object_get(g, "config");
	pid_t pid = (pid_t)json_integer_value(json_object_get(g, "pid"));
	uint64_t ticks, rss;
	if (proc_cpu_ticks(pid, &ticks, &rss))
		return;
	struct sample s = {.ts_ms = now, .mem_used = rss};
	s.cpu_pct = cpu_percent(name, pid, ticks, now, (double)sysconf(_SC_CLK_TCK));
	s.mem_limit = (uint64_t)json_integer_value(json_object_get(cfg, "memory_target"));
	vm_disk_space(cfg, &s);
	bool balloon = json_is_true(json_object_get(cfg, "balloon"));
	if (balloon || s.ndisks) {
		char err[256];
		struct qmp_client *c = qmp_client_connect(json_string_value(json_object_get(g, "qmp")),
							  2000, err, sizeof(err));
		if (!c)
			kvz_debug("monitor: %s: %s", name, err);
		if (c && balloon)
			balloon_actual(c, name, &s);
		if (c && s.ndisks)
			block_io(c, name, &s);
		if (c)
			qmp_client_close(c);
	}
	if (json_object_get(cfg, "bridge")) {
		/* The tap's receive side is what the guest sent. */
		char path[128];
		snprintf(path, sizeof(path), "/sys/class/net/kvz%.12s/statistics/tx_bytes", name);
		s.net_rx = read_u64_file(path);
		snprintf(path, sizeof(path), "/sys/class/net/kvz%.12s/statistics/rx_bytes", name);
		s.net_tx = read_u64_file(path);
	}
	publish(d, name, &s);
}

static uint64_t obj_u64(json_t *o, const char *key)
{
	json_int_t v = json_integer_value(json_object_get(o, key));
	return v > 0 ? (uint64_t)v : 0;
}

void monitor_sample_ct(struct kvzd *d, json_t *g, int64_t now)
{
	const char *name = json_string_value(json_object_get(g, "name"));
	const char *qmp = json_string_value(json_object_get(g, "qmp"));
	pid_t pid = (pid_t)json_integer_value(json_object_get(g, "pid"));
	char err[256];
	struct qmp_client *c = qmp_client_connect(qmp, 2000, err, sizeof(err));
	if (!c) {
		kvz_debug("monitor: %s: %s", name, err);
		return;
	}
	json_t *st = NULL;
	int rc = qmp_client_execute(c, "query-stats", NULL, &st, NULL, 0, err, sizeof(err));
	qmp_client_close(c);
	if (rc) {
		kvz_debug("monitor: %s: query-stats: %s", name, err);
		return;
	}
	struct sample s = {.ts_ms = now};
	s.cpu_pct = cpu_percent(name, pid, obj_u64(st, "cpu-usage-ns"), now, 1e9);
	s.mem_used = obj_u64(st, "memory-used");
	s.mem_limit = obj_u64(st, "memory-hard");
	s.disk_used = obj_u64(st, "disk-used");
	s.disk_size = obj_u64(st, "disk-size");
	s.net_rx = obj_u64(st, "net-rx-bytes");
	s.net_tx = obj_u64(st, "net-tx-bytes");
	json_decref(st);
	publish(d, name, &s);
}

static void sample_host(struct kvzd *d, int64_t now, const struct sample *sum)
{
	struct host_mem m;
	uint64_t total, idle;
	struct sample s = *sum;
	s.ts_ms = now;
	if (host_meminfo(&m) == 0) {
		s.mem_used = m.total - m.available;
		s.mem_limit = m.total;
	}
	s.disk_size = storage_free_bytes(d->state_dir) + s.disk_used;
	if (host_cpu_ticks(&total, &idle) == 0) {
		/* Busy ticks against all ticks: 100% means every CPU busy. */
		static uint64_t last_total, last_idle;  /* monitor thread only */
		if (last_total && total > last_total)
			s.cpu_pct = 100.0 * (double)((total - last_total) - (idle - last_idle)) /
				    (double)(total - last_total);
		last_total = total;
		last_idle = idle;
	}
	publish(d, MONITOR_HOST, &s);
}

static void monitor_round(struct kvzd *d)
{
	json_t *list = store_guest_list(d->store);
	int64_t now = kvzd_now_ms();
	struct sample sum = {0};
	size_t i;
	json_t *g;
	json_array_foreach(list, i, g) {
		const char *name = json_string_value(json_object_get(g, "name"));
		const char *state = json_string_value(json_object_get(g, "state"));
		/* A paused guest is watched for its supervisor's end, not sampled. */
		if (!guest_state_has_supervisor(state) || !guest_check_alive(d, name) ||
		    strcmp(state, "running")) {
			forget(name);
			continue;
		}
		guest_driver_of(g)->sample(d, g, now);
		struct sample s;
		if (monitor_latest(name, &s) && s.ts_ms == now) {
			sum.disk_used += s.disk_used;
			sum.disk_rd += s.disk_rd;
			sum.disk_wr += s.disk_wr;
			sum.net_rx += s.net_rx;
			sum.net_tx += s.net_tx;
		}
	}
	json_decref(list);
	sample_host(d, now, &sum);
	store_samples_rollup(d->store, now);
}

/* The monitor thread and how main() asks it to end: one per kvzd. */
static struct periodic ctl = PERIODIC_INIT;

static void monitor_tick(void *arg)
{
	monitor_round(arg);
}

int monitor_start(struct kvzd *d, char *err, size_t errlen)
{
	return periodic_start(&ctl, "monitor", monitor_tick, d, d->sample_interval_s * 1000LL,
			      err, errlen);
}

void monitor_stop(void)
{
	periodic_stop(&ctl);
}
