/* Facts about the host kvzd runs on, read from /proc. */
#ifndef KVZD_HOSTINFO_H
#define KVZD_HOSTINFO_H

#include <stddef.h>
#include <stdint.h>

struct host_mem {
	uint64_t total, available;
};

int host_meminfo(struct host_mem *m);
/* Total and idle jiffies over all CPUs (the "cpu" line of /proc/stat). */
int host_cpu_ticks(uint64_t *total, uint64_t *idle);
int host_ncpus(void);
/* "model name" of the first CPU in /proc/cpuinfo, or "unknown". */
void host_cpu_model(char *buf, size_t len);

#endif
