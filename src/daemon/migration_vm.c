/* The VM's part of a migration (guest_driver.h migrate_*): the machine
 * state saved by kvz-vmm into a file (vm_state.h), and the target's
 * kvz-vmm started with --incoming file:. */
#include <stdio.h>

#include "guest_config.h"
#include "guest_driver.h"
#include "qmp_client.h"
#include "vm_state.h"

#define QMP_TIMEOUT_MS 5000

int vm_migrate_save(struct kvzd *d, struct job *j, json_t *g, const char *path,
			   struct op_error *e)
{
	(void)d;
	const char *name = cfg_str(g, "name");
	char err[300];
	struct qmp_client *c = qmp_client_connect(cfg_str(g, "qmp"), QMP_TIMEOUT_MS, err,
						  sizeof(err));
	if (!c)
		return op_fail(e, 502, "cannot reach the supervisor of %s: %s", name, err);
	int rc = vm_state_save(j, "saving state", name, c, path, e);
	qmp_client_close(c);
	return rc;
}

void vm_migrate_resume(struct kvzd *d, json_t *g)
{
	(void)d;
	vm_state_cancel_and_resume(cfg_str(g, "name"), cfg_str(g, "qmp"));
}

int vm_migrate_start(struct kvzd *d, json_t *g, const char *path, struct op_error *e)
{
	char uri[500];
	snprintf(uri, sizeof(uri), "file:%s", path);
	const char *extra[] = {"--incoming", uri, NULL};
	return guest_start_locked(d, g, extra, e);
}
