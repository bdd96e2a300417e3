/* CRIU (the Debian `criu` binary) as kvz-ct uses it: whether it can work on
 * this host (`criu check`), and one dump or restore of a container's init
 * with the options its namespaces need (docs/architecture.md, "kvz-ct
 * checkpoint and restore"). */
#ifndef KVZ_CT_CRIU_H
#define KVZ_CT_CRIU_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* 0 when `criu check` passes; otherwise -1 with one line saying why CRIU
 * cannot be used here (not installed, or the check's first error). */
int criu_usable(char *why, size_t len);

/* 0 when `criu check --feature uffd-noncoop` passes (lazy restore of a
 * tree of tasks); otherwise -1 with one line saying why. */
int criu_lazy_usable(char *why, size_t len);

/* Starts `criu lazy-pages` on the images of dir (a daemon serving the
 * pages a --lazy-pages restore leaves out; it exits once all are back in
 * the tasks); returns once it listens. */
int criu_lazy_pages(const char *dir, char *err, size_t len);

/* The console's pty slave as CRIU names a tty: "tty[RDEV:DEV]" (hex). */
int criu_tty_key(int slave_fd, char *out, size_t size, char *err, size_t len);

struct criu_dump {
	pid_t pid;              /* the container's init (host pid) */
	const char *dir;        /* images and dump.log (pre-dump.log) */
	const char *shown;      /* dir as the user named it (messages), or NULL */
	int dir_fd;             /* kept open in criu (dir is /proc/self/fd/N...), or -1 */
	bool pre;               /* a pre-dump: memory only, the tasks run on */
	bool track_mem;         /* soft-dirty tracking for a later (pre-)dump */
	const char *prev;       /* the previous pre-dump, relative to dir, or NULL */
	bool leave_running;
	const char *veth;        /* host end of eth0's veth, or NULL */
	const char *console_tty; /* criu_tty_key() of the console, or NULL */
	/* Unmounted from criu's own copy of our mount namespace: the stage
	 * with the container's /proc and /sys (idmount.h). Seen by criu, they
	 * would pass for external binds of it, which restore has not. */
	const char *hide;
	/* Migration: pages go to a CRIU page server on this connected socket
	 * (--page-server --ps-socket) instead of into dir; -1 for none. */
	int ps_fd;
	/* The cgroup's freezer directory: criu freezes through it, and
	 * restores the state it found (a container frozen beforehand stays
	 * frozen after a --leave-running dump); NULL for none. */
	const char *freeze_cgroup;
};

/* Dumps the tree of pid (or pre-dumps its memory). On failure CRIU has let
 * the tasks run on; err is the first error of the log. */
int criu_dump(const struct criu_dump *d, char *err, size_t len);

struct criu_restore {
	const char *dir;
	const char *root;        /* the container's root, mounted for it */
	const char *veth;        /* host name of the new veth, or NULL */
	const char *console_tty; /* the dumped console's tty key, or NULL */
	int console_fd;          /* the new console's slave (with console_tty) */
	const char *console_path; /* its path, bound at /dev/console */
	/* --cgroup-root values (cgroup_restore_roots): the container's
	 * cgroup here, not the dumped path of the host it came from. */
	const char *const *cgroup_roots;
	size_t ncgroup_roots;
	/* Called with criu's pid before it runs (e.g. to move it into the
	 * container's cgroup, which the restored tasks inherit). */
	int (*before)(pid_t criu, void *arg, char *err, size_t len);
	void *arg;
	bool lazy; /* --lazy-pages: criu_lazy_pages() runs on dir */
	/* Out: when the tasks ran again (CLOCK_MONOTONIC ms): criu's end less
	 * what its log shows after "Restore finished successfully" (the tasks
	 * resumed; criu goes on cleaning up for a while under emulation); 0
	 * when the log says none. */
	int64_t resumed_at;
};

/* Restores the tree as a child of the caller (criu's --restore-sibling:
 * it outlives criu with us as its parent). Returns its pid, or -1 with the
 * first error of restore.log; then nothing of it is left. */
pid_t criu_restore(struct criu_restore *r, char *err, size_t len);

/* The receiving end of criu_dump's ps_fd: one `criu page-server` session
 * on the connected socket ps_fd (it ends with the dumping side's flush
 * request), writing pages and pagemaps into dir, whose parent (a
 * pre-dump's images, relative to dir) is prev or NULL. */
int criu_page_server(const char *dir, const char *prev, int ps_fd, char *err, size_t len);

/* Removes the nftables lock table CRIU 3.17 leaves in a restored network
 * namespace (criu_unlock.c): the namespace of init. */
int criu_unlock_network(pid_t init, char *err, size_t len);

/* The first "Error (file:line): MSG" of a CRIU log as MSG; "" if none. */
void criu_log_error(const char *log, char *out, size_t size);

#endif
