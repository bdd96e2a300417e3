#include "state_registry.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct state_registry {
	struct state_entry *e;
	size_t n;
	size_t cap;
};

struct state_registry *state_registry_create(void)
{
	return calloc(1, sizeof(struct state_registry));
}

void state_registry_destroy(struct state_registry *r)
{
	if (!r)
		return;
	free(r->e);
	free(r);
}

int state_registry_add(struct state_registry *r, const char *name, uint32_t version,
		       const struct state_ops *ops, void *opaque)
{
	return state_registry_add_range(r, name, version, version, ops, opaque);
}

int state_registry_add_range(struct state_registry *r, const char *name, uint32_t min_version,
			     uint32_t version, const struct state_ops *ops, void *opaque)
{
	if (strlen(name) >= STATE_NAME_MAX || !ops || !ops->save || !ops->load ||
	    min_version > version)
		return -EINVAL;
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 32;
		struct state_entry *e = realloc(r->e, cap * sizeof(*e));
		if (!e)
			return -ENOMEM;
		r->e = e;
		r->cap = cap;
	}
	uint32_t instance = 0;
	for (size_t i = 0; i < r->n; i++)
		if (!strcmp(r->e[i].name, name))
			instance++;
	struct state_entry *e = &r->e[r->n++];
	memset(e, 0, sizeof(*e));
	strcpy(e->name, name);
	e->instance = instance;
	e->version = version;
	e->min_version = min_version;
	e->ops = ops;
	e->opaque = opaque;
	return 0;
}

size_t state_registry_count(const struct state_registry *r)
{
	return r ? r->n : 0;
}

const struct state_entry *state_registry_at(const struct state_registry *r, size_t i)
{
	return i < r->n ? &r->e[i] : NULL;
}

const struct state_entry *state_registry_find(const struct state_registry *r, const char *name,
					      uint32_t instance)
{
	for (size_t i = 0; i < r->n; i++)
		if (r->e[i].instance == instance && !strcmp(r->e[i].name, name))
			return &r->e[i];
	return NULL;
}

void state_registry_pause(struct state_registry *r)
{
	for (size_t i = 0; r && i < r->n; i++)
		if (r->e[i].ops->pause)
			r->e[i].ops->pause(r->e[i].opaque);
}

void state_registry_resume(struct state_registry *r)
{
	for (size_t i = r ? r->n : 0; i-- > 0;)
		if (r->e[i].ops->resume)
			r->e[i].ops->resume(r->e[i].opaque);
}

void state_registry_reset(struct state_registry *r)
{
	for (size_t i = 0; r && i < r->n; i++)
		if (r->e[i].ops->reset)
			r->e[i].ops->reset(r->e[i].opaque);
}
