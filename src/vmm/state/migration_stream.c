#include "migration_stream.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "write_all.h"

/* Small enough that cancel, the bandwidth limit and progress act often. */
#define FLUSH_AT (128u << 10)

/* ---- writer ---- */

static int flush(struct mig_writer *w, char *err, size_t errlen)
{
	if (w->buf.oom) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	int rc = kvz_write_all(w->fd, w->buf.data, w->buf.len) ? -errno : 0;
	if (rc < 0) {
		snprintf(err, errlen, "stream write: %s", strerror(-rc));
		return -1;
	}
	w->counts.bytes += w->buf.len;
	w->buf.len = 0;
	if (w->tick && w->tick(w->opaque, &w->counts)) {
		snprintf(err, errlen, "cancelled");
		return -1;
	}
	return 0;
}

static int maybe_flush(struct mig_writer *w, char *err, size_t errlen)
{
	return w->buf.len >= FLUSH_AT || w->buf.oom ? flush(w, err, errlen) : 0;
}

int mig_writer_begin(struct mig_writer *w, int fd, uint64_t ram_size, mig_tick_fn tick,
		     void *opaque, char *err, size_t errlen)
{
	memset(w, 0, sizeof(*w));
	w->fd = fd;
	w->tick = tick;
	w->opaque = opaque;
	state_buf_init(&w->buf);
	uint8_t h[MIG_HEADER_SIZE] = {0};
	memcpy(h, MIG_MAGIC, 8);
	state_le32(h + 8, MIG_VERSION);
	state_le64(h + 16, ram_size);
	state_put_bytes(&w->buf, h, sizeof(h));
	return flush(w, err, errlen);
}

static bool wanted(const uint64_t *bitmap, uint64_t page)
{
	return bitmap[page / 64] >> (page % 64) & 1;
}

static void put_run(struct mig_writer *w, const uint8_t *ram, uint64_t first, uint32_t n)
{
	uint8_t h[13];
	h[0] = MIG_REC_RAM;
	state_le64(h + 1, first);
	state_le32(h + 9, n);
	state_put_bytes(&w->buf, h, sizeof(h));
	for (uint64_t pg = first; pg < first + n; pg++) {
		const uint8_t *p = ram + pg * SNAP_PAGE;
		/* The guest may write the page meanwhile: the dirty log has
		 * it then, and a later pass sends it again. */
		uint8_t marker = snap_page_is_zero(p) ? MIG_PAGE_ZERO : MIG_PAGE_DATA;
		state_put_bytes(&w->buf, &marker, 1);
		if (marker == MIG_PAGE_DATA) {
			state_put_bytes(&w->buf, p, SNAP_PAGE);
			w->counts.normal++;
		} else {
			w->counts.duplicate++;
		}
	}
}

int mig_writer_page_range(struct mig_writer *w, const uint8_t *ram, uint64_t first_page,
			  uint64_t npages, const uint64_t *bitmap, char *err, size_t errlen)
{
	uint64_t pages = first_page + npages;
	for (uint64_t pg = first_page; pg < pages;) {
		if (!bitmap[pg / 64]) {
			pg = (pg / 64 + 1) * 64;   /* a clean word: 64 pages skipped */
			continue;
		}
		if (!wanted(bitmap, pg)) {
			pg++;
			continue;
		}
		uint32_t n = 1;
		while (n < MIG_RUN_MAX && pg + n < pages && wanted(bitmap, pg + n))
			n++;
		put_run(w, ram, pg, n);
		pg += n;
		if (maybe_flush(w, err, errlen) < 0)
			return -1;
	}
	return 0;
}

int mig_writer_section(struct mig_writer *w, const struct state_entry *e, const void *data,
		       size_t len, char *err, size_t errlen)
{
	if (len > SNAP_SECTION_MAX) {
		snprintf(err, errlen, "section '%s.%u': too large", e->name, e->instance);
		return -1;
	}
	uint8_t h[1 + SNAP_SECTION_HEADER];
	h[0] = MIG_REC_SECTION;
	snap_section_header(h + 1, e, data, len);
	state_put_bytes(&w->buf, h, sizeof(h));
	state_put_bytes(&w->buf, data, len);
	return maybe_flush(w, err, errlen);
}

int mig_writer_disk(struct mig_writer *w, uint32_t index, uint64_t size, char *err, size_t errlen)
{
	uint8_t h[13];
	h[0] = MIG_REC_DISK;
	state_le32(h + 1, index);
	state_le64(h + 5, size);
	state_put_bytes(&w->buf, h, sizeof(h));
	return maybe_flush(w, err, errlen);
}

int mig_writer_disk_data(struct mig_writer *w, uint32_t index, uint64_t off, const void *data,
			 uint32_t len, char *err, size_t errlen)
{
	uint8_t h[18];
	h[0] = MIG_REC_DISK_DATA;
	state_le32(h + 1, index);
	state_le64(h + 5, off);
	state_le32(h + 13, len);
	h[17] = data ? MIG_PAGE_DATA : MIG_PAGE_ZERO;
	state_put_bytes(&w->buf, h, sizeof(h));
	if (data)
		state_put_bytes(&w->buf, data, len);
	w->counts.disk_bytes += len;
	return maybe_flush(w, err, errlen);
}

int mig_writer_flush(struct mig_writer *w, char *err, size_t errlen)
{
	return w->buf.len ? flush(w, err, errlen) : 0;
}

int mig_writer_end(struct mig_writer *w, char *err, size_t errlen)
{
	uint8_t end = MIG_REC_END;
	state_put_bytes(&w->buf, &end, 1);
	return flush(w, err, errlen);
}

void mig_writer_free(struct mig_writer *w)
{
	state_buf_free(&w->buf);
}

/* ---- reader ---- */

/* The stream is read through a buffer: a record is a one-byte marker and
 * a page, and two read(2) calls per page made the target, not the link,
 * the limit (each syscall costs most in a nested guest). */
#define READ_BUF (256u << 10)

struct reader {
	int fd;
	uint64_t *received;
	uint8_t *buf;
	size_t pos, len;
	const struct mig_disk_sink *disks;
	bool declared[MIG_DISK_MAX];
	uint8_t *chunk;             /* MIG_DISK_RUN_MAX, on the first data chunk */
};

/* Fills the buffer or, for a request as large as it, reads straight into
 * dst. Returns the bytes read, 0 at the end of the stream, -1 on error. */
static ssize_t read_some(struct reader *r, uint8_t *dst, size_t n)
{
	ssize_t got;
	do
		got = n >= READ_BUF ? read(r->fd, dst, n) : read(r->fd, r->buf, READ_BUF);
	while (got < 0 && errno == EINTR);
	if (got > 0 && r->received)
		__atomic_add_fetch(r->received, (uint64_t)got, __ATOMIC_RELAXED);
	if (got > 0 && n < READ_BUF) {
		r->pos = 0;
		r->len = (size_t)got;
	}
	return got;
}

/* Exactly n bytes, or -1: a stream that ends early is truncated. */
static int read_exact(struct reader *r, void *p, size_t n, char *err, size_t errlen)
{
	uint8_t *b = p;
	while (n) {
		size_t have = r->len - r->pos;
		if (have) {
			size_t take = have < n ? have : n;
			memcpy(b, r->buf + r->pos, take);
			r->pos += take;
			b += take;
			n -= take;
			continue;
		}
		ssize_t got = read_some(r, b, n);
		if (got <= 0) {
			/* EAGAIN: the receive timeout a target's kvzd set ran out. */
			snprintf(err, errlen, "stream %s",
				 got == 0 ? "truncated (the source went away)"
				 : errno == EAGAIN ? "stalled: nothing received within the timeout (link cut or source gone)"
				 : strerror(errno));
			return -1;
		}
		if (n >= READ_BUF) {
			b += got;
			n -= (size_t)got;
		}
	}
	return 0;
}

static int read_run(struct reader *r, uint8_t *ram, uint64_t ram_size, char *err, size_t errlen)
{
	uint8_t h[12];
	if (read_exact(r, h, sizeof(h), err, errlen) < 0)
		return -1;
	uint64_t first = state_rd64(h);
	uint32_t n = state_rd32(h + 8);
	uint64_t pages = ram_size / SNAP_PAGE;
	if (n == 0 || n > MIG_RUN_MAX || first >= pages || n > pages - first) {
		snprintf(err, errlen, "ram: run of %u pages at page %llu outside the %llu pages of RAM", n,
			 (unsigned long long)first, (unsigned long long)pages);
		return -1;
	}
	for (uint64_t pg = first; pg < first + n; pg++) {
		uint8_t marker;
		if (read_exact(r, &marker, 1, err, errlen) < 0)
			return -1;
		uint8_t *p = ram + pg * SNAP_PAGE;
		if (marker == MIG_PAGE_DATA) {
			if (read_exact(r, p, SNAP_PAGE, err, errlen) < 0)
				return -1;
		} else if (marker == MIG_PAGE_ZERO) {
			/* Untouched memory stays unallocated. */
			if (!snap_page_is_zero(p))
				memset(p, 0, SNAP_PAGE);
		} else {
			snprintf(err, errlen, "ram: bad page marker %u at page %llu", marker,
				 (unsigned long long)pg);
			return -1;
		}
	}
	return 0;
}

static int read_section(struct reader *r, struct snap_sections *out, char *err, size_t errlen)
{
	if (out->n >= SNAP_MAX_SECTIONS) {
		snprintf(err, errlen, "sections: more than %u", SNAP_MAX_SECTIONS);
		return -1;
	}
	uint8_t h[SNAP_SECTION_HEADER];
	if (read_exact(r, h, sizeof(h), err, errlen) < 0)
		return -1;
	uint32_t len = state_rd32(h + 36);
	if (len > SNAP_SECTION_MAX) {
		snprintf(err, errlen, "section %u: %u bytes, more than %u", out->n, len, SNAP_SECTION_MAX);
		return -1;
	}
	uint8_t *buf = malloc(SNAP_SECTION_HEADER + (size_t)len);
	struct snap_section *grown = realloc(out->s, (out->n + 1) * sizeof(*out->s));
	if (grown)
		out->s = grown;
	if (!buf || !grown) {
		free(buf);
		snprintf(err, errlen, "sections: out of memory");
		return -1;
	}
	memcpy(buf, h, sizeof(h));
	int rc = read_exact(r, buf + sizeof(h), len, err, errlen);
	uint64_t at = 0;
	if (rc == 0)
		rc = snap_parse_section(buf, SNAP_SECTION_HEADER + (uint64_t)len, &at, out->n,
					&out->s[out->n], err, errlen);
	free(buf);
	if (rc == 0)
		out->n++;
	return rc;
}

static int read_disk(struct reader *r, char *err, size_t errlen)
{
	uint8_t h[12];
	if (read_exact(r, h, sizeof(h), err, errlen) < 0)
		return -1;
	uint32_t i = state_rd32(h);
	uint64_t size = state_rd64(h + 4);
	unsigned have = !r->disks ? 0 : r->disks->n < MIG_DISK_MAX ? r->disks->n : MIG_DISK_MAX;
	if (i >= have) {
		snprintf(err, errlen, "disk %u: this machine has %u writable disk%s to copy into", i, have,
			 have == 1 ? "" : "s");
		return -1;
	}
	if (r->declared[i]) {
		snprintf(err, errlen, "disk %u: declared twice", i);
		return -1;
	}
	if (size != r->disks->size[i]) {
		snprintf(err, errlen, "disk %u: the source's is %llu bytes, this machine's %llu",
			 i, (unsigned long long)size, (unsigned long long)r->disks->size[i]);
		return -1;
	}
	r->declared[i] = true;
	return 0;
}

static int read_disk_data(struct reader *r, char *err, size_t errlen)
{
	uint8_t h[17];
	if (read_exact(r, h, sizeof(h), err, errlen) < 0)
		return -1;
	uint32_t i = state_rd32(h), len = state_rd32(h + 12);
	uint64_t off = state_rd64(h + 4);
	if (i >= MIG_DISK_MAX || !r->declared[i]) {
		snprintf(err, errlen, "disk %u: data for a disk the stream did not declare", i);
		return -1;
	}
	uint64_t size = r->disks->size[i];
	if (len == 0 || len > MIG_DISK_RUN_MAX || off > size || len > size - off) {
		snprintf(err, errlen, "disk %u: chunk of %u bytes at %llu outside its %llu bytes", i, len,
			 (unsigned long long)off, (unsigned long long)size);
		return -1;
	}
	if (h[16] != MIG_PAGE_DATA && h[16] != MIG_PAGE_ZERO) {
		snprintf(err, errlen, "disk %u: bad chunk marker %u at %llu", i, h[16], (unsigned long long)off);
		return -1;
	}
	const uint8_t *data = NULL;
	if (h[16] == MIG_PAGE_DATA) {
		if (!r->chunk && !(r->chunk = malloc(MIG_DISK_RUN_MAX))) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		if (read_exact(r, r->chunk, len, err, errlen) < 0)
			return -1;
		data = r->chunk;
	}
	return r->disks->write(r->disks->opaque, i, off, data, len, err, errlen);
}

static int read_header(struct reader *r, uint64_t ram_size, char *err, size_t errlen)
{
	uint8_t h[MIG_HEADER_SIZE];
	if (read_exact(r, h, sizeof(h), err, errlen) < 0)
		return -1;
	if (memcmp(h, MIG_MAGIC, 8)) {
		snprintf(err, errlen, "not a kvz-vmm migration stream");
		return -1;
	}
	if (state_rd32(h + 8) != MIG_VERSION) {
		snprintf(err, errlen, "stream version %u, this kvz-vmm reads %u", state_rd32(h + 8), MIG_VERSION);
		return -1;
	}
	uint64_t size = state_rd64(h + 16);
	if (size != ram_size) {
		snprintf(err, errlen, "ram: the source has %llu MiB of RAM, this machine %llu MiB (--memory differs)",
			 (unsigned long long)(size >> 20), (unsigned long long)(ram_size >> 20));
		return -1;
	}
	return 0;
}

static int read_records(struct reader *r, uint8_t *ram, uint64_t ram_size, struct snap_sections *out,
			char *err, size_t errlen)
{
	if (read_header(r, ram_size, err, errlen) < 0)
		return -1;
	bool sections_begun = false;
	for (;;) {
		uint8_t type;
		if (read_exact(r, &type, 1, err, errlen) < 0)
			return -1;
		int rc;
		if (type == MIG_REC_RAM && !sections_begun) {
			rc = read_run(r, ram, ram_size, err, errlen);
		} else if (type == MIG_REC_DISK && !sections_begun) {
			rc = read_disk(r, err, errlen);
		} else if (type == MIG_REC_DISK_DATA && !sections_begun) {
			rc = read_disk_data(r, err, errlen);
		} else if (type == MIG_REC_SECTION) {
			sections_begun = true;
			rc = read_section(r, out, err, errlen);
		} else if (type == MIG_REC_END) {
			return 0;
		} else {
			snprintf(err, errlen, "unexpected record type 0x%02x", type);
			rc = -1;
		}
		if (rc < 0)
			return -1;
	}
}

int mig_read_stream(int fd, uint8_t *ram, uint64_t ram_size, const struct mig_disk_sink *disks,
		    struct snap_sections *out, uint64_t *received, char *err, size_t errlen)
{
	struct reader r = { .fd = fd, .received = received, .buf = malloc(READ_BUF), .disks = disks };
	out->s = NULL;
	out->n = 0;
	if (!r.buf) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	int rc = read_records(&r, ram, ram_size, out, err, errlen);
	free(r.buf);
	free(r.chunk);
	return rc;
}
