#include "guest_mem.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* KVM maps guest memory with 2 MiB (nested) page-table entries only where
 * the host address and the guest address agree modulo 2 MiB; otherwise it
 * disallows them for the whole memory slot, and every first touch of a
 * 4 KiB guest page is a nested-paging fault (in the lab: a guest writing
 * 64 MiB through its page cache took 2.5-3x QEMU's time, whose RAM is
 * 2 MiB aligned). Huge pages need the alignment too. Guest RAM starts at
 * guest address 0 (and 4 GiB), so its mapping starts on a 2 MiB boundary:
 * a reservation 2 MiB larger, the mapping placed inside, the rest unmapped. */
static void *map_aligned(uint64_t size, int flags, int fd)
{
	uint64_t span = size + GUEST_MEM_ALIGN;
	uint8_t *r = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (r == MAP_FAILED)
		return MAP_FAILED;
	uintptr_t at = ((uintptr_t)r + GUEST_MEM_ALIGN - 1) & ~(uintptr_t)(GUEST_MEM_ALIGN - 1);
	uint8_t *p = mmap((void *)at, size, PROT_READ | PROT_WRITE, flags | MAP_FIXED | MAP_NORESERVE, fd, 0);
	if (p == MAP_FAILED) {
		int e = errno;
		munmap(r, span);
		errno = e;
		return MAP_FAILED;
	}
	if (p > r)
		munmap(r, (size_t)(p - r));
	if (r + span > p + size)
		munmap(p + size, (size_t)(r + span - (p + size)));
	return p;
}

/* Anonymous memory: transparent huge pages come with MADV_HUGEPAGE under
 * the kernel's default "madvise" policy, which the shmem of a memfd does
 * not get (shmem_enabled defaults to "never"): in the lab a stock kernel
 * booted in 1.15x kvmtool's time on a memfd, 0.83x with huge pages. */
static void *map_anonymous(uint64_t size)
{
	return map_aligned(size, MAP_PRIVATE | MAP_ANONYMOUS, -1);
}

static void *map_memfd(int *fd_out, uint64_t size)
{
	int fd = memfd_create("kvz-guest-ram", MFD_CLOEXEC);
	if (fd < 0)
		return MAP_FAILED;
	if (ftruncate(fd, (off_t)size) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return MAP_FAILED;
	}
	void *p = map_aligned(size, MAP_SHARED, fd);
	if (p == MAP_FAILED) {
		int e = errno;
		close(fd);
		errno = e;
		return MAP_FAILED;
	}
	*fd_out = fd;
	return p;
}

int guest_mem_init(struct guest_mem *m, uint64_t size, bool shared)
{
	memset(m, 0, sizeof(*m));
	m->memfd = -1;
	m->pagemap_fd = -1;
	if (size == 0 || size % 4096)
		return -EINVAL;
	/* MAP_NORESERVE: guest RAM is allocated on first touch, so an idle guest
	 * costs the host nothing beyond what it really uses. */
	void *p = shared ? map_memfd(&m->memfd, size) : map_anonymous(size);
	if (p == MAP_FAILED)
		return -errno;
	/* Huge pages cut the nested-paging faults of a booting guest by 512x. */
	madvise(p, size, MADV_HUGEPAGE);
	m->host = p;
	m->size = size;
	m->lo_size = size < GUEST_MEM_HOLE_START ? size : GUEST_MEM_HOLE_START;
	m->hi_size = size - m->lo_size;
	m->pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	m->pagemap_errno = m->pagemap_fd < 0 ? errno : 0;
	return 0;
}

void guest_mem_destroy(struct guest_mem *m)
{
	if (m->host)
		munmap(m->host, m->size);
	if (m->memfd >= 0)
		close(m->memfd);
	if (m->pagemap_fd >= 0)
		close(m->pagemap_fd);
	free(m->file_chunks);
	m->file_chunks = NULL;
	m->pagemap_fd = -1;
	free(m->vmm_dirty_buf);
	m->vmm_dirty_buf = m->vmm_dirty = NULL;
	free(m->vhost_log_buf);
	m->vhost_log_buf = m->vhost_log = NULL;
	m->host = NULL;
	m->memfd = -1;
}

void *guest_mem_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	if (len == 0)
		len = 1;
	if (gpa < m->lo_size) {
		if (len > m->lo_size - gpa)
			return NULL;
		return m->host + gpa;
	}
	if (gpa >= GUEST_MEM_HI_START && gpa - GUEST_MEM_HI_START < m->hi_size) {
		uint64_t off = gpa - GUEST_MEM_HI_START;
		if (len > m->hi_size - off)
			return NULL;
		return m->host + m->lo_size + off;
	}
	return NULL;
}

int guest_mem_discard(const struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	uint8_t *p = guest_mem_ptr(m, gpa, len);
	if (!p)
		return -EFAULT;
	off_t off = p - m->host;
	if (off % 4096 || len % 4096)
		return -EINVAL;
	guest_mem_mark_dirty_host(m, p, len);   /* reads zeros now: send that */
	/* A private file mapping would fall back to the file's bytes: a fresh
	 * anonymous mapping in its place reads zeros and holds no memory. */
	if (m->file_backed)
		return mmap(p, len, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0) == MAP_FAILED
			       ? -errno : 0;
	if (m->memfd < 0)   /* anonymous: the pages go, the range reads zeros */
		return madvise(p, len, MADV_DONTNEED) < 0 ? -errno : 0;
	/* Punching the hole frees the memfd pages; the shared mapping then reads
	 * zeros, exactly like a balloon-freed page must. */
	if (fallocate(m->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, (off_t)len) < 0)
		return -errno;
	return 0;
}

/* Most restore chunks that hold no data are pages the guest never touched
 * (or gave back): anonymous huge pages serve them as at boot, one fault per
 * 2 MiB, where a private file mapping would take a 4 KiB fault per page and
 * fill the file's holes. At most this many file mappings (VMAs): the rest
 * of RAM is then mapped from the file in one piece. */
#define MAP_FILE_RUNS_MAX 4096

/* The next chunk of RAM, at or after pos, that holds file data: [*start,
 * *end), 2 MiB aligned (within RAM). False when none is left. The file's
 * holes are found with SEEK_DATA/SEEK_HOLE, O(data extents); a file system
 * without them reports one extent, the whole file. */
static bool next_data_chunk(const struct guest_mem *m, int fd, uint64_t offset, uint64_t pos,
			    uint64_t *start, uint64_t *end)
{
	off_t d = lseek(fd, (off_t)(offset + pos), SEEK_DATA);
	if (d < 0 || (uint64_t)d >= offset + m->size)
		return false;
	off_t h = lseek(fd, d, SEEK_HOLE);
	uint64_t e = h > d && (uint64_t)h < offset + m->size ? (uint64_t)h - offset : m->size;
	*start = ((uint64_t)d - offset) & ~(GUEST_MEM_ALIGN - 1);
	*end = e + GUEST_MEM_ALIGN - 1 < m->size ? (e + GUEST_MEM_ALIGN - 1) & ~(GUEST_MEM_ALIGN - 1)
						 : m->size;
	return true;
}

static int map_file_range(struct guest_mem *m, int fd, uint64_t offset, uint64_t start,
			  uint64_t end)
{
	void *p = mmap(m->host + start, end - start, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_FIXED | MAP_NORESERVE, fd, (off_t)(offset + start));
	if (p == MAP_FAILED)
		return -errno;
	for (uint64_t c = start / GUEST_MEM_ALIGN; c * GUEST_MEM_ALIGN < end; c++)
		m->file_chunks[c / 64] |= 1ull << (c % 64);
	return 0;
}

int guest_mem_map_file(struct guest_mem *m, int fd, uint64_t offset)
{
	uint64_t chunks = (m->size + GUEST_MEM_ALIGN - 1) / GUEST_MEM_ALIGN;
	free(m->file_chunks);
	m->file_chunks = calloc((chunks + 63) / 64, sizeof(uint64_t));
	if (!m->file_chunks)
		return -ENOMEM;
	/* A fresh anonymous mapping first: what boot loading wrote goes, and
	 * the chunks without data read zeros. */
	void *p = mmap(m->host, m->size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	madvise(p, m->size, MADV_HUGEPAGE);
	m->file_backed = true;
	struct stat st;
	if (fstat(fd, &st) == 0) {
		m->file_dev = st.st_dev;
		m->file_ino = st.st_ino;
	}
	uint64_t pos = 0, start, end, run_start = 0, run_end = 0;
	unsigned runs = 0;
	int rc = 0;
	while (rc == 0 && pos < m->size && next_data_chunk(m, fd, offset, pos, &start, &end)) {
		if (run_end && start <= run_end) {   /* touches the run: extend it */
			run_end = end > run_end ? end : run_end;
		} else {
			if (run_end)
				rc = map_file_range(m, fd, offset, run_start, run_end);
			if (rc == 0 && ++runs == MAP_FILE_RUNS_MAX) {
				run_start = start;
				run_end = m->size;   /* the rest in one piece */
				break;
			}
			run_start = start;
			run_end = end;
		}
		pos = run_end;
	}
	if (rc == 0 && run_end)
		rc = map_file_range(m, fd, offset, run_start, run_end);
	if (rc < 0)
		return rc;
	/* What boot loading wrote to a memfd is unreachable now: give it back
	 * (anonymous pages went with the mapping they were in). */
	if (m->memfd >= 0 &&
	    fallocate(m->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, (off_t)m->size) < 0)
		return -errno;
	return 0;
}
