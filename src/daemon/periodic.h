/* A thread that calls round(arg) every interval (the monitor, the node
 * health check) and ends, after its current round, when asked. The wait
 * is on CLOCK_REALTIME (the condition variable's default), as intervals
 * start from kvzd_now_ms(). */
#ifndef KVZD_PERIODIC_H
#define KVZD_PERIODIC_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct periodic {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop, started;
	void (*round)(void *arg);
	void *arg;
	int64_t interval_ms;
};

#define PERIODIC_INIT {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER}

/* what names the thread in err. */
int periodic_start(struct periodic *p, const char *what, void (*round)(void *), void *arg,
		   int64_t interval_ms, char *err, size_t errlen);
void periodic_stop(struct periodic *p);

#endif
