#include "snapshot_file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "phase_trace.h"

#define SECTION_MAGIC 0x535a564bu     /* "KVZS" little-endian */
#define RAM_RUN_MAX (8u << 20)        /* one pwrite at most */
#define FLUSH_AT (4u << 20)           /* sections are written in blocks this large */
#define SECTIONS_MAX_TOTAL (256ull << 20)

static uint32_t crc(const void *p, size_t n)
{
	return (uint32_t)crc32(0L, p, (uInt)n);
}

static uint64_t round_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

/* ---- RAM iteration ---- */

void ram_iter_init(struct ram_iter *it, uint64_t size, const uint64_t *bitmap, int data_fd)
{
	it->size = size;
	it->bitmap = bitmap;
	it->data_fd = data_fd;
	it->pagemap = NULL;
	it->pos = 0;
}

void ram_iter_use_pagemap(struct ram_iter *it, struct pagemap_reader *pm)
{
	it->pagemap = pm;
}

static bool page_wanted(struct ram_iter *it, uint64_t page)
{
	if (it->bitmap)
		return it->bitmap[page / 64] >> (page % 64) & 1;
	return !it->pagemap || pagemap_may_hold_data(it->pagemap, page);
}

bool ram_iter_next(struct ram_iter *it, uint64_t max_len, uint64_t *off, uint64_t *len)
{
	uint64_t end = it->size;
	if (it->data_fd >= 0 && !it->bitmap && it->pos < it->size) {
		/* A memfd's holes are pages nobody wrote: zeros, skipped unread
		 * (reading them would allocate them). */
		off_t d = lseek(it->data_fd, (off_t)it->pos, SEEK_DATA);
		if (d < 0 || (uint64_t)d >= it->size) {
			it->pos = it->size;
			return false;
		}
		off_t h = lseek(it->data_fd, d, SEEK_HOLE);
		it->pos = (uint64_t)d;
		if (h > d && (uint64_t)h < end)
			end = (uint64_t)h;
	}
	if (it->pagemap && !it->bitmap)
		it->pos = pagemap_next_data(it->pagemap, it->pos / SNAP_PAGE, it->size / SNAP_PAGE) * SNAP_PAGE;
	while (it->pos < it->size && !page_wanted(it, it->pos / SNAP_PAGE))
		it->pos += SNAP_PAGE;
	if (it->pos >= it->size)
		return false;
	*off = it->pos;
	uint64_t stop = it->pos;
	while (stop < end && stop - it->pos < max_len && page_wanted(it, stop / SNAP_PAGE))
		stop += SNAP_PAGE;
	*len = stop - it->pos;
	it->pos = stop;
	return true;
}

/* ---- writer ---- */

static int pwrite_all(int fd, const uint8_t *p, size_t n, uint64_t off, char *err, size_t errlen)
{
	while (n) {
		ssize_t w = pwrite(fd, p, n, (off_t)off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			snprintf(err, errlen, "write at offset %llu: %s", (unsigned long long)off,
				 w < 0 ? strerror(errno) : "no progress");
			return -1;
		}
		p += w;
		n -= (size_t)w;
		off += (uint64_t)w;
	}
	return 0;
}

int snap_writer_begin(struct snap_writer *w, int fd, uint64_t ram_size,
		      struct snap_progress *progress, char *err, size_t errlen)
{
	memset(w, 0, sizeof(*w));
	w->fd = fd;
	w->progress = progress;
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "the snapshot target is not a regular file (a stream needs migration)");
		return -1;
	}
	w->ram_offset = SNAP_RAM_ALIGN;
	w->ram_size = ram_size;
	w->sections_offset = w->ram_offset + round_up(ram_size, SNAP_PAGE);
	w->pos = w->sections_offset;
	/* Empty, then sized: every page not written below stays a hole. */
	if (ftruncate(fd, 0) < 0 || ftruncate(fd, (off_t)w->sections_offset) < 0) {
		snprintf(err, errlen, "cannot size the snapshot file: %s", strerror(errno));
		return -1;
	}
	if (progress)
		__atomic_store_n(&progress->total, ram_size, __ATOMIC_RELAXED);
	return 0;
}

bool snap_page_is_zero(const uint8_t *p)
{
	const uint64_t *q = (const uint64_t *)(const void *)p;
	for (unsigned i = 0; i < SNAP_PAGE / 8; i++)
		if (q[i])
			return false;
	return true;
}

static void progress_add(struct snap_progress *p, uint64_t n)
{
	if (p)
		__atomic_add_fetch(&p->done, n, __ATOMIC_RELAXED);
}

static bool cancelled(const struct snap_progress *p)
{
	return p && __atomic_load_n(&p->cancel, __ATOMIC_RELAXED);
}

/* One run: its non-zero stretches, each with one pwrite. */
static int write_run(struct snap_writer *w, const uint8_t *ram, uint64_t off, uint64_t len,
		     char *err, size_t errlen)
{
	uint64_t end = off + len, start = off;
	while (start < end) {
		while (start < end && snap_page_is_zero(ram + start))
			start += SNAP_PAGE;
		uint64_t stop = start;
		while (stop < end && !snap_page_is_zero(ram + stop))
			stop += SNAP_PAGE;
		if (stop > start &&
		    pwrite_all(w->fd, ram + start, stop - start, w->ram_offset + start, err, errlen) < 0)
			return -1;
		w->ram_written += stop - start;
		start = stop;
	}
	w->ram_read += len;
	return 0;
}

int snap_writer_ram(struct snap_writer *w, const uint8_t *ram, struct ram_iter *it,
		    char *err, size_t errlen)
{
	uint64_t off, len, seen = 0;
	while (ram_iter_next(it, RAM_RUN_MAX, &off, &len)) {
		if (cancelled(w->progress)) {
			snprintf(err, errlen, "cancelled");
			return -1;
		}
		if (write_run(w, ram, off, len, err, errlen) < 0)
			return -1;
		/* Skipped holes count as done: they are part of the image. */
		progress_add(w->progress, off + len - seen);
		seen = off + len;
	}
	progress_add(w->progress, w->ram_size - seen);
	return 0;
}

static int flush(struct snap_writer *w, char *err, size_t errlen)
{
	if (w->pending.oom) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (!w->pending.len)
		return 0;
	if (pwrite_all(w->fd, w->pending.data, w->pending.len, w->pos, err, errlen) < 0)
		return -1;
	progress_add(w->progress, w->pending.len);
	w->pos += w->pending.len;
	w->pending.len = 0;
	return 0;
}

void snap_section_header(uint8_t h[SNAP_SECTION_HEADER], const struct state_entry *e,
			 const void *data, size_t len)
{
	memset(h, 0, SNAP_SECTION_HEADER);
	state_le32(h, SECTION_MAGIC);
	memcpy(h + 4, e->name, strlen(e->name));
	state_le32(h + 28, e->instance);
	state_le32(h + 32, e->version);
	state_le32(h + 36, (uint32_t)len);
	state_le32(h + 40, crc(data, len));
	state_le32(h + 44, crc(h, 44));
}

int snap_writer_section(struct snap_writer *w, const struct state_entry *e,
			const void *data, size_t len, char *err, size_t errlen)
{
	if (len > SNAP_SECTION_MAX || w->nsections >= SNAP_MAX_SECTIONS) {
		snprintf(err, errlen, "section '%s.%u': too large", e->name, e->instance);
		return -1;
	}
	uint8_t h[SNAP_SECTION_HEADER];
	snap_section_header(h, e, data, len);
	if (w->progress)
		__atomic_add_fetch(&w->progress->total, sizeof(h) + len, __ATOMIC_RELAXED);
	state_put_bytes(&w->pending, h, sizeof(h));
	state_put_bytes(&w->pending, data, len);
	w->nsections++;
	if (w->pending.len >= FLUSH_AT || w->pending.oom)
		return flush(w, err, errlen);
	return 0;
}

int snap_writer_finish(struct snap_writer *w, char *err, size_t errlen)
{
	if (flush(w, err, errlen) < 0)
		return -1;
	/* Everything on disk before the header that makes the file valid. */
	if (fdatasync(w->fd) < 0) {
		snprintf(err, errlen, "fdatasync: %s", strerror(errno));
		return -1;
	}
	uint8_t h[SNAP_HEADER_SIZE] = {0};
	memcpy(h, SNAP_MAGIC, 8);
	state_le32(h + 8, SNAP_FORMAT_VERSION);
	state_le32(h + 12, SNAP_PAGE);
	state_le64(h + 16, w->ram_offset);
	state_le64(h + 24, w->ram_size);
	state_le64(h + 32, w->sections_offset);
	state_le64(h + 40, w->pos - w->sections_offset);
	state_le32(h + 48, w->nsections);
	state_le32(h + 60, crc(h, 60));
	if (pwrite_all(w->fd, h, sizeof(h), 0, err, errlen) < 0)
		return -1;
	if (fdatasync(w->fd) < 0) {
		snprintf(err, errlen, "fdatasync: %s", strerror(errno));
		return -1;
	}
	return 0;
}

void snap_writer_free(struct snap_writer *w)
{
	state_buf_free(&w->pending);
}

/* ---- reader ---- */

static int pread_all(int fd, void *p, size_t n, uint64_t off)
{
	uint8_t *b = p;
	while (n) {
		ssize_t r = pread(fd, b, n, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		b += r;
		n -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

int snap_read_header(int fd, struct snap_header *h, char *err, size_t errlen)
{
	uint8_t b[SNAP_HEADER_SIZE];
	struct stat st;
	if (fstat(fd, &st) < 0) {
		snprintf(err, errlen, "header: %s", strerror(errno));
		return -1;
	}
	if ((uint64_t)st.st_size < sizeof(b) || pread_all(fd, b, sizeof(b), 0) < 0) {
		snprintf(err, errlen, "header: truncated (the file has %lld bytes)", (long long)st.st_size);
		return -1;
	}
	if (memcmp(b, SNAP_MAGIC, 8)) {
		snprintf(err, errlen, "header: not a kvz-vmm snapshot (or its save did not finish)");
		return -1;
	}
	if (state_rd32(b + 60) != crc(b, 60)) {
		snprintf(err, errlen, "header: checksum mismatch (corrupted)");
		return -1;
	}
	uint32_t version = state_rd32(b + 8);
	if (version != SNAP_FORMAT_VERSION) {
		snprintf(err, errlen, "header: format version %u, this kvz-vmm reads %u", version,
			 SNAP_FORMAT_VERSION);
		return -1;
	}
	h->ram_offset = state_rd64(b + 16);
	h->ram_size = state_rd64(b + 24);
	h->sections_offset = state_rd64(b + 32);
	h->sections_length = state_rd64(b + 40);
	h->nsections = state_rd32(b + 48);
	/* Offsets below 2^56 and sizes below 2^48: no sum below can wrap. */
	if (state_rd32(b + 12) != SNAP_PAGE || h->ram_offset % SNAP_PAGE || h->ram_offset < SNAP_PAGE ||
	    h->ram_offset >> 56 || h->sections_offset >> 56 ||
	    h->ram_size % SNAP_PAGE || h->ram_size > (1ull << 48) ||
	    h->sections_offset < h->ram_offset + h->ram_size ||
	    h->sections_length > SECTIONS_MAX_TOTAL || h->nsections > SNAP_MAX_SECTIONS) {
		snprintf(err, errlen, "header: impossible layout");
		return -1;
	}
	uint64_t need = h->sections_offset + h->sections_length;
	if ((uint64_t)st.st_size < need) {
		snprintf(err, errlen, "header: truncated (the file has %lld bytes, the header says %llu)",
			 (long long)st.st_size, (unsigned long long)need);
		return -1;
	}
	return 0;
}

void snap_sections_free(struct snap_sections *s)
{
	for (uint32_t i = 0; s->s && i < s->n; i++)
		free(s->s[i].data);
	free(s->s);
	s->s = NULL;
	s->n = 0;
}

/* One section from the buffer at *at; err names it once its header is known. */
int snap_parse_section(const uint8_t *buf, uint64_t len, uint64_t *at, uint32_t idx,
		       struct snap_section *s, char *err, size_t errlen)
{
	if (len - *at < SNAP_SECTION_HEADER) {
		snprintf(err, errlen, "section %u: truncated", idx);
		return -1;
	}
	const uint8_t *h = buf + *at;
	if (state_rd32(h) != SECTION_MAGIC || state_rd32(h + 44) != crc(h, 44)) {
		snprintf(err, errlen, "section %u: header corrupted", idx);
		return -1;
	}
	memcpy(s->name, h + 4, STATE_NAME_MAX);
	if (s->name[STATE_NAME_MAX - 1] || !s->name[0]) {
		snprintf(err, errlen, "section %u: bad name", idx);
		return -1;
	}
	s->instance = state_rd32(h + 28);
	s->version = state_rd32(h + 32);
	s->length = state_rd32(h + 36);
	*at += SNAP_SECTION_HEADER;
	if (s->length > SNAP_SECTION_MAX || len - *at < s->length) {
		snprintf(err, errlen, "section '%s.%u': truncated", s->name, s->instance);
		return -1;
	}
	if (state_rd32(h + 40) != crc(buf + *at, s->length)) {
		snprintf(err, errlen, "section '%s.%u': checksum mismatch (corrupted)", s->name, s->instance);
		return -1;
	}
	s->data = malloc(s->length ? s->length : 1);
	if (!s->data) {
		snprintf(err, errlen, "section '%s.%u': out of memory", s->name, s->instance);
		return -1;
	}
	memcpy(s->data, buf + *at, s->length);
	*at += s->length;
	return 0;
}

int snap_read_sections(int fd, const struct snap_header *h, struct snap_sections *out,
		       char *err, size_t errlen)
{
	out->s = calloc(h->nsections ? h->nsections : 1, sizeof(*out->s));
	out->n = 0;
	uint8_t *buf = malloc(h->sections_length ? h->sections_length : 1);
	if (!out->s || !buf) {
		free(buf);
		snprintf(err, errlen, "sections: out of memory");
		return -1;
	}
	if (pread_all(fd, buf, h->sections_length, h->sections_offset) < 0) {
		free(buf);
		snprintf(err, errlen, "sections: truncated");
		return -1;
	}
	uint64_t at = 0;
	int rc = 0;
	for (uint32_t i = 0; i < h->nsections && rc == 0; i++) {
		rc = snap_parse_section(buf, h->sections_length, &at, i, &out->s[i], err, errlen);
		if (rc == 0)
			out->n++;
	}
	if (rc == 0 && at != h->sections_length) {
		snprintf(err, errlen, "sections: %llu trailing bytes after the last section",
			 (unsigned long long)(h->sections_length - at));
		rc = -1;
	}
	free(buf);
	return rc;
}

static int match_sections(const struct snap_sections *s, struct state_registry *r,
			  const struct snap_section **found, char *err, size_t errlen)
{
	size_t n = state_registry_count(r);
	for (size_t i = 0; i < n; i++) {
		const struct state_entry *e = state_registry_at(r, i);
		found[i] = NULL;
		for (uint32_t k = 0; k < s->n; k++) {
			if (s->s[k].instance != e->instance || strcmp(s->s[k].name, e->name))
				continue;
			if (found[i]) {
				snprintf(err, errlen, "section '%s.%u': appears twice", e->name, e->instance);
				return -1;
			}
			found[i] = &s->s[k];
		}
		if (!found[i]) {
			snprintf(err, errlen, "section '%s.%u': missing (the saved machine had other devices: the options differ)",
				 e->name, e->instance);
			return -1;
		}
		if (found[i]->version < e->min_version || found[i]->version > e->version) {
			snprintf(err, errlen, "section '%s.%u': version %u, this kvz-vmm reads %u", e->name,
				 e->instance, found[i]->version, e->version);
			return -1;
		}
	}
	for (uint32_t k = 0; k < s->n; k++)
		if (!state_registry_find(r, s->s[k].name, s->s[k].instance)) {
			snprintf(err, errlen, "section '%s.%u': unknown here (the saved machine had other devices: the options differ)",
				 s->s[k].name, s->s[k].instance);
			return -1;
		}
	return 0;
}

int snap_sections_apply(const struct snap_sections *s, struct state_registry *r,
			char *err, size_t errlen)
{
	size_t n = state_registry_count(r);
	const struct snap_section **found = calloc(n ? n : 1, sizeof(*found));
	if (!found) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	int rc = match_sections(s, r, found, err, errlen);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		const struct state_entry *e = state_registry_at(r, i);
		struct state_cursor c;
		char why[256] = "";
		state_cursor_init(&c, found[i]->data, found[i]->length);
		rc = e->ops->load(e->opaque, &c, found[i]->version, why, sizeof(why));
		if (rc < 0)
			snprintf(err, errlen, "section '%s.%u': %s", e->name, e->instance,
				 why[0] ? why : "refused");
		else
			kvz_phase("restore: section %s.%u loaded", e->name, e->instance);
	}
	free(found);
	return rc;
}
