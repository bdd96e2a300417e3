/* Supervisor processes (kvz-vmm, kvz-ct run): starting them detached from
 * kvzd so that they outlive it, reaping those that are kvzd's children,
 * recognising them again after a kvzd restart, and running short helper
 * commands (kvz-ct create/destroy). */
#ifndef KVZD_SUPERVISOR_H
#define KVZD_SUPERVISOR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Starts the reaper thread. */
int sup_init(char *err, size_t errlen);

/* fork + setsid + exec argv with stdin from /dev/null and stdout/stderr
 * appended to logpath; keep_fd (above 2, else none) stays open in it
 * under its number, every other fd of kvzd's is close-on-exec. The child
 * is registered with the reaper. */
pid_t sup_spawn(char *const argv[], int keep_fd, const char *logpath, char *err,
		size_t errlen);

enum sup_liveness { SUP_ALIVE, SUP_EXITED, SUP_GONE };

/* For a child of this kvzd: ALIVE, or EXITED with its wait status in
 * *status (once reaped). For a process adopted after a restart (not our
 * child): ALIVE when pid still runs with the recorded start time, else
 * GONE. */
enum sup_liveness sup_check(pid_t pid, unsigned long long start, int *status);

/* Field 22 of /proc/PID/stat (start time in clock ticks since boot); 0 when
 * the process does not exist. */
unsigned long long sup_proc_start(pid_t pid);

/* True when pid runs program `prog` (basename of argv[0]) with `--name NAME`
 * among its arguments and started at `start`. */
bool sup_is_supervisor(pid_t pid, unsigned long long start, const char *prog,
		       const char *name);

/* Runs argv to completion (not detached), collecting its combined output
 * (the last line, trimmed) into out. Returns the exit code, or -1 when it
 * could not run or died of a signal. */
int sup_run(char *const argv[], char *out, size_t outlen);
/* The same with envp as its environment (NULL: kvzd's), calling tick(arg)
 * (unless NULL) about every 200 ms while it runs; once tick returns false the command's process group gets SIGTERM, and SIGKILL 3 s
 * later. */
int sup_run_watched(char *const argv[], char *const envp[], bool (*tick)(void *), void *arg,
		    char *out, size_t outlen);

#endif
