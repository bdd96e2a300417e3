#include "snapshot.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "state/state_registry.h"
#include "vm_internal.h"

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
	struct state_buf b;
	state_buf_init(&b);
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
			rc = snap_writer_section(&w, e, b.data, b.len, err, errlen);
	}
	state_buf_free(&b);
	if (rc == 0)
		rc = snap_writer_finish(&w, err, errlen);
	snap_writer_free(&w);
	return rc;
}

int snapshot_restore(struct vm *vm, int fd, char *err, size_t errlen)
{
	struct snap_header h;
	if (snap_read_header(fd, &h, err, errlen) < 0)
		return -1;
	if (h.ram_size != vm->mem.size) {
		snprintf(err, errlen, "ram: the saved machine has %llu MiB of RAM, this one %llu MiB (--memory differs)",
			 (unsigned long long)(h.ram_size >> 20), (unsigned long long)(vm->mem.size >> 20));
		return -1;
	}
	struct snap_sections s = {0};
	int rc = snap_read_sections(fd, &h, &s, err, errlen);
	if (rc == 0) {
		rc = guest_mem_map_file(&vm->mem, fd, h.ram_offset);
		if (rc < 0)
			snprintf(err, errlen, "ram: cannot map the file: %s", strerror(-rc));
	}
	if (rc == 0)
		rc = snap_sections_apply(&s, vm->registry, err, errlen);
	snap_sections_free(&s);
	return rc;
}
