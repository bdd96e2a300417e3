/* Small file and process helpers shared by the kvz-ct subcommands. */
#ifndef KVZ_CT_UTIL_H
#define KVZ_CT_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Runs argv[0] (PATH lookup) with stdin/stdout on /dev/null; on failure
 * err gets the last line it printed on stderr. */
int run_quiet(const char *const argv[], char *err, size_t len);
/* Runs argv[0] with stdin on /dev/null; its stdout into a new string in
 * *out (out may be NULL: /dev/null). On failure err is the last line it
 * printed on stderr, as it is. */
int run_capture(const char *const argv[], char **out, char *err, size_t len);
int mkdir_p(const char *path, mode_t mode, char *err, size_t len);
/* Removes a tree without crossing into other filesystems. */
int rm_rf(const char *path);
int write_text(const char *path, const char *text, char *err, size_t len);
/* Reads fd to its end into a new string (NULL when out of memory). */
char *read_fd_text(int fd);
/* Reads a whole small file; NULL on error. Caller frees. */
char *read_text(const char *path);
bool path_exists(const char *path);
/* CLOCK_MONOTONIC in milliseconds. */
int64_t now_ms(void);
/* True while pid runs (a zombie counts as gone). */
bool pid_alive(pid_t pid);
/* waitpid through EINTR: the exit code, -1 when killed by a signal. */
int wait_exit_code(pid_t pid);
/* Runs fn(arg, err_fd) in a forked child, which exits with its result:
 * 0 when it exits 0 having written nothing to err_fd; otherwise -1 and msg
 * holds what it wrote ("" when it wrote nothing). */
int run_in_child(int (*fn)(void *arg, int err_fd), void *arg, char *msg, size_t len);

#endif
