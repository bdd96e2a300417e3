#include "qmp_watch.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "guest_ops.h"
#include "log.h"
#include "qmp_client.h"
#include "store.h"
#include "supervisor.h"

#define MAX_WATCHED 256
#define POLL_MS 250

struct watched {
	char name[72];
	pid_t pid;
	struct qmp_client *c;   /* NULL once the supervisor closed it */
	bool shutdown_seen, clean;
	char detail[160];
	bool seen;              /* still running at the last sync */
};

/* The watcher's table: written by its thread, read by the monitor and API
 * threads through qmp_watch_shutdown(). One per process, like the thread. */
static struct {
	pthread_mutex_t lock;
	struct watched w[MAX_WATCHED];
	int n;
	pthread_t thread;
	bool stop, started;
} W = {.lock = PTHREAD_MUTEX_INITIALIZER};

bool qmp_watch_shutdown(const char *name, pid_t pid, bool *clean, char *detail, size_t len)
{
	bool found = false;
	pthread_mutex_lock(&W.lock);
	for (int i = 0; i < W.n && !found; i++) {
		struct watched *w = &W.w[i];
		if (strcmp(w->name, name) || w->pid != pid || !w->shutdown_seen)
			continue;
		found = true;
		*clean = w->clean;
		snprintf(detail, len, "%s", w->detail);
	}
	pthread_mutex_unlock(&W.lock);
	return found;
}

static void record_shutdown(struct watched *w, json_t *data)
{
	json_t *code = json_object_get(data, "exit-code");
	const char *reason = json_string_value(json_object_get(data, "reason"));
	w->shutdown_seen = true;
	if (json_is_integer(code)) {
		w->clean = json_integer_value(code) == 0;
		snprintf(w->detail, sizeof(w->detail), "container init exited with code %lld",
			 (long long)json_integer_value(code));
	} else {
		w->clean = reason && (!strcmp(reason, "guest-shutdown") ||
				      !strcmp(reason, "guest-reset") || !strcmp(reason, "host-qmp-quit"));
		snprintf(w->detail, sizeof(w->detail), "guest shut down (%s)",
			 reason ? reason : "no reason given");
	}
}

/* Adds running guests, drops those that are no longer. Connecting happens
 * outside the lock. */
static void sync_guests(struct kvzd *d)
{
	json_t *list = store_guest_list(d->store);
	pthread_mutex_lock(&W.lock);
	for (int i = 0; i < W.n; i++)
		W.w[i].seen = false;
	pthread_mutex_unlock(&W.lock);
	size_t i;
	json_t *g;
	json_array_foreach(list, i, g) {
		const char *name = json_string_value(json_object_get(g, "name"));
		const char *qmp = json_string_value(json_object_get(g, "qmp"));
		pid_t pid = (pid_t)json_integer_value(json_object_get(g, "pid"));
		if (strcmp(json_string_value(json_object_get(g, "state")), "running") || !pid)
			continue;
		bool have = false;
		pthread_mutex_lock(&W.lock);
		for (int k = 0; k < W.n; k++)
			if (!strcmp(W.w[k].name, name) && W.w[k].pid == pid)
				have = W.w[k].seen = true;
		pthread_mutex_unlock(&W.lock);
		if (have || W.n == MAX_WATCHED)
			continue;
		char err[256];
		struct qmp_client *c = qmp_client_connect(qmp, 1000, err, sizeof(err));
		if (!c) {
			kvz_debug("watch %s: %s", name, err);
			continue;
		}
		pthread_mutex_lock(&W.lock);
		struct watched *w = &W.w[W.n++];
		*w = (struct watched){.pid = pid, .c = c, .seen = true};
		snprintf(w->name, sizeof(w->name), "%s", name);
		pthread_mutex_unlock(&W.lock);
	}
	json_decref(list);
	pthread_mutex_lock(&W.lock);
	for (int k = 0; k < W.n;) {
		if (W.w[k].seen) {
			k++;
			continue;
		}
		qmp_client_close(W.w[k].c);
		W.w[k] = W.w[--W.n];
	}
	pthread_mutex_unlock(&W.lock);
}

/* Reads what arrived on w; true when the supervisor is ending (SHUTDOWN or
 * closed socket). Called with W.lock held. */
static bool drain(struct watched *w)
{
	char b;
	if (recv(qmp_client_fd(w->c), &b, 1, MSG_PEEK | MSG_DONTWAIT) == 0) {
		qmp_client_close(w->c);
		w->c = NULL;
		return true;
	}
	bool ending = false;
	json_t *ev;
	/* A short wait: the socket is readable, so this only collects what
	 * has arrived (a partial message stays buffered for the next round). */
	while ((ev = qmp_client_next_event(w->c, 5))) {
		const char *name = json_string_value(json_object_get(ev, "event"));
		if (name && !strcmp(name, "SHUTDOWN")) {
			record_shutdown(w, json_object_get(ev, "data"));
			ending = true;
		}
		json_decref(ev);
	}
	return ending;
}

/* A supervisor that is ending: give it a moment to exit, then let
 * guest_check_alive() record how the guest ended. */
static void settle(struct kvzd *d, const char *name, pid_t pid)
{
	for (int i = 0; i < 40 && sup_check(pid, 0, NULL) == SUP_ALIVE; i++) {
		struct timespec ts = {.tv_nsec = 50 * 1000000};
		nanosleep(&ts, NULL);
	}
	guest_check_alive(d, name);
}

static void watch_round(struct kvzd *d)
{
	struct pollfd pfd[MAX_WATCHED];
	char names[MAX_WATCHED][72];
	pid_t pids[MAX_WATCHED];
	int n = 0;
	pthread_mutex_lock(&W.lock);
	for (int i = 0; i < W.n; i++)
		if (W.w[i].c) {
			pfd[n] = (struct pollfd){.fd = qmp_client_fd(W.w[i].c), .events = POLLIN};
			snprintf(names[n], sizeof(names[n]), "%s", W.w[i].name);
			pids[n++] = W.w[i].pid;
		}
	pthread_mutex_unlock(&W.lock);
	int r = poll(pfd, (nfds_t)n, POLL_MS);
	if (r < 0 && errno != EINTR)
		kvz_warn("watch: poll: %s", strerror(errno));
	if (r <= 0) {
		if (!n)
			usleep(POLL_MS * 1000);
		return;
	}
	for (int i = 0; i < n; i++) {
		if (!pfd[i].revents)
			continue;
		bool ending = false;
		pthread_mutex_lock(&W.lock);
		for (int k = 0; k < W.n; k++)
			if (!strcmp(W.w[k].name, names[i]) && W.w[k].pid == pids[i] && W.w[k].c)
				ending = drain(&W.w[k]);
		pthread_mutex_unlock(&W.lock);
		if (ending)
			settle(d, names[i], pids[i]);
	}
}

static void *watch_main(void *arg)
{
	struct kvzd *d = arg;
	for (;;) {
		pthread_mutex_lock(&W.lock);
		bool stop = W.stop;
		pthread_mutex_unlock(&W.lock);
		if (stop)
			break;
		sync_guests(d);
		watch_round(d);
	}
	pthread_mutex_lock(&W.lock);
	for (int i = 0; i < W.n; i++)
		qmp_client_close(W.w[i].c);
	W.n = 0;
	pthread_mutex_unlock(&W.lock);
	return NULL;
}

int qmp_watch_start(struct kvzd *d, char *err, size_t errlen)
{
	int rc = pthread_create(&W.thread, NULL, watch_main, d);
	if (rc) {
		snprintf(err, errlen, "cannot start QMP watcher thread: %s", strerror(rc));
		return -1;
	}
	W.started = true;
	return 0;
}

void qmp_watch_stop(void)
{
	if (!W.started)
		return;
	pthread_mutex_lock(&W.lock);
	W.stop = true;
	pthread_mutex_unlock(&W.lock);
	pthread_join(W.thread, NULL);
	W.started = false;
}
