/* A stand-in for kvz-vmm and kvz-ct that speaks their command lines and QMP
 * contracts (docs in /work/prompts/contracts.md) without running a guest, so
 * that kvzd's own logic (records, adoption, crash detection, events, stats)
 * is tested on any machine. The tests copy it to a file named kvz-vmm or
 * kvz-ct; it acts as whichever its argv[0] names. Real-binary tests live in
 * test_real_guests.py. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "qmp_server.h"

/* Set from QMP handlers and signal handlers, read by main's wait loop:
 * SIGUSR1 plays a guest that shuts down cleanly, SIGUSR2 one that fails
 * (container init exiting with code 5). */
static volatile sig_atomic_t quit_requested, guest_end;

static void on_signal(int sig) { guest_end = sig; }
static long long balloon_actual = 256 << 20;
static char memory_setting[64] = "0:0";

static json_t *h_status(void *o, json_t *a, struct qmp_error *e)
{
	(void)o; (void)a; (void)e;
	return json_pack("{s:s, s:b, s:b}", "status", "running", "running", 1, "singlestep", 0);
}

static json_t *h_quit(void *o, json_t *a, struct qmp_error *e)
{
	(void)o; (void)a; (void)e;
	quit_requested = 1;
	return NULL;
}

static json_t *h_balloon(void *o, json_t *a, struct qmp_error *e)
{
	(void)o;
	json_t *v = json_object_get(a, "value");
	if (!json_is_integer(v)) {
		qmp_set_error(e, "GenericError", "value missing");
		return NULL;
	}
	balloon_actual = json_integer_value(v);
	return NULL;
}

static json_t *h_query_balloon(void *o, json_t *a, struct qmp_error *e)
{
	(void)o; (void)a; (void)e;
	return json_pack("{s:I}", "actual", (json_int_t)balloon_actual);
}

static json_t *h_set(void *o, json_t *a, struct qmp_error *e)
{
	(void)o;
	const char *m = json_string_value(json_object_get(a, "memory"));
	/* Like the real kvz-ct, refuse a limit below current usage (1M here). */
	if (m && atoll(strchr(m, ':') ? strchr(m, ':') + 1 : m) < (1 << 20)) {
		qmp_set_error(e, "GenericError", "memory limit below current usage");
		return NULL;
	}
	if (m)
		snprintf(memory_setting, sizeof(memory_setting), "%s", m);
	return NULL;
}

static json_t *h_stats(void *o, json_t *a, struct qmp_error *e)
{
	(void)o; (void)a; (void)e;
	static long long cpu_ns;
	cpu_ns += 50 * 1000 * 1000;
	const char *hard = strchr(memory_setting, ':');
	return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
			 "cpu-usage-ns", (json_int_t)cpu_ns, "memory-used", (json_int_t)(3 << 20),
			 "memory-soft", (json_int_t)atoll(memory_setting),
			 "memory-hard", (json_int_t)(hard ? atoll(hard + 1) : 0),
			 "pids-current", (json_int_t)2, "disk-used", (json_int_t)(5 << 20),
			 "disk-size", (json_int_t)(64 << 20), "net-rx-bytes", (json_int_t)1000,
			 "net-tx-bytes", (json_int_t)2000);
}

/* Serves the console: a greeting line, then echoes what a client types. */
static void *console_main(void *arg)
{
	const char *path = arg;
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
	unlink(path);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(fd, 4) < 0)
		kvz_die("console %s: %s", path, strerror(errno));
	for (;;) {
		int c = accept(fd, NULL, NULL);
		if (c < 0)
			continue;
		static const char hello[] = "kvz-test-guest: idle\n";
		if (write(c, hello, sizeof(hello) - 1) < 0) {
			close(c);
			continue;
		}
		char buf[256];
		ssize_t n;
		while ((n = read(c, buf, sizeof(buf))) > 0)
			if (write(c, buf, (size_t)n) < 0)
				break;
		close(c);
	}
	return NULL;
}

static const char *opt_after(int argc, char **argv, const char *name)
{
	for (int i = 1; i + 1 < argc; i++)
		if (!strcmp(argv[i], name))
			return argv[i + 1];
	return NULL;
}

static int supervise(const char *qmp, const char *console, bool vm)
{
	static const struct qmp_command cmds[] = {
		{"query-status", h_status}, {"quit", h_quit}, {"stop", h_quit},
		{"balloon", h_balloon}, {"query-balloon", h_query_balloon},
		{"set", h_set}, {"query-stats", h_stats},
	};
	if (!qmp)
		kvz_die("--qmp missing");
	if (console) {
		pthread_t t;
		pthread_create(&t, NULL, console_main, (void *)console);
	}
	char err[256];
	struct qmp_server *s = qmp_server_start(qmp, vm ? "kvz-vmm" : "kvz-ct", cmds,
						sizeof(cmds) / sizeof(cmds[0]), NULL, err, sizeof(err));
	if (!s)
		kvz_die("%s", err);
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGUSR1, &sa, NULL);
	sigaction(SIGUSR2, &sa, NULL);
	printf("fake supervisor up\n");
	fflush(stdout);
	while (!quit_requested && !guest_end)
		usleep(20 * 1000);
	int rc = 0;
	if (guest_end) {
		bool ok = guest_end == SIGUSR1;
		qmp_server_emit(s, "SHUTDOWN", vm ? json_pack("{s:b, s:s}", "guest", 1, "reason",
							       ok ? "guest-shutdown" : "guest-panic")
						  : json_pack("{s:i}", "exit-code", ok ? 0 : 5));
		usleep(100 * 1000);
		rc = ok ? 0 : 1;
	}
	qmp_server_stop(s);
	if (console)
		unlink(console);
	return rc;
}

int main(int argc, char **argv)
{
	kvz_log_init(argv[0]);
	const char *base = strrchr(argv[0], '/');
	base = base ? base + 1 : argv[0];
	bool vm = !strcmp(base, "kvz-vmm");
	if (vm)
		return supervise(opt_after(argc, argv, "--qmp"),
				 opt_after(argc, argv, "--console-socket"), true);
	if (argc < 2)
		kvz_die("usage: kvz-ct create|run|destroy|exec ...");
	const char *name = opt_after(argc, argv, "--name");
	const char *root = opt_after(argc, argv, "--ct-root");
	char dir[512];
	snprintf(dir, sizeof(dir), "%s/%s", root ? root : "/tmp", name ? name : "x");
	if (!strcmp(argv[1], "create")) {
		/* A name starting with "fail" makes creation fail half-way, to
		 * test that kvzd leaves nothing behind. */
		if (mkdir(dir, 0755) < 0)
			kvz_die("mkdir %s: %s", dir, strerror(errno));
		if (!strncmp(name, "fail", 4))
			kvz_die("template unpacking failed (fake)");
		/* "slow..." takes a while, like a debian template does. */
		if (!strncmp(name, "slow", 4))
			sleep(5);
		/* The id range kvz-ct create records; kvzd keeps it. */
		char idmap[600];
		snprintf(idmap, sizeof(idmap), "%s/idmap", dir);
		FILE *f = fopen(idmap, "w");
		if (!f || fputs("{\"uid\": 524288, \"gid\": 524288, \"count\": 65536}\n", f) < 0 ||
		    fclose(f) != 0)
			kvz_die("cannot write %s", idmap);
		return 0;
	}
	if (!strcmp(argv[1], "destroy")) {
		char idmap[600];
		snprintf(idmap, sizeof(idmap), "%s/idmap", dir);
		unlink(idmap);
		rmdir(dir);
		return 0;
	}
	if (!strcmp(argv[1], "run")) {
		const char *mem = opt_after(argc, argv, "--memory");
		if (mem)
			snprintf(memory_setting, sizeof(memory_setting), "%s", mem);
		return supervise(opt_after(argc, argv, "--qmp"),
				 opt_after(argc, argv, "--console-socket"), false);
	}
	if (!strcmp(argv[1], "exec")) {
		for (int i = 2; i < argc; i++)
			if (!strcmp(argv[i], "--") && i + 1 < argc) {
				execvp(argv[i + 1], argv + i + 1);
				kvz_die("exec %s: %s", argv[i + 1], strerror(errno));
			}
		kvz_die("exec: no command");
	}
	kvz_die("unknown subcommand %s", argv[1]);
}
