#include "vm_state.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "guest_config.h"
#include "log.h"

#define QMP_TIMEOUT_MS 5000
#define POLL_MS 100
/* A migrate_cancel that kvz-vmm does not finish within this is a failure. */
#define CANCEL_WAIT_MS 10000

/* Reads query-migrate; *status gets its status. */
static int migrate_status(struct qmp_client *c, const char *guest, char *status, size_t len,
			  uint64_t *done, uint64_t *total, struct op_error *e)
{
	char err[300];
	json_t *r = NULL;
	if (qmp_client_execute(c, "query-migrate", NULL, &r, NULL, 0, err, sizeof(err)))
		return op_fail(e, 502, "%s: query-migrate: %s", guest, err);
	const char *s = json_string_value(json_object_get(r, "status"));
	snprintf(status, len, "%s", s ? s : "none");
	json_t *ram = json_object_get(r, "ram");
	*done = (uint64_t)json_integer_value(json_object_get(ram, "transferred"));
	*total = (uint64_t)json_integer_value(json_object_get(ram, "total"));
	if (!strcmp(status, "failed")) {
		const char *why = json_string_value(json_object_get(r, "error-desc"));
		op_fail(e, 500, "%s: saving the machine state failed: %s", guest,
			why ? why : "kvz-vmm gave no reason");
	}
	json_decref(r);
	return 0;
}

static void drain_events(struct qmp_client *c)
{
	json_t *ev;
	while ((ev = qmp_client_next_event(c, 0)))
		json_decref(ev);
}

void vm_state_cancel(struct qmp_client *c, const char *guest)
{
	char err[300], status[32];
	struct op_error ignored;
	uint64_t done, total;
	if (qmp_client_execute(c, "migrate_cancel", NULL, NULL, NULL, 0, err, sizeof(err))) {
		kvz_warn("%s: migrate_cancel: %s", guest, err);
		return;
	}
	for (int waited = 0; waited < CANCEL_WAIT_MS; waited += POLL_MS) {
		if (migrate_status(c, guest, status, sizeof(status), &done, &total, &ignored))
			return;
		if (strcmp(status, "active") && strcmp(status, "setup") &&
		    strcmp(status, "cancelling"))
			return;
		struct timespec ts = {0, POLL_MS * 1000000L};
		nanosleep(&ts, NULL);
	}
	kvz_warn("%s: the cancelled save did not end within %d s", guest, CANCEL_WAIT_MS / 1000);
}

int vm_state_save(struct job *j, const char *phase, const char *guest,
		  struct qmp_client *c, const char *path, struct op_error *e)
{
	char err[300];
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return op_fail(e, 500, "cannot create %s: %s", path, strerror(errno));
	int rc = qmp_client_getfd(c, "snap", fd, err, sizeof(err));
	close(fd);
	if (rc)
		return op_fail(e, rc > 0 ? 409 : 502, "%s: getfd: %s", guest, err);
	json_t *args = json_pack("{s:s}", "uri", "fd:snap");
	rc = qmp_client_execute(c, "migrate", args, NULL, NULL, 0, err, sizeof(err));
	json_decref(args);
	if (rc)
		return op_fail(e, rc > 0 ? 409 : 502, "%s: migrate: %s", guest, err);
	for (;;) {
		char status[32];
		uint64_t done, total;
		drain_events(c);
		if (job_cancelled(j)) {
			vm_state_cancel(c, guest);
			return op_fail(e, 409, "cancelled");
		}
		if (migrate_status(c, guest, status, sizeof(status), &done, &total, e))
			return -1;
		if (!strcmp(status, "failed"))
			return -1;
		if (!strcmp(status, "cancelled"))
			return op_fail(e, 500, "%s: the save was cancelled inside kvz-vmm", guest);
		job_progress(j, phase, done, total);
		if (!strcmp(status, "completed"))
			return 0;
		struct timespec ts = {0, POLL_MS * 1000000L};
		nanosleep(&ts, NULL);
	}
}

int vm_state_resume(struct qmp_client *c, const char *guest, char *err, size_t errlen)
{
	json_t *r = NULL;
	if (qmp_client_execute(c, "query-status", NULL, &r, NULL, 0, err, errlen) == 0 &&
	    json_is_true(json_object_get(r, "running"))) {
		json_decref(r);
		return 0;
	}
	json_decref(r);
	if (qmp_client_execute(c, "cont", NULL, NULL, NULL, 0, err, errlen) == 0)
		return 0;
	kvz_warn("%s: cannot resume after the save: %s", guest, err);
	return -1;
}

int vm_state_cancel_and_resume(const char *guest, const char *qmp, char *err, size_t errlen)
{
	char why[300];
	struct qmp_client *c = qmp_client_connect(qmp, QMP_TIMEOUT_MS, why, sizeof(why));
	if (!c) {
		kvz_warn("%s: cannot reach its supervisor to resume it: %s", guest, why);
		snprintf(err, errlen, "its supervisor does not answer: %s", why);
		return -1;
	}
	vm_state_cancel(c, guest);
	int rc = vm_state_resume(c, guest, why, sizeof(why));
	qmp_client_close(c);
	if (rc)
		snprintf(err, errlen, "it stays paused: %s", why);
	return rc;
}
