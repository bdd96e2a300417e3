#include "guest_driver.h"

#include <string.h>

#include "guest_config.h"
#include "log.h"
#include "supervisor.h"

static const struct guest_driver *const drivers[GUEST_KIND_COUNT] = {
	[GUEST_VM] = &guest_vm_driver,
	[GUEST_CT] = &guest_ct_driver,
};

const struct guest_driver *guest_driver_for_type(const char *type)
{
	for (int k = 0; type && k < GUEST_KIND_COUNT; k++)
		if (!strcmp(drivers[k]->type, type))
			return drivers[k];
	return NULL;
}

const struct guest_driver *guest_driver_of(json_t *g)
{
	const char *type = json_string_value(json_object_get(g, "type"));
	const struct guest_driver *drv = guest_driver_for_type(type);
	if (!drv)
		kvz_die("store: guest %s has unknown type \"%s\"",
			json_string_value(json_object_get(g, "name")), type ? type : "(none)");
	return drv;
}

bool guest_supervisor_runs(json_t *g)
{
	return sup_is_supervisor((pid_t)json_integer_value(json_object_get(g, "pid")),
				 (unsigned long long)json_integer_value(json_object_get(g, "pid_start")),
				 guest_driver_of(g)->prog, cfg_str(g, "name"));
}

const struct guest_driver *guest_driver_by_kind(enum guest_kind k)
{
	return drivers[k];
}
