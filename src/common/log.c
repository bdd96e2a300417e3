#include "log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

/* Process-wide by nature: the program name and verbosity are set once in
 * main() before any thread starts. */
static const char *log_progname = "kvz";
static bool log_verbose;

void kvz_log_init(const char *progname)
{
	const char *slash = progname;
	for (const char *p = progname; *p; p++)
		if (*p == '/')
			slash = p + 1;
	log_progname = slash;
}

void kvz_log_set_verbose(bool verbose) { log_verbose = verbose; }

static void log_line(const char *level, const char *fmt, va_list ap)
{
	char buf[1024];
	vsnprintf(buf, sizeof(buf), fmt, ap);
	/* One fprintf so that lines from several threads do not interleave. */
	if (level)
		fprintf(stderr, "%s: %s: %s\n", log_progname, level, buf);
	else
		fprintf(stderr, "%s: %s\n", log_progname, buf);
}

/* The body of each variadic function below: fmt and its arguments as one
 * line of the given level. */
#define LOG_ARGS(level) \
	do { \
		va_list ap; \
		va_start(ap, fmt); \
		log_line(level, fmt, ap); \
		va_end(ap); \
	} while (0)

void kvz_error(const char *fmt, ...)
{
	LOG_ARGS("error");
}

void kvz_warn(const char *fmt, ...)
{
	LOG_ARGS("warning");
}

void kvz_info(const char *fmt, ...)
{
	LOG_ARGS(NULL);
}

void kvz_debug(const char *fmt, ...)
{
	if (!log_verbose)
		return;
	LOG_ARGS("debug");
}

void kvz_die(const char *fmt, ...)
{
	LOG_ARGS("error");
	exit(1);
}
