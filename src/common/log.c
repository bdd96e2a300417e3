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

void kvz_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_line("error", fmt, ap);
	va_end(ap);
}

void kvz_warn(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_line("warning", fmt, ap);
	va_end(ap);
}

void kvz_info(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_line(NULL, fmt, ap);
	va_end(ap);
}

void kvz_debug(const char *fmt, ...)
{
	if (!log_verbose)
		return;
	va_list ap;
	va_start(ap, fmt);
	log_line("debug", fmt, ap);
	va_end(ap);
}

void kvz_die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_line("error", fmt, ap);
	va_end(ap);
	exit(1);
}
