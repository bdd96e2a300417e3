/* The block layer's I/O engine (block.h): io_uring with up to `depth` file
 * operations with the kernel at once, or, where io_uring cannot be set up
 * (kernel without it, kernel.io_uring_disabled, a seccomp filter that
 * refuses io_uring_setup), synchronous preadv/pwritev/fdatasync on the
 * calling thread. Ops beyond the depth wait in a FIFO backlog; a FLUSH
 * waits there until everything before it completed. */
#include "block.h"

#include <errno.h>
#include <limits.h>
#include <liburing.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"

struct blk_aio {
	enum blk_aio_kind kind;
	unsigned depth;
	struct io_uring ring;
	int efd;                    /* signalled by the kernel on each completion */
	unsigned with_kernel;       /* ops holding an SQE (prepared or submitted) */
	unsigned prepared;          /* SQEs not yet handed to io_uring_enter */
	struct blk_aio_op *head, *tail;   /* backlog, in submission order */
	unsigned backlog;
};

/* ---- shared by both engines ---- */

/* Drops n transferred bytes from the front of op's iovec. */
static void advance(struct blk_aio_op *op, uint64_t n)
{
	op->done_bytes += n;
	while (op->niov && n >= op->iov->iov_len) {
		n -= op->iov->iov_len;
		op->iov++;
		op->niov--;
	}
	if (op->niov && n) {
		op->iov->iov_base = (uint8_t *)op->iov->iov_base + n;
		op->iov->iov_len -= n;
	}
}

static void zero_rest(struct blk_aio_op *op)
{
	for (unsigned i = 0; i < op->niov; i++)
		memset(op->iov[i].iov_base, 0, op->iov[i].iov_len);
	op->done_bytes = op->len;
	op->niov = 0;
}

/* A transfer returned r (bytes or -errno). Returns 1 when op needs another
 * round, else 0 with *result set. */
static int account(struct blk_aio_op *op, int64_t r, int *result)
{
	if (r == -EINTR || r == -EAGAIN)
		return 1;
	if (r < 0) {
		*result = (int)r;
		return 0;
	}
	if (op->op == BLK_OP_FLUSH) {
		*result = 0;
		return 0;
	}
	if (r == 0) {
		if (op->op == BLK_OP_WRITE) {
			*result = -EIO;
			return 0;
		}
		zero_rest(op);   /* end of file: the image is shorter than its size */
	} else {
		advance(op, (uint64_t)r);
	}
	if (op->done_bytes < op->len && op->niov)
		return 1;
	*result = 0;
	return 0;
}

static unsigned iov_batch(unsigned n)
{
	return n > IOV_MAX ? IOV_MAX : n;
}

/* ---- synchronous engine ---- */

static void run_sync(struct blk_aio_op *op)
{
	int result = 0;

	for (;;) {
		int64_t r;
		switch (op->op) {
		case BLK_OP_READ:
			r = preadv(op->fd, op->iov, (int)iov_batch(op->niov), (off_t)(op->offset + op->done_bytes));
			break;
		case BLK_OP_WRITE:
			r = pwritev(op->fd, op->iov, (int)iov_batch(op->niov), (off_t)(op->offset + op->done_bytes));
			break;
		case BLK_OP_FLUSH:
			r = fdatasync(op->fd);
			break;
		default:
			r = -EOPNOTSUPP;
			errno = EOPNOTSUPP;
			break;
		}
		if (r < 0)
			r = -errno;
		if (!account(op, r, &result))
			break;
	}
	op->done(op, result);
}

/* ---- io_uring engine ---- */

static void backlog_push(struct blk_aio *a, struct blk_aio_op *op, bool front)
{
	op->next = NULL;
	if (!a->head) {
		a->head = a->tail = op;
	} else if (front) {
		op->next = a->head;
		a->head = op;
	} else {
		a->tail->next = op;
		a->tail = op;
	}
	a->backlog++;
}

static void prep(struct io_uring_sqe *sqe, struct blk_aio_op *op)
{
	off_t off = (off_t)(op->offset + op->done_bytes);

	switch (op->op) {
	case BLK_OP_READ:
		io_uring_prep_readv(sqe, op->fd, op->iov, iov_batch(op->niov), off);
		break;
	case BLK_OP_WRITE:
		io_uring_prep_writev(sqe, op->fd, op->iov, iov_batch(op->niov), off);
		break;
	default:
		io_uring_prep_fsync(sqe, op->fd, IORING_FSYNC_DATASYNC);
		break;
	}
	io_uring_sqe_set_data(sqe, op);
}

/* Moves backlog ops into free SQEs, in order. */
static void pump(struct blk_aio *a)
{
	while (a->head && a->with_kernel < a->depth) {
		struct blk_aio_op *op = a->head;
		if (op->op == BLK_OP_FLUSH && a->with_kernel)
			return;   /* a flush covers what was accepted before it */
		struct io_uring_sqe *sqe = io_uring_get_sqe(&a->ring);
		if (!sqe)
			return;
		a->head = op->next;
		if (!a->head)
			a->tail = NULL;
		a->backlog--;
		prep(sqe, op);
		a->with_kernel++;
		a->prepared++;
	}
}

void blk_aio_submit(struct blk_aio *a, struct blk_aio_op *op)
{
	op->done_bytes = 0;
	if (op->op != BLK_OP_READ && op->op != BLK_OP_WRITE && op->op != BLK_OP_FLUSH) {
		op->done(op, -EOPNOTSUPP);
		return;
	}
	if ((op->op == BLK_OP_READ || op->op == BLK_OP_WRITE) && (op->len == 0 || op->niov == 0)) {
		op->done(op, 0);
		return;
	}
	if (a->kind == BLK_AIO_SYNC || op->now) {
		run_sync(op);
		return;
	}
	backlog_push(a, op, false);
	pump(a);
}

/* Returns how many SQEs went to the kernel. */
static unsigned submit_prepared(struct blk_aio *a)
{
	unsigned sent = 0;

	pump(a);
	while (a->prepared) {
		int r = io_uring_submit(&a->ring);
		if (r == -EINTR || r == -EAGAIN)
			continue;
		if (r < 0) {
			/* The SQEs stay queued and go with the next call. */
			kvz_warn("block: io_uring_enter: %s", strerror(-r));
			break;
		}
		if (r == 0)
			break;
		a->prepared -= (unsigned)r < a->prepared ? (unsigned)r : a->prepared;
		sent += (unsigned)r;
	}
	return sent;
}

void blk_aio_flush_submissions(struct blk_aio *a)
{
	if (a->kind == BLK_AIO_IO_URING)
		submit_prepared(a);
}

static unsigned reap(struct blk_aio *a)
{
	struct io_uring_cqe *cqe;
	unsigned n = 0;

	while (io_uring_peek_cqe(&a->ring, &cqe) == 0) {
		struct blk_aio_op *op = io_uring_cqe_get_data(cqe);
		int64_t res = cqe->res;
		io_uring_cqe_seen(&a->ring, cqe);
		a->with_kernel--;
		int result;
		if (account(op, res, &result)) {
			backlog_push(a, op, true);   /* the rest, ahead of later ops */
			continue;
		}
		op->done(op, result);
		n++;
	}
	return n;
}

unsigned blk_aio_poll(struct blk_aio *a, bool wait)
{
	if (a->kind == BLK_AIO_SYNC)
		return 0;
	eventfd_t v;
	(void)eventfd_read(a->efd, &v);   /* clears the wake-up; EAGAIN is fine */
	unsigned n = 0;
	for (;;) {
		n += reap(a);
		/* Continued transfers and ops freed slots let in: page-cache
		 * hits complete inside io_uring_enter, reaped in this call
		 * rather than after another wake-up. */
		if (submit_prepared(a))
			continue;
		if (!wait || n || !a->with_kernel)
			return n;
		struct io_uring_cqe *cqe;
		int r = io_uring_wait_cqe(&a->ring, &cqe);
		if (r < 0 && r != -EINTR && r != -EAGAIN) {
			kvz_warn("block: io_uring wait: %s", strerror(-r));
			return n;
		}
	}
}

unsigned blk_aio_in_flight(const struct blk_aio *a)
{
	return a->with_kernel + a->backlog;
}

int blk_aio_event_fd(const struct blk_aio *a)
{
	return a->kind == BLK_AIO_SYNC ? -1 : a->efd;
}

enum blk_aio_kind blk_aio_kind(const struct blk_aio *a)
{
	return a->kind;
}

/* io_uring performs its operations in the kernel, past the seccomp filter:
 * a ring that could open files or sockets would undo the filter. The ring
 * starts disabled, is restricted to the three operations the engine
 * issues, with no SQE flags, and only then enabled. */
static int restrict_ring(struct io_uring *ring)
{
	struct io_uring_restriction res[] = {
		{ .opcode = IORING_RESTRICTION_SQE_OP, .sqe_op = IORING_OP_READV },
		{ .opcode = IORING_RESTRICTION_SQE_OP, .sqe_op = IORING_OP_WRITEV },
		{ .opcode = IORING_RESTRICTION_SQE_OP, .sqe_op = IORING_OP_FSYNC },
		{ .opcode = IORING_RESTRICTION_SQE_FLAGS_ALLOWED, .sqe_flags = 0 },
	};
	/* Debian's liburing 2.3 declares io_uring_register_restrictions and
	 * io_uring_enable_rings but does not export them: the system call. */
	if (syscall(__NR_io_uring_register, ring->ring_fd, IORING_REGISTER_RESTRICTIONS, res,
		    sizeof(res) / sizeof(res[0])) < 0)
		return -errno;
	if (syscall(__NR_io_uring_register, ring->ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0) < 0)
		return -errno;
	return 0;
}

static int setup_uring(struct blk_aio *a, char *err, size_t errlen)
{
	int r = io_uring_queue_init(a->depth, &a->ring, IORING_SETUP_R_DISABLED);
	if (r < 0) {
		snprintf(err, errlen, "io_uring_setup: %s", strerror(-r));
		return r;
	}
	const char *what = "eventfd";
	a->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (a->efd < 0) {
		r = -errno;
		goto fail;
	}
	what = "io_uring_register eventfd";
	r = io_uring_register_eventfd(&a->ring, a->efd);
	if (r < 0)
		goto fail;
	what = "io_uring restrictions";
	r = restrict_ring(&a->ring);
	if (r < 0)
		goto fail;
	return 0;
fail:
	snprintf(err, errlen, "%s: %s", what, strerror(-r));
	if (a->efd >= 0)
		close(a->efd);
	a->efd = -1;
	io_uring_queue_exit(&a->ring);
	return r;
}

int blk_aio_try_opcode(struct blk_aio *a, uint8_t opcode)
{
	if (a->kind != BLK_AIO_IO_URING || a->with_kernel)
		return -EINVAL;
	struct io_uring_sqe *sqe = io_uring_get_sqe(&a->ring);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_nop(sqe);
	sqe->opcode = opcode;
	sqe->fd = -1;
	io_uring_sqe_set_data(sqe, NULL);
	int r = io_uring_submit(&a->ring);
	if (r < 0)
		return r;
	struct io_uring_cqe *cqe;
	r = io_uring_wait_cqe(&a->ring, &cqe);
	if (r < 0)
		return r;
	r = cqe->res;
	io_uring_cqe_seen(&a->ring, cqe);
	eventfd_t v;
	(void)eventfd_read(a->efd, &v);
	return r;
}

struct blk_aio *blk_aio_create(unsigned queue_depth, bool force_sync, char *err, size_t errlen)
{
	struct blk_aio *a = calloc(1, sizeof(*a));

	if (!a) {
		snprintf(err, errlen, "block engine: out of memory");
		return NULL;
	}
	a->depth = queue_depth ? queue_depth : 1;
	a->efd = -1;
	a->kind = BLK_AIO_SYNC;
	if (force_sync)
		return a;
	char why[128];
	int r = setup_uring(a, why, sizeof(why));
	if (r == 0) {
		a->kind = BLK_AIO_IO_URING;
		return a;
	}
	/* Disabled or filtered: the synchronous engine still serves the disk.
	 * Said once per process (every queue of every disk would repeat it). */
	static _Atomic bool warned;
	if (r == -ENOSYS || r == -EPERM || r == -EACCES || r == -EINVAL) {
		if (!warned) {
			warned = true;
			kvz_warn("block: %s; serving disks synchronously (aio=sync)", why);
		}
		return a;
	}
	snprintf(err, errlen, "block engine: %s", why);
	free(a);
	return NULL;
}

void blk_aio_destroy(struct blk_aio *a)
{
	if (!a)
		return;
	if (a->kind == BLK_AIO_IO_URING) {
		io_uring_queue_exit(&a->ring);
		close(a->efd);
	}
	free(a);
}
