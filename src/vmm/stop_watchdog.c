#include "stop_watchdog.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "console.h"
#include "log.h"

struct stop_watchdog {
	pthread_t thread;
	pthread_mutex_t lock;   /* a leaf: guards done and stage */
	pthread_cond_t cond;
	bool done;
	const char *stage;
	struct timespec deadline;   /* CLOCK_MONOTONIC */
	int limit_s;
	bool restore_tty;           /* a copy: the console may be gone by then */
	struct termios tty;
};

static void *watchdog_thread(void *arg)
{
	struct stop_watchdog *w = arg;
	pthread_setname_np(pthread_self(), "stop-watchdog");
	pthread_mutex_lock(&w->lock);
	int rc = 0;
	while (!w->done && rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&w->cond, &w->lock, &w->deadline);
	if (w->done) {
		pthread_mutex_unlock(&w->lock);
		return NULL;
	}
	/* The main thread is stuck: leave without it. The socket files stay
	 * behind, as after any exit under seccomp; the next listener replaces
	 * dead ones. */
	kvz_error("stopping: stuck in %s for %d s; exiting without the rest of the teardown",
		  w->stage ? w->stage : "teardown", w->limit_s);
	if (w->restore_tty)
		tcsetattr(STDIN_FILENO, TCSANOW, &w->tty);
	_exit(1);
}

struct stop_watchdog *stop_watchdog_start(int limit_s, struct console *con)
{
	struct stop_watchdog *w = calloc(1, sizeof(*w));
	if (!w) {
		kvz_warn("stop watchdog: out of memory; teardown unguarded");
		return NULL;
	}
	pthread_mutex_init(&w->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cond, &ca);
	pthread_condattr_destroy(&ca);
	clock_gettime(CLOCK_MONOTONIC, &w->deadline);
	w->deadline.tv_sec += limit_s;
	w->limit_s = limit_s;
	w->restore_tty = console_saved_terminal(con, &w->tty);
	int rc = pthread_create(&w->thread, NULL, watchdog_thread, w);
	if (rc) {
		kvz_warn("stop watchdog: %s; teardown unguarded", strerror(rc));
		pthread_cond_destroy(&w->cond);
		pthread_mutex_destroy(&w->lock);
		free(w);
		return NULL;
	}
	return w;
}

void stop_watchdog_stage(struct stop_watchdog *w, const char *stage)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->lock);
	w->stage = stage;
	pthread_mutex_unlock(&w->lock);
}

void stop_watchdog_done(struct stop_watchdog *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->lock);
	w->done = true;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
	pthread_join(w->thread, NULL);
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
	free(w);
}
