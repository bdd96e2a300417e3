#include "guest_locks.h"

#include <stdio.h>
#include <string.h>

#include "kvzd.h"

static int find(struct kvzd *d, const char *name)
{
	for (int i = 0; i < d->nbusy; i++)
		if (!strcmp(d->busy[i], name))
			return i;
	return -1;
}

void guest_lock(struct kvzd *d, const char *name)
{
	pthread_mutex_lock(&d->ops_lock);
	while (find(d, name) >= 0 || d->nbusy == KVZD_MAX_BUSY)
		pthread_cond_wait(&d->ops_cond, &d->ops_lock);
	snprintf(d->busy[d->nbusy++], sizeof(d->busy[0]), "%s", name);
	pthread_mutex_unlock(&d->ops_lock);
}

void guest_unlock(struct kvzd *d, const char *name)
{
	pthread_mutex_lock(&d->ops_lock);
	int i = find(d, name);
	if (i >= 0)
		memcpy(d->busy[i], d->busy[--d->nbusy], sizeof(d->busy[0]));
	pthread_cond_broadcast(&d->ops_cond);
	pthread_mutex_unlock(&d->ops_lock);
}
