#include "snapshot.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

static int file_section(void *w, const struct state_entry *e, const void *data, size_t len,
			char *err, size_t errlen)
{
	return snap_writer_section(w, e, data, len, err, errlen);
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
	struct ram_iter it;
	/* A memfd's holes are pages the guest never touched: skipped unread. */
	ram_iter_init(&it, vm->mem.size, NULL, vm->mem.file_backed ? -1 : vm->mem.memfd);
	int rc = snap_writer_ram(&w, vm->mem.host, &it, err, errlen);
	if (rc == 0)
		rc = snapshot_sections(vm, file_section, &w, err, errlen);
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
