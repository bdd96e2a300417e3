#include "token_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

/* Refuse a file others could read or replace. fstat() of the opened file
 * checks what is then read. */
static int token_file_private(int fd, const char *path)
{
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		kvz_error("token file %s is not a regular file", path);
		return -1;
	}
	if (st.st_uid != 0 && st.st_uid != geteuid()) {
		kvz_error("token file %s belongs to uid %u; it must belong to root or to kvzd's user",
			  path, (unsigned)st.st_uid);
		return -1;
	}
	if (st.st_mode & 077) {
		kvz_error("token file %s is open to group or others (mode %04o); chmod 600 it",
			  path, (unsigned)(st.st_mode & 07777));
		return -1;
	}
	return 0;
}

char *kvz_read_token_file(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		kvz_error("token file %s: %s", path, strerror(errno));
		return NULL;
	}
	FILE *f = token_file_private(fd, path) == 0 ? fdopen(fd, "r") : NULL;
	if (!f) {
		close(fd);
		return NULL;
	}
	char buf[512];
	char *tok = NULL;
	if (fgets(buf, sizeof(buf), f)) {
		buf[strcspn(buf, "\r\n")] = 0;
		if (strlen(buf) >= 16)
			tok = strdup(buf);
	}
	fclose(f);
	if (!tok)
		kvz_error("token file %s must hold a token of at least 16 characters", path);
	return tok;
}
