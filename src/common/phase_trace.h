/* Phase timing for benchmarks and regression tests (kvz-vmm --bench-phases):
 * one stderr line per phase with the time since the process started, the
 * time since the previous phase, and the process's page faults so far (the
 * kernel counts the faults KVM takes on guest RAM against the process:
 * they show how much memory a phase touched). Off by default: every call is
 * then one load and a branch. */
#ifndef KVZ_PHASE_TRACE_H
#define KVZ_PHASE_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Called once from main() before any thread starts. The first line gives
 * the time from exec to this call (from /proc/self/stat, 10 ms resolution)
 * and CLOCK_BOOTTIME, the clock of /proc/uptime. */
void kvz_phase_init(bool on);
bool kvz_phase_on(void);
void kvz_phase(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The first time buf holds a newline: phase "first console line". */
void kvz_phase_console(const void *buf, size_t len);

#endif
