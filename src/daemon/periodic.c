#include "periodic.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "kvzd.h"

static void *periodic_main(void *arg)
{
	struct periodic *p = arg;
	pthread_mutex_lock(&p->lock);
	while (!p->stop) {
		pthread_mutex_unlock(&p->lock);
		int64_t t0 = kvzd_now_ms();
		p->round(p->arg);
		int64_t wake = t0 + p->interval_ms;
		struct timespec ts = {.tv_sec = wake / 1000, .tv_nsec = (wake % 1000) * 1000000};
		pthread_mutex_lock(&p->lock);
		while (!p->stop && pthread_cond_timedwait(&p->cond, &p->lock, &ts) != ETIMEDOUT)
			;
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

int periodic_start(struct periodic *p, const char *what, void (*round)(void *), void *arg,
		   int64_t interval_ms, char *err, size_t errlen)
{
	p->round = round;
	p->arg = arg;
	p->interval_ms = interval_ms;
	int rc = pthread_create(&p->thread, NULL, periodic_main, p);
	if (rc) {
		snprintf(err, errlen, "cannot start the %s thread: %s", what, strerror(rc));
		return -1;
	}
	p->started = true;
	return 0;
}

void periodic_stop(struct periodic *p)
{
	if (!p->started)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
	pthread_join(p->thread, NULL);
	p->started = false;
}
