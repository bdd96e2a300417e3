/* Diagnostics: one clear line on stderr, prefixed by the program name. */
#ifndef KVZ_LOG_H
#define KVZ_LOG_H

#include <stdarg.h>
#include <stdbool.h>

/* Set once at start-up from main(); read-only afterwards. */
void kvz_log_init(const char *progname);
void kvz_log_set_verbose(bool verbose);

void kvz_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void kvz_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void kvz_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void kvz_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* kvz_error() then exit(1). */
void kvz_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
