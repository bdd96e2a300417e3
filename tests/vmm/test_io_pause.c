/* The I/O thread's pause: once io_thread_pause() returns no handler runs
 * (events wait in epoll), a handler in progress has finished, resume
 * serves what arrived meanwhile, and a stop ends a paused thread. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "io_thread.h"

struct counter {
	int calls;          /* atomic */
	int in_handler;     /* atomic: 1 while a handler runs */
	int delay_ms;
};

static void handler(void *opaque, int fd, uint32_t events)
{
	(void)events;
	struct counter *c = opaque;
	eventfd_t v;
	__atomic_store_n(&c->in_handler, 1, __ATOMIC_SEQ_CST);
	if (c->delay_ms)
		usleep((useconds_t)c->delay_ms * 1000);
	eventfd_read(fd, &v);
	__atomic_add_fetch(&c->calls, 1, __ATOMIC_SEQ_CST);
	__atomic_store_n(&c->in_handler, 0, __ATOMIC_SEQ_CST);
}

static int wait_calls(struct counter *c, int want)
{
	for (int i = 0; i < 2000; i++) {
		if (__atomic_load_n(&c->calls, __ATOMIC_SEQ_CST) >= want)
			return 0;
		usleep(1000);
	}
	return -1;
}

static void test_paused_thread_serves_nothing(void **state)
{
	(void)state;
	struct io_thread *t = io_thread_create();
	assert_non_null(t);
	struct counter c = {0};
	int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	assert_int_equal(io_thread_add(t, fd, EPOLLIN, handler, &c), 0);
	assert_int_equal(io_thread_start(t), 0);
	eventfd_write(fd, 1);
	assert_int_equal(wait_calls(&c, 1), 0);

	io_thread_pause(t);
	io_thread_pause(t);   /* idempotent */
	eventfd_write(fd, 1);
	usleep(100 * 1000);
	assert_int_equal(__atomic_load_n(&c.calls, __ATOMIC_SEQ_CST), 1);

	io_thread_resume(t);
	assert_int_equal(wait_calls(&c, 2), 0);
	io_thread_destroy(t);
	close(fd);
}

static void test_pause_waits_for_running_handler(void **state)
{
	(void)state;
	struct io_thread *t = io_thread_create();
	struct counter c = {.delay_ms = 200};
	int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	assert_int_equal(io_thread_add(t, fd, EPOLLIN, handler, &c), 0);
	assert_int_equal(io_thread_start(t), 0);
	eventfd_write(fd, 1);
	while (!__atomic_load_n(&c.in_handler, __ATOMIC_SEQ_CST))
		usleep(1000);
	io_thread_pause(t);
	/* The request in flight completed before the pause returned. */
	assert_int_equal(__atomic_load_n(&c.in_handler, __ATOMIC_SEQ_CST), 0);
	assert_int_equal(__atomic_load_n(&c.calls, __ATOMIC_SEQ_CST), 1);
	io_thread_resume(t);
	io_thread_destroy(t);
	close(fd);
}

static void test_stop_while_paused(void **state)
{
	(void)state;
	struct io_thread *t = io_thread_create();
	assert_int_equal(io_thread_start(t), 0);
	io_thread_pause(t);
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	io_thread_stop(t);
	clock_gettime(CLOCK_MONOTONIC, &b);
	assert_true(b.tv_sec - a.tv_sec < 2);
	io_thread_destroy(t);
}

static void test_pause_before_start_is_noop(void **state)
{
	(void)state;
	struct io_thread *t = io_thread_create();
	io_thread_pause(t);
	io_thread_resume(t);
	io_thread_destroy(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_paused_thread_serves_nothing),
		cmocka_unit_test(test_pause_waits_for_running_handler),
		cmocka_unit_test(test_stop_while_paused),
		cmocka_unit_test(test_pause_before_start_is_noop),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
