/* The block layer of kvz-vmm: disk image formats ("drivers": raw, qcow2)
 * behind one interface, used by virtio-blk (which only parses requests and
 * completes them) and by `kvz image`.
 *
 * Model
 * - A driver opens an image into a struct blk_backend (blk_open picks the
 *   driver by name or by probing the first bytes of the file).
 * - Requests (struct blk_req) are byte-addressed, with guest buffers as an
 *   iovec. blk_submit() hands one to the backend; its completion arrives
 *   through req->done(req, result), result 0 or -errno. A backend may call
 *   done before blk_submit returns (synchronous completion) or later, from
 *   blk_aio_poll on the same thread (asynchronous completion).
 * - The asynchronous engine (struct blk_aio, block_aio.c) is not thread
 *   safe: its user serializes calls (virtio-blk: one engine per queue,
 *   used under the queue's lock). It is io_uring where the kernel allows
 *   it, else synchronous preadv/pwritev on the calling thread. A backend
 *   reaches its files through blk_aio_submit, never through threads of its
 *   own.
 * - Thread safety: backends whose ops set BLK_CAP_THREADSAFE are entered by
 *   several engines' threads at once; for the others blk_submit serializes
 *   calls on the backend with backend->lock (held only around ops->submit,
 *   which for a synchronous-metadata backend includes its metadata I/O).
 *   The done callbacks of engine ops such a backend submitted run without
 *   backend->lock: one that touches shared state there takes it itself.
 *   Lock order: the caller's (virtio-blk queue lock) before backend->lock.
 */
#ifndef KVZ_VMM_BLOCK_H
#define KVZ_VMM_BLOCK_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define BLK_SECTOR 512u
/* Largest disk blk_grow makes (qcow2's own limit; 64 PiB). */
#define BLK_MAX_SIZE (1ull << 56)

enum blk_op {
	BLK_OP_READ,
	BLK_OP_WRITE,
	BLK_OP_FLUSH,          /* everything completed before is durable */
	BLK_OP_DISCARD,        /* range may read back as anything afterwards */
	BLK_OP_WRITE_ZEROES,   /* range reads as zeros afterwards */
};

/* req->flags */
#define BLK_REQ_UNMAP 1u      /* WRITE_ZEROES: the backend may free the space */

struct blk_req;
typedef void (*blk_done_fn)(struct blk_req *req, int result);

struct blk_aio;

/* A low-level file operation a backend hands to the engine: READ, WRITE
 * or FLUSH (fdatasync) on fd; other ops complete with -EOPNOTSUPP (a
 * backend does discard/write-zeroes itself: they are rare and need
 * per-file knowledge). done(op, result): 0 once everything moved (the
 * engine retries short transfers; a read past end of file reads zeros),
 * or -errno. A FLUSH starts only after every op submitted before it on
 * this engine completed (so a flush covers all writes accepted before it). */
struct blk_aio_op;
typedef void (*blk_aio_done_fn)(struct blk_aio_op *op, int result);
struct blk_aio_op {
	enum blk_op op;
	int fd;
	uint64_t offset, len;
	struct iovec *iov;          /* READ/WRITE; the engine advances it */
	unsigned niov;
	blk_aio_done_fn done;
	void *opaque;
	/* READ/WRITE: run on the calling thread, done called before
	 * blk_aio_submit returns, as on the synchronous engine. For what
	 * io_uring would only hand to one of its kernel workers anyway (a
	 * buffered write to a regular file where the file system has no
	 * non-blocking buffered writes: tmpfs, ext4), the hand-off and the
	 * wake-up back are all io_uring adds. */
	bool now;
	/* Engine's while in flight. */
	uint64_t done_bytes;
	struct blk_aio_op *next;
};

/* One request. Owned by the caller until done runs; the backend must not
 * touch it afterwards. iov stays valid until done. */
struct blk_req {
	enum blk_op op;
	unsigned flags;
	uint64_t offset;            /* bytes; READ/WRITE/DISCARD/WRITE_ZEROES */
	uint64_t len;               /* bytes; READ/WRITE: sum of iov lengths */
	struct iovec *iov;          /* READ/WRITE only; the backend may modify
				     * the array (not the data it points to
				     * beyond the transfer) while in flight */
	unsigned niov;
	struct blk_aio *aio;        /* engine of the submitting thread */
	blk_done_fn done;
	void *opaque;               /* caller's */
	/* Backend's while in flight: a backend that maps the request onto one
	 * file op uses sub (raw does); others may keep their state in priv. */
	struct blk_aio_op sub;
	void *backend_priv;
	/* blk_submit's while a tracked write is in flight (blk_dirty.h): the
	 * caller's done, called after the bitmap is marked. */
	blk_done_fn caller_done;
	struct blk_backend *tracked;
};

struct blk_backend;

/* Backend capabilities (ops->caps). */
#define BLK_CAP_THREADSAFE 1u   /* submit may run on several threads at once */
#define BLK_CAP_DISCARD    2u   /* discard/write-zeroes are meaningful */

struct blk_driver_ops {
	unsigned caps;
	/* Starts req. Bounds are already checked by blk_submit (offset+len <=
	 * size, write on a writable image). Must call req->done exactly once,
	 * now or later from blk_aio_poll on req->aio. Returns nothing:
	 * errors go through done. */
	void (*submit)(struct blk_backend *b, struct blk_req *req);
	/* No request is in flight (the VM is pausing): writes out what the
	 * backend keeps in memory (qcow2: cached L2 tables and refcounts), so
	 * that the image file alone, as a copy taken now sees it, is whole and
	 * holds every completed write. Not a flush: durability is FLUSH's.
	 * NULL: nothing kept (raw). Returns 0 or -errno. */
	int (*quiesce)(struct blk_backend *b);
	/* Grows the image to new_size bytes (> b->size, a multiple of
	 * BLK_SECTOR, at most BLK_MAX_SIZE; blk_grow checked), durably: after
	 * it returns 0 a crash leaves the image at the new size. Called with
	 * no request in flight and backend->lock held. One line in err on
	 * failure, the image as it was. NULL: the format cannot grow. */
	int (*grow)(struct blk_backend *b, uint64_t new_size, char *err, size_t errlen);
	/* Releases everything; no request is in flight. */
	void (*close)(struct blk_backend *b);
};

struct blk_driver {
	const char *name;                 /* "raw", "qcow2" */
	/* Whether the first bytes of a file (len may be < 512 for a tiny file)
	 * look like this format. NULL: never probed (raw is the fallback). */
	bool (*probe)(const uint8_t *head, size_t len);
	/* Opens path into *out (allocated by the driver, with b->ops, b->size
	 * and b->readonly filled; blk_open does the rest). One line in err on
	 * failure, nothing left open. */
	int (*open)(const char *path, bool readonly, struct blk_backend **out,
		    char *err, size_t errlen);
};

struct blk_backend {
	const struct blk_driver_ops *ops;
	const struct blk_driver *driver;
	uint64_t size;              /* bytes, the guest-visible capacity */
	bool readonly;
	pthread_mutex_t lock;       /* see "Thread safety" above; blk_open inits it */
	void *priv;                 /* driver's */
	/* Written blocks while a migration copies the disk (blk_dirty.h);
	 * NULL until the first one. Atomic pointer, set once. */
	struct blk_dirty *dirty;
	/* The file flock()ed against a second writer (exclusive; shared for
	 * readonly): the driver sets it at open, blk_lock takes and drops the
	 * lock, which only the thread that owns the machine's state (open,
	 * save, load, resume) touches. */
	int lock_fd;
	bool locked;
};

struct blk_open_opts {
	const char *path;
	/* "raw", "qcow2", or NULL: probe. Never probe an image a guest has
	 * written as raw: a guest could write a qcow2 header naming a host
	 * file as its backing file. kvz-vmm's --disk defaults to raw. */
	const char *format;
	bool readonly;
	/* Open without the lock (blk_lock later): an incoming migration's
	 * target, while the source still runs on the same shared file. */
	bool lock_later;
};

/* Opens an image. Returns 0, or -1 with one line in err. */
int blk_open(const struct blk_open_opts *o, struct blk_backend **out, char *err, size_t errlen);
void blk_close(struct blk_backend *b);
/* Takes (on) or drops the image's lock, as QEMU activates and inactivates
 * images around a migration: the source drops it once its last write is
 * saved, the target takes it when it loads the state. Taking a lock held
 * is a no-op; one held by another process fails with "in use by another
 * process" in err. Returns 0 or -1. */
int blk_lock(struct blk_backend *b, bool on, const char *path, char *err, size_t errlen);
/* Makes the image file whole for other readers (ops->quiesce) once the
 * caller has drained its requests: virtio-blk's pause, before a snapshot
 * or a copy of the disk. Returns 0, or -errno (the driver logged why). */
int blk_quiesce(struct blk_backend *b);
/* QMP block_resize, `kvz set --disk`: grows the image to new_size bytes
 * and b->size with it. The caller has drained its requests (virtio-blk
 * holds its queues). Refused with one line in err: a read-only image, a
 * size below the current one (shrinking cuts guest data), not a multiple
 * of BLK_SECTOR, above BLK_MAX_SIZE. The same size is a no-op. Returns 0
 * or -errno. */
int blk_grow(struct blk_backend *b, uint64_t new_size, char *err, size_t errlen);
/* Checks bounds and permission (a failing request completes with -EINVAL,
 * -EROFS... through done), then hands req to the backend. */
void blk_submit(struct blk_backend *b, struct blk_req *req);

/* ---- The asynchronous engine (block_aio.c) ---- */

enum blk_aio_kind {
	BLK_AIO_IO_URING,       /* io_uring: many requests in flight */
	BLK_AIO_SYNC,           /* fallback: preadv/pwritev/fdatasync inline */
};

/* queue_depth: most ops with the kernel at once (more wait in the engine,
 * in order). force_sync chooses the fallback (tests;
 * also chosen when io_uring_setup fails: ENOSYS, EPERM from seccomp or
 * kernel.io_uring_disabled). Returns NULL with err set. */
struct blk_aio *blk_aio_create(unsigned queue_depth, bool force_sync, char *err, size_t errlen);
void blk_aio_destroy(struct blk_aio *a);   /* nothing may be in flight */
enum blk_aio_kind blk_aio_kind(const struct blk_aio *a);
/* Queues op; with the io_uring engine nothing is sent to the kernel until
 * blk_aio_flush_submissions (so one io_uring_enter carries a batch). The
 * sync engine runs op now and calls done before returning. */
void blk_aio_submit(struct blk_aio *a, struct blk_aio_op *op);
/* Sends the queued ops to the kernel. */
void blk_aio_flush_submissions(struct blk_aio *a);
/* fd that becomes readable when completions are waiting (-1: sync engine,
 * everything completes inline). */
int blk_aio_event_fd(const struct blk_aio *a);
/* Runs done for every completed op; with wait, blocks until at least one
 * completes unless nothing is in flight. Returns how many completed. */
unsigned blk_aio_poll(struct blk_aio *a, bool wait);
unsigned blk_aio_in_flight(const struct blk_aio *a);
/* Attack tests: submits one SQE of the raw io_uring opcode (fd -1) on an
 * idle io_uring engine and returns its result: -EACCES for anything but
 * the engine's own READV/WRITEV/FSYNC (the ring is restricted). */
int blk_aio_try_opcode(struct blk_aio *a, uint8_t opcode);

/* The registered drivers: raw.c; qcow2 (qcow2*.c) adds
 * `extern const struct blk_driver blk_driver_qcow2;` here and one line in
 * block.c's driver table. */
extern const struct blk_driver blk_driver_raw;
extern const struct blk_driver blk_driver_qcow2;

#endif
