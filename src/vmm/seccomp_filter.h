/* The seccomp-bpf allow-list of a running kvz-vmm: once the machine is
 * built (guest RAM, devices, TAPs, disks, sockets, signal handlers) and
 * before the first vCPU runs, every thread may make only the system calls
 * that serving a guest needs. A guest that takes over the VMM's code still
 * cannot open files, create sockets, run programs or map executable
 * memory. */
#ifndef KVZ_VMM_SECCOMP_FILTER_H
#define KVZ_VMM_SECCOMP_FILTER_H

#include <stdbool.h>
#include <stddef.h>

enum seccomp_mode {
	SECCOMP_FILTER_OFF,
	SECCOMP_FILTER_ON,    /* a forbidden call ends kvz-vmm with one line */
	SECCOMP_FILTER_LOG,   /* forbidden calls are allowed and logged by the
			       * kernel (audit/dmesg): for finding missing ones */
};

/* "on", "off" or "log". Returns false for anything else. */
bool seccomp_filter_parse_mode(const char *s, enum seccomp_mode *mode);

/* Sanitizer builds return false: ASan/UBSan runtimes make system calls of
 * their own (/proc/self/maps reads, ptrace for leak checks, reports) that
 * no allow-list of ours can predict. */
bool seccomp_filter_supported(void);

/* Installs the filter on every thread of the process (TSYNC); threads
 * created later inherit it. ON also installs the SIGSYS handler that
 * reports a forbidden call. OFF does nothing. Returns 0, or -1 with one
 * line in err (nothing installed). */
int seccomp_filter_install(enum seccomp_mode mode, char *err, size_t errlen);

#endif
