/* The daemon's embedded store: SQLite in WAL mode under the state dir.
 *
 * Tables: migrations (schema versions applied), guests (one row per guest:
 * its configuration as JSON plus runtime fields), events, samples (the
 * round-robin series: resolution 0 = raw samples kept one hour, resolution
 * 60 = one-minute averages kept a day).
 *
 * One connection serialized by a mutex: the daemon's write rate is a few rows
 * a second, far below what one connection sustains. */
#ifndef KVZD_STORE_H
#define KVZD_STORE_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include <jansson.h>

struct store;

struct store *store_open(const char *path, char *err, size_t errlen);
void store_close(struct store *s);

/* Guests (inserted in state "creating"). A guest's JSON object has: name,
 * type, state, config (object),
 * pid, pid_start (process start time, to tell a reused pid apart), qmp,
 * console, autostart, created_ms, state_ms, and state_reason when the
 * state has one (one line: why a guest is "paused"). */
int store_guest_insert(struct store *s, const char *name, const char *type,
		       json_t *config, bool autostart, char *err, size_t errlen);
/* New reference or NULL when there is no such guest. */
json_t *store_guest_get(struct store *s, const char *name);
/* Array of guest objects ordered by name. */
json_t *store_guest_list(struct store *s);
/* Clears the state's reason. */
int store_guest_set_state(struct store *s, const char *name, const char *state);
/* reason NULL or "": none. */
int store_guest_set_state_reason(struct store *s, const char *name, const char *state,
				 const char *reason);
int store_guest_set_runtime(struct store *s, const char *name, pid_t pid,
			    unsigned long long pid_start, const char *qmp,
			    const char *console);
int store_guest_set_config(struct store *s, const char *name, json_t *config);
int store_guest_delete(struct store *s, const char *name);

/* Events: detail may be NULL. Returns the new event id or -1. */
int64_t store_event_add(struct store *s, const char *guest, const char *type,
			const char *detail);
/* Events with id > since (all guests when guest is NULL), oldest first, at
 * most limit. */
json_t *store_event_list(struct store *s, int64_t since, const char *guest,
			 int limit);

/* A VM's disks in a sample (as many as kvz-vmm takes). */
#define SAMPLE_DISKS 8

/* One sample of a guest or the host. disk_* are over every disk of the
 * guest; disk_rd/disk_wr (bytes read and written since the VM started,
 * kvz-vmm's query-blockstats) and the per-disk figures are kept in
 * memory for the latest sample only, not in the store's series. */
struct sample {
	int64_t ts_ms;
	double cpu_pct;
	uint64_t mem_used, mem_limit, disk_used, disk_size, net_rx, net_tx;
	uint64_t disk_rd, disk_wr;
	unsigned ndisks;
	struct sample_disk {
		char device[8];
		uint64_t used, size, rd, wr;
	} disks[SAMPLE_DISKS];
};

/* A disk's device name fit for a /metrics label and the REST answer:
 * [a-z0-9], 1 to 7 characters (kvz-vmm's own: vda, vdb, ...). Inline: the
 * migration history's fuzz target checks it without the store. */
static inline bool sample_device_ok(const char *dev)
{
	size_t n = dev ? strlen(dev) : 0;
	if (!n || n >= sizeof(((struct sample_disk *)0)->device))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((dev[i] >= 'a' && dev[i] <= 'z') || (dev[i] >= '0' && dev[i] <= '9')))
			return false;
	return true;
}

int store_sample_add(struct store *s, const char *guest, const struct sample *smp);
/* n samples of another host's history (a migrated guest's) at resolution 0
 * or 60, all or none. */
int store_samples_import(struct store *s, const char *guest, int resolution,
			 const struct sample *smp, size_t n);
/* Averages raw samples into one-minute rows for minutes that have ended and
 * have none yet, then drops raw rows older than an hour and minute rows older
 * than a day. */
int store_samples_rollup(struct store *s, int64_t now_ms);
/* Samples of one guest with ts >= since_ms at resolution 0 or 60. */
json_t *store_sample_list(struct store *s, const char *guest, int resolution,
			  int64_t since_ms);
int store_samples_delete(struct store *s, const char *guest);

/* Jobs (long operations, jobs.h). A job's JSON object has: id, type, guest,
 * state (queued, running, completed, failed, cancelled), phase, done and
 * total (bytes), rate (bytes/s in the current phase), error (null or one
 * line), params (object), created_ms, started_ms, ended_ms (0 until then),
 * result (null, or an object the job's kind set: store_job_set_result). */
struct job_row {
	int64_t id;
	char type[32];
	char guest[72];
	char state[16];
	char phase[64];
	uint64_t done, total;
	double rate;
	char error[512];
	int64_t started_ms, ended_ms;
};

/* A new job in state queued; its id, or -1. */
int64_t store_job_insert(struct store *s, const char *type, const char *guest,
			 json_t *params);
/* Writes every field of r but type, guest, params and created_ms. */
int store_job_save(struct store *s, const struct job_row *r);
/* What the job reports beyond its state (borrowed; an object). */
int store_job_set_result(struct store *s, int64_t id, json_t *result);
/* New reference or NULL. */
json_t *store_job_get(struct store *s, int64_t id);
/* The newest limit jobs (of guest when not NULL), oldest first. */
json_t *store_job_list(struct store *s, const char *guest, int limit);
/* Jobs still queued or running, oldest first. */
json_t *store_jobs_unfinished(struct store *s);

/* Snapshots of guests (snapshots.h): guest, name, created_ms, size (bytes
 * on disk), running (whether the guest ran: restore brings it back
 * running). Inserted only once complete. */
int store_snapshot_insert(struct store *s, const char *guest, const char *name,
			  int64_t created_ms, uint64_t size, bool running);
json_t *store_snapshot_get(struct store *s, const char *guest, const char *name);
json_t *store_snapshot_list(struct store *s, const char *guest);
/* name NULL: every snapshot of guest. */
int store_snapshot_delete(struct store *s, const char *guest, const char *name);

/* Other hosts running kvzd (nodes.h): name, url, added_ms. */
/* 0, or -1 (1 when the name is taken). */
int store_node_insert(struct store *s, const char *name, const char *url);
json_t *store_node_get(struct store *s, const char *name);
/* Ordered by name. */
json_t *store_node_list(struct store *s);
int store_node_delete(struct store *s, const char *name);

/* Policy rules (store_policy.c, docs/policy.md): name, rule (the canonical
 * rule object), enabled, created_ms, updated_ms. */
/* 0, 1 when the name is taken, -1 on error. */
int store_policy_insert(struct store *s, const char *name, json_t *rule, bool enabled);
json_t *store_policy_get(struct store *s, const char *name);
/* Ordered by name. */
json_t *store_policy_list(struct store *s);
/* 0, 1 when there is no such rule, -1 on error. */
int store_policy_set_enabled(struct store *s, const char *name, bool enabled);
int store_policy_delete(struct store *s, const char *name);

/* The audit trail: what rules did or would do. A row: id, ts_ms, rule,
 * guest, action, state (planned: manual level; proposed: waiting for
 * approval; approved, done, failed, skipped), reason, result, approved_by,
 * updated_ms. Returns the new id or -1. */
int64_t store_policy_log_add(struct store *s, const char *rule, const char *guest,
			     const char *action, const char *state, const char *reason);
/* Sets state and result (and approved_by when not NULL); 1 when no row
 * with that id is in state `from` (NULL: any). */
int store_policy_log_update(struct store *s, int64_t id, const char *from, const char *state,
			    const char *result, const char *approved_by);
json_t *store_policy_log_get(struct store *s, int64_t id);
/* Rows with id > since (of state when not NULL), oldest first, at most limit. */
json_t *store_policy_log_list(struct store *s, int64_t since, const char *state, int limit);
/* The newest event's id (0 when none): where the policy engine starts
 * reading events. */
int64_t store_event_last_id(struct store *s);

#endif
