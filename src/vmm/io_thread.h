/* The VMM's I/O thread: an epoll loop that serves device work (virtqueue
 * notifications arriving on ioeventfds, TAP readiness, timers) off the vCPU
 * threads. Contract between the machine and the devices. */
#ifndef KVZ_VMM_IO_THREAD_H
#define KVZ_VMM_IO_THREAD_H

#include <stdbool.h>
#include <stdint.h>

struct io_thread;

/* Called on the I/O thread with the epoll events that fired on fd. */
typedef void (*io_handler_fn)(void *opaque, int fd, uint32_t events);

struct io_thread *io_thread_create(void);
int io_thread_start(struct io_thread *t);      /* spawns the thread */
/* Stops and joins the thread: no handler runs afterwards, but the watch
 * table stays valid, so that devices torn down later can still call
 * io_thread_del(). */
void io_thread_stop(struct io_thread *t);
void io_thread_destroy(struct io_thread *t);   /* stops if running, frees */

/* Returns once the thread is parked between handlers: nothing it serves
 * (queue kicks, TAP receive) runs until io_thread_resume(). Disk queues
 * have threads of their own, drained by the device's pause hook. Idempotent; a no-op before the thread
 * started. Never call it from a handler (it would wait for itself). */
void io_thread_pause(struct io_thread *t);
void io_thread_resume(struct io_thread *t);

/* Watches fd for events (EPOLLIN, EPOLLOUT...). Returns 0 or -errno.
 * Callable from any thread, also from a handler. */
int io_thread_add(struct io_thread *t, int fd, uint32_t events, io_handler_fn fn, void *opaque);
int io_thread_mod(struct io_thread *t, int fd, uint32_t events);
int io_thread_del(struct io_thread *t, int fd);

#endif
