/* Command lines for supervisors and helper commands, built one argument at
 * a time with printf formats. */
#ifndef KVZD_ARGV_BUILD_H
#define KVZD_ARGV_BUILD_H

#define ARGV_MAX 64

struct argv {
	char *v[ARGV_MAX + 1]; /* NULL-terminated */
	int n;
	int keep_fd;           /* above 2: an fd of kvzd's the program inherits
				* (sup_spawn), closed by argv_free */
};

/* Appends one argument; beyond ARGV_MAX arguments the rest are dropped. */
void arg(struct argv *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void argv_free(struct argv *a);

#endif
