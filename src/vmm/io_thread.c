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
	pthread_t thread;
	bool started;
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
	for (int i = 0; i < IO_MAX_WATCHES; i++)
		t->watches[i].fd = -1;
	t->epfd = epoll_create1(EPOLL_CLOEXEC);
	t->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (t->epfd < 0 || t->stop_fd < 0)
		goto fail;
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = t->stop_fd};
	if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, t->stop_fd, &ev) < 0)
		goto fail;
	return t;
fail:
	if (t->epfd >= 0)
		close(t->epfd);
	if (t->stop_fd >= 0)
		close(t->stop_fd);
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
	if (write(t->stop_fd, &one, sizeof(one)) != sizeof(one))
		kvz_warn("io thread: cannot wake: %s", strerror(errno));
	pthread_join(t->thread, NULL);
	t->started = false;
}

void io_thread_destroy(struct io_thread *t)
{
	if (!t)
		return;
	io_thread_stop(t);
	close(t->stop_fd);
	close(t->epfd);
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
