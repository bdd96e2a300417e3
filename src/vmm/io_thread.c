#include "io_thread.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "log.h"

#define IO_MAX_WATCHES 256

struct io_watch {
	int fd;                /* -1 when free */
	io_handler_fn fn;
	void *opaque;
};

struct io_thread {
	int epfd;
	int stop_fd;           /* eventfd: wakes the loop to exit */
	int pause_fd;          /* eventfd: wakes the loop to park */
	pthread_t thread;
	bool started;
	/* Guards the pause handshake below; cond signals each change. Separate
	 * from `lock` so that a parked loop never holds what registrations
	 * (device resets while paused) need. */
	pthread_mutex_t pause_lock;
	pthread_cond_t pause_cond;
	bool pause_req;
	bool parked;
	bool stopping;
	/* Guards watches[]: registrations come from any thread, dispatch looks
	 * the handler up by fd at the time the event is served so that a watch
	 * deleted by an earlier handler of the same batch is never called. */
	pthread_mutex_t lock;
	struct io_watch watches[IO_MAX_WATCHES];
};

struct io_thread *io_thread_create(void)
{
	struct io_thread *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	pthread_mutex_init(&t->lock, NULL);
	pthread_mutex_init(&t->pause_lock, NULL);
	pthread_cond_init(&t->pause_cond, NULL);
	for (int i = 0; i < IO_MAX_WATCHES; i++)
		t->watches[i].fd = -1;
	t->epfd = epoll_create1(EPOLL_CLOEXEC);
	t->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	t->pause_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (t->epfd < 0 || t->stop_fd < 0 || t->pause_fd < 0)
		goto fail;
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = t->stop_fd};
	if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, t->stop_fd, &ev) < 0)
		goto fail;
	ev.data.fd = t->pause_fd;
	if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, t->pause_fd, &ev) < 0)
		goto fail;
	return t;
fail:
	if (t->epfd >= 0)
		close(t->epfd);
	if (t->stop_fd >= 0)
		close(t->stop_fd);
	if (t->pause_fd >= 0)
		close(t->pause_fd);
	pthread_cond_destroy(&t->pause_cond);
	pthread_mutex_destroy(&t->pause_lock);
	pthread_mutex_destroy(&t->lock);
	free(t);
	return NULL;
}

static bool lookup(struct io_thread *t, int fd, struct io_watch *out)
{
	bool found = false;
	pthread_mutex_lock(&t->lock);
	for (int i = 0; i < IO_MAX_WATCHES; i++)
		if (t->watches[i].fd == fd) {
			*out = t->watches[i];
			found = true;
			break;
		}
	pthread_mutex_unlock(&t->lock);
	return found;
}

/* Parks the loop while a pause is requested: every handler of the batch
 * before this one has returned, so no device work is in flight. Events
 * that arrive meanwhile stay in epoll (level-triggered) for the resume. */
static void park(struct io_thread *t)
{
	eventfd_t v;
	eventfd_read(t->pause_fd, &v);
	pthread_mutex_lock(&t->pause_lock);
	while (t->pause_req && !t->stopping) {
		if (!t->parked) {
			t->parked = true;
			pthread_cond_broadcast(&t->pause_cond);
		}
		pthread_cond_wait(&t->pause_cond, &t->pause_lock);
	}
	t->parked = false;
	pthread_mutex_unlock(&t->pause_lock);
}

static void *io_loop(void *arg)
{
	struct io_thread *t = arg;
	pthread_setname_np(pthread_self(), "io");   /* for top -H, gdb, stack dumps */
	for (;;) {
		struct epoll_event evs[32];
		int n = epoll_wait(t->epfd, evs, 32, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			kvz_error("io thread: epoll_wait: %s", strerror(errno));
			return NULL;
		}
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			if (fd == t->stop_fd)
				return NULL;
			if (fd == t->pause_fd) {
				park(t);
				continue;
			}
			struct io_watch w;
			if (lookup(t, fd, &w))
				w.fn(w.opaque, fd, evs[i].events);
		}
	}
}

int io_thread_start(struct io_thread *t)
{
	int rc = pthread_create(&t->thread, NULL, io_loop, t);
	if (rc)
		return -rc;
	t->started = true;
	return 0;
}

void io_thread_stop(struct io_thread *t)
{
	if (!t || !t->started)
		return;
	uint64_t one = 1;
	pthread_mutex_lock(&t->pause_lock);
	t->stopping = true;    /* a parked loop must see the stop too */
	pthread_cond_broadcast(&t->pause_cond);
	pthread_mutex_unlock(&t->pause_lock);
	if (write(t->stop_fd, &one, sizeof(one)) != sizeof(one))
		kvz_warn("io thread: cannot wake: %s", strerror(errno));
	pthread_join(t->thread, NULL);
	t->started = false;
}

void io_thread_pause(struct io_thread *t)
{
	if (!t || !t->started)
		return;
	pthread_mutex_lock(&t->pause_lock);
	t->pause_req = true;
	if (eventfd_write(t->pause_fd, 1) < 0)
		kvz_warn("io thread: cannot wake: %s", strerror(errno));
	while (!t->parked && !t->stopping)
		pthread_cond_wait(&t->pause_cond, &t->pause_lock);
	pthread_mutex_unlock(&t->pause_lock);
}

void io_thread_resume(struct io_thread *t)
{
	if (!t)
		return;
	pthread_mutex_lock(&t->pause_lock);
	t->pause_req = false;
	pthread_cond_broadcast(&t->pause_cond);
	pthread_mutex_unlock(&t->pause_lock);
}

void io_thread_destroy(struct io_thread *t)
{
	if (!t)
		return;
	io_thread_stop(t);
	close(t->stop_fd);
	close(t->pause_fd);
	close(t->epfd);
	pthread_cond_destroy(&t->pause_cond);
	pthread_mutex_destroy(&t->pause_lock);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

int io_thread_add(struct io_thread *t, int fd, uint32_t events, io_handler_fn fn, void *opaque)
{
	pthread_mutex_lock(&t->lock);
	struct io_watch *slot = NULL;
	for (int i = 0; i < IO_MAX_WATCHES; i++) {
		if (t->watches[i].fd == fd) {
			pthread_mutex_unlock(&t->lock);
			return -EEXIST;
		}
		if (!slot && t->watches[i].fd < 0)
			slot = &t->watches[i];
	}
	if (!slot) {
		pthread_mutex_unlock(&t->lock);
		return -ENOSPC;
	}
	struct epoll_event ev = {.events = events, .data.fd = fd};
	if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int e = errno;
		pthread_mutex_unlock(&t->lock);
		return -e;
	}
	*slot = (struct io_watch){.fd = fd, .fn = fn, .opaque = opaque};
	pthread_mutex_unlock(&t->lock);
	return 0;
}

int io_thread_mod(struct io_thread *t, int fd, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.fd = fd};
	return epoll_ctl(t->epfd, EPOLL_CTL_MOD, fd, &ev) < 0 ? -errno : 0;
}

int io_thread_del(struct io_thread *t, int fd)
{
	pthread_mutex_lock(&t->lock);
	int rc = -ENOENT;
	for (int i = 0; i < IO_MAX_WATCHES; i++)
		if (t->watches[i].fd == fd) {
			t->watches[i].fd = -1;
			rc = epoll_ctl(t->epfd, EPOLL_CTL_DEL, fd, NULL) < 0 ? -errno : 0;
			break;
		}
	pthread_mutex_unlock(&t->lock);
	return rc;
}
