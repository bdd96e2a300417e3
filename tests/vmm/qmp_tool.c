/* kvz-qmp-tool SOCKET CMD[=JSON-ARGS]...: runs QMP commands in order and
 * prints each reply ("return" value or "error: CLASS: DESC") on a line.
 * kvz-qmp-tool --console SOCKET SECONDS: copies a console socket to stdout
 * until it closes or SECONDS pass.
 * For tests inside the nested lab, where there is no Python. */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "qmp_client.h"

static int run_one(struct qmp_client *c, const char *spec)
{
	char name[128];
	const char *eq = strchr(spec, '=');
	size_t n = eq ? (size_t)(eq - spec) : strlen(spec);
	if (n >= sizeof(name)) {
		fprintf(stderr, "kvz-qmp-tool: command name too long\n");
		return -1;
	}
	memcpy(name, spec, n);
	name[n] = 0;
	json_t *args = NULL;
	if (eq) {
		json_error_t jerr;
		args = json_loads(eq + 1, 0, &jerr);
		if (!args) {
			fprintf(stderr, "kvz-qmp-tool: bad arguments for %s: %s\n", name, jerr.text);
			return -1;
		}
	}
	json_t *ret = NULL;
	char cls[64] = "", err[512] = "";
	int rc = qmp_client_execute(c, name, args, &ret, cls, sizeof(cls), err, sizeof(err));
	json_decref(args);
	if (rc < 0) {
		fprintf(stderr, "kvz-qmp-tool: %s: %s\n", name, err);
		return -1;
	}
	if (rc > 0) {
		printf("%s: error: %s: %s\n", name, cls, err);
		return 0;
	}
	char *text = json_dumps(ret, JSON_COMPACT | JSON_ENCODE_ANY);
	printf("%s: %s\n", name, text ? text : "?");
	free(text);
	json_decref(ret);
	return 0;
}

static int console_dump(const char *path, int seconds)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(addr.sun_path)) {
		fprintf(stderr, "kvz-qmp-tool: path too long\n");
		return 1;
	}
	strcpy(addr.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		perror("kvz-qmp-tool: console connect");
		return 1;
	}
	time_t end = time(NULL) + seconds;
	while (time(NULL) < end) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 1000) <= 0)
			continue;
		char buf[4096];
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n <= 0)
			break;
		fwrite(buf, 1, (size_t)n, stdout);
		fflush(stdout);
	}
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "--console"))
		return console_dump(argv[2], atoi(argv[3]));
	if (argc < 3) {
		fprintf(stderr, "usage: kvz-qmp-tool SOCKET CMD[=JSON-ARGS]...\n");
		return 2;
	}
	char err[512];
	struct qmp_client *c = qmp_client_connect(argv[1], 10000, err, sizeof(err));
	if (!c) {
		fprintf(stderr, "kvz-qmp-tool: %s\n", err);
		return 1;
	}
	int status = 0;
	for (int i = 2; i < argc && status == 0; i++)
		if (run_one(c, argv[i]) < 0)
			status = 1;
	fflush(stdout);
	qmp_client_close(c);
	return status;
}
