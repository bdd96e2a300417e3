#include "snapshot.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "phase_trace.h"
#include "state/state_registry.h"
#include "vm_internal.h"

int snapshot_sections(struct vm *vm, snapshot_section_fn emit, void *opaque, char *err, size_t errlen)
{
	struct state_buf b;
	state_buf_init(&b);
	int rc = 0;
	size_t n = state_registry_count(vm->registry);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		const struct state_entry *e = state_registry_at(vm->registry, i);
		char why[256] = "";
		b.len = 0;
		rc = e->ops->save(e->opaque, &b, why, sizeof(why));
		if (rc == 0 && b.oom) {
			snprintf(why, sizeof(why), "out of memory");
			rc = -1;
		}
		if (rc < 0)
			snprintf(err, errlen, "section '%s.%u': %s", e->name, e->instance, why);
		else
			rc = emit(opaque, e, b.data, b.len, err, errlen);
	}
	state_buf_free(&b);
	return rc;
}

/* A captured section: its entry (the registry outlives the capture), its
 * length, then its bytes. */
struct captured {
	const struct state_entry *e;
	size_t len;
};

static int capture_section(void *o, const struct state_entry *e, const void *data, size_t len,
			   char *err, size_t errlen)
{
	struct state_buf *b = o;
	struct captured c = {e, len};
	state_put_bytes(b, &c, sizeof(c));
	state_put_bytes(b, data, len);
	if (b->oom) {
		snprintf(err, errlen, "section '%s.%u': out of memory", e->name, e->instance);
		return -1;
	}
	return 0;
}

int snapshot_capture(struct vm *vm, struct state_buf *out, char *err, size_t errlen)
{
	return snapshot_sections(vm, capture_section, out, err, errlen);
}

int snapshot_replay(const struct state_buf *cap, snapshot_section_fn emit, void *opaque,
		    char *err, size_t errlen)
{
	for (size_t at = 0; at < cap->len;) {
		struct captured c;
		memcpy(&c, cap->data + at, sizeof(c));
		at += sizeof(c);
		if (emit(opaque, c.e, cap->data + at, c.len, err, errlen) < 0)
			return -1;
		at += c.len;
	}
	return 0;
}

static int file_section(void *w, const struct state_entry *e, const void *data, size_t len,
			char *err, size_t errlen)
{
	return snap_writer_section(w, e, data, len, err, errlen);
}

/* Which pages of RAM the save must read: a memfd's holes and, for
 * anonymous RAM, the pages pagemap says were never populated are skipped
 * unread (reading them would cost time in proportion to RAM size). */
static void ram_pages(struct vm *vm, struct ram_iter *it, struct pagemap_reader *pm)
{
	struct guest_mem *m = &vm->mem;
	bool memfd = m->memfd >= 0 && !m->file_backed;
	ram_iter_init(it, m->size, NULL, memfd ? m->memfd : -1);
	pagemap_reader_init(pm, memfd ? -1 : m->pagemap_fd, m->host, m->size,
			    m->file_backed ? m->file_chunks : NULL);
	if (memfd)
		return;
	if (m->pagemap_fd < 0)
		kvz_debug("snapshot: /proc/self/pagemap could not be opened (%s): every page of RAM is read",
			  strerror(m->pagemap_errno));
	ram_iter_use_pagemap(it, pm);
}

int snapshot_save(struct vm *vm, int fd, struct snap_progress *progress, char *err, size_t errlen)
{
	/* Truncating the file this VM's RAM is mapped from would pull the
	 * guest's memory away under it (SIGBUS). */
	struct stat st;
	if (vm->mem.file_backed && fstat(fd, &st) == 0 && st.st_dev == vm->mem.file_dev &&
	    st.st_ino == vm->mem.file_ino) {
		snprintf(err, errlen, "the target is the snapshot this VM was restored from (its RAM is mapped from it): write a new file");
		return -1;
	}
	struct snap_writer w;
	if (snap_writer_begin(&w, fd, vm->mem.size, progress, err, errlen) < 0)
		return -1;
	/* The state first, as the machine was when it paused: kvmclock and
	 * every vCPU's TSC then continue on restore from that instant, and the
	 * guest does not see the time the RAM takes to write pass. (The writer
	 * buffers the sections; their place in the file is after RAM.) */
	int rc = snapshot_sections(vm, file_section, &w, err, errlen);
	kvz_phase("save: state captured");
	if (rc == 0) {
		struct ram_iter it;
		struct pagemap_reader pm;
		ram_pages(vm, &it, &pm);
		rc = snap_writer_ram(&w, vm->mem.host, &it, err, errlen);
		if (pm.error)
			kvz_debug("snapshot: /proc/self/pagemap: %s: the rest of RAM was read page by page",
				  strerror(pm.error));
		kvz_phase("save: RAM written: %llu KiB read, %llu KiB written",
			  (unsigned long long)(w.ram_read >> 10), (unsigned long long)(w.ram_written >> 10));
	}
	if (rc == 0)
		rc = snap_writer_finish(&w, err, errlen);
	snap_writer_free(&w);
	return rc;
}

/* RAM read into the machine's own memory (anonymous, with huge pages)
 * instead of mapped: only the file's data extents are read (its holes are
 * zero pages), after the RAM is emptied of what boot loading wrote. */
static int read_ram(struct guest_mem *m, int fd, uint64_t off, char *err, size_t errlen)
{
	if (guest_mem_discard(m, 0, m->lo_size) < 0 ||
	    (m->hi_size && guest_mem_discard(m, GUEST_MEM_HI_START, m->hi_size) < 0)) {
		snprintf(err, errlen, "ram: cannot clear guest memory");
		return -1;
	}
	uint64_t pos = 0;
	while (pos < m->size) {
		off_t d = lseek(fd, (off_t)(off + pos), SEEK_DATA);
		if (d < 0 || (uint64_t)d >= off + m->size)
			break;
		off_t h = lseek(fd, d, SEEK_HOLE);
		uint64_t end = h > d && (uint64_t)h < off + m->size ? (uint64_t)h : off + m->size;
		for (uint64_t at = (uint64_t)d; at < end;) {
			ssize_t r = pread(fd, m->host + (at - off), end - at, (off_t)at);
			if (r <= 0) {
				snprintf(err, errlen, "ram: read at %llu: %s", (unsigned long long)at,
					 r < 0 ? strerror(errno) : "truncated");
				return -1;
			}
			at += (uint64_t)r;
		}
		pos = end - off;
	}
	return 0;
}

int snapshot_restore(struct vm *vm, int fd, bool map, char *err, size_t errlen)
{
	struct snap_header h;
	if (snap_read_header(fd, &h, err, errlen) < 0)
		return -1;
	if (h.ram_size != vm->mem.size) {
		snprintf(err, errlen, "ram: the saved machine has %llu MiB of RAM, this one %llu MiB (--memory differs)",
			 (unsigned long long)(h.ram_size >> 20), (unsigned long long)(vm->mem.size >> 20));
		return -1;
	}
	kvz_phase("restore: header read");
	struct snap_sections s = {0};
	int rc = snap_read_sections(fd, &h, &s, err, errlen);
	kvz_phase("restore: sections read and checked");
	if (rc == 0 && !map) {
		rc = read_ram(&vm->mem, fd, h.ram_offset, err, errlen);
	} else if (rc == 0) {
		rc = guest_mem_map_file(&vm->mem, fd, h.ram_offset);
		if (rc < 0)
			snprintf(err, errlen, "ram: cannot map the file: %s", strerror(-rc));
	}
	kvz_phase("restore: RAM %s", map ? "mapped" : "read");
	if (rc == 0)
		rc = snap_sections_apply(&s, vm->registry, err, errlen);
	snap_sections_free(&s);
	return rc;
}
