/* Bounds kvz-vmm's way out: once the machine has stopped, tearing it down
 * (joining the QMP, console and I/O threads, closing devices) must end
 * within a limit. If a stage hangs, the watchdog says which one and ends
 * the process itself, so that a stop can never leave kvz-vmm running. */
#ifndef KVZ_VMM_STOP_WATCHDOG_H
#define KVZ_VMM_STOP_WATCHDOG_H

struct console;
struct stop_watchdog;

/* Starts the watchdog thread; NULL (after a warning) if it cannot, and
 * then the other calls do nothing. con's terminal is restored before an
 * emergency exit; it may be NULL. */
struct stop_watchdog *stop_watchdog_start(int limit_s, struct console *con);
/* Names the stage the caller is entering (a string literal). */
void stop_watchdog_stage(struct stop_watchdog *w, const char *stage);
/* Teardown finished: ends and frees the watchdog. */
void stop_watchdog_done(struct stop_watchdog *w);

#endif
