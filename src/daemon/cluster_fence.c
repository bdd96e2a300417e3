/* Fencing: a node that cannot prove its lease must stop its HA guests
 * before the lease's TTL lets the HA manager start them elsewhere. kvzd
 * cannot do this itself when it is the thing that died (SIGKILL, a crash)
 * or hangs, so a separate watchdog process does: kvzd pets it over a pipe
 * each second while its lease is sure (a keepalive etcd answered within
 * half the TTL), naming the HA guests' supervisors; when the pets stop for
 * the fence time, or the pipe closes because kvzd is gone, the watchdog
 * SIGKILLs those supervisors' process groups (checking each pid's start
 * time, so a reused pid is left alone). Like a hardware watchdog, it does
 * not ask why. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cluster_internal.h"
#include "supervisor.h"

int fence_spawn(struct cluster *c, char *err, size_t errlen)
{
	if (c->wd_fd >= 0)
		return 0;
	int p[2];
	if (pipe2(p, O_CLOEXEC)) {
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		return -1;
	}
	char ms[16];
	snprintf(ms, sizeof(ms), "%d", cluster_fence_ms(c));
	char *const argv[] = {"kvzd", "--fence-watchdog", ms, NULL};
	pid_t pid = fork();
	if (pid < 0) {
		snprintf(err, errlen, "fork: %s", strerror(errno));
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (!pid) {
		/* Only async-signal-safe calls between fork and exec. The
		 * watchdog keeps stderr (kvzd's log) and nothing else of
		 * kvzd's: no listening socket, no lock file. */
		setsid();
		dup2(p[0], 0);
		syscall(SYS_close_range, 3U, ~0U, 0U);
		execv("/proc/self/exe", argv);
		_exit(127);
	}
	close(p[0]);
	c->wd_fd = p[1];
	c->wd_pid = pid;
	return 0;
}

void fence_pet(struct cluster *c, int ms_left, const pid_t *pids, const unsigned long long *starts,
	       int n)
{
	if (c->wd_fd < 0 || ms_left <= 0)
		return;
	char line[CLUSTER_MAX_HA * 40 + 32];
	size_t len = (size_t)snprintf(line, sizeof(line), "PET %d", ms_left);
	for (int i = 0; i < n && len < sizeof(line) - 48; i++)
		len += (size_t)snprintf(line + len, sizeof(line) - len, " %d:%llu", (int)pids[i], starts[i]);
	line[len++] = '\n';
	/* PIPE_BUF-sized at most per line in practice; a dead watchdog gives
	 * EPIPE (SIGPIPE is ignored), which changes nothing here. */
	if (write(c->wd_fd, line, len) < 0)
		return;
}

void fence_close(struct cluster *c)
{
	if (c->wd_fd < 0)
		return;
	static const char disarm[] = "DISARM\n";
	if (write(c->wd_fd, disarm, sizeof(disarm) - 1) < 0) {
		/* it is gone already: nothing to disarm */
	}
	close(c->wd_fd);
	c->wd_fd = -1;
	waitpid(c->wd_pid, NULL, 0);
	c->wd_pid = 0;
}

/* ---- the watchdog process ---- */

struct victims {
	int n;
	pid_t pid[CLUSTER_MAX_HA];
	unsigned long long start[CLUSTER_MAX_HA];
};

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void fence(struct victims *v, const char *why)
{
	for (int i = 0; i < v->n; i++) {
		if (sup_proc_start(v->pid[i]) != v->start[i])
			continue;
		fprintf(stderr, "kvzd fence watchdog: %s: killing HA guest supervisor %d\n", why,
			(int)v->pid[i]);
		kill(-v->pid[i], SIGKILL);
		kill(v->pid[i], SIGKILL);
	}
	v->n = 0;
}

/* "PET MS PID:START...": the supervisors, and how long the lease is sure
 * from now (so the deadline follows the last keepalive, not the pet). */
static int parse_pet(char *line, struct victims *v, int fence_ms)
{
	v->n = 0;
	char *save = NULL;
	char *t = strtok_r(line + 3, " \n", &save);
	int ms = t ? atoi(t) : 0;
	if (ms <= 0 || ms > fence_ms)
		ms = fence_ms;
	for (t = strtok_r(NULL, " \n", &save); t && v->n < CLUSTER_MAX_HA;
	     t = strtok_r(NULL, " \n", &save)) {
		int pid;
		unsigned long long st;
		if (sscanf(t, "%d:%llu", &pid, &st) == 2 && pid > 1) {
			v->pid[v->n] = pid;
			v->start[v->n++] = st;
		}
	}
	return ms;
}

int fence_watchdog_main(int fence_ms)
{
	static struct victims v;      /* this process's only state */
	static char buf[CLUSTER_MAX_HA * 40 + 64];
	size_t have = 0;
	int64_t deadline = mono_ms() + fence_ms;
	signal(SIGPIPE, SIG_IGN);
	for (;;) {
		int64_t left = deadline - mono_ms();
		struct pollfd pfd = {.fd = 0, .events = POLLIN};
		int r = left > 0 ? poll(&pfd, 1, (int)left) : 0;
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			fence(&v, "no news of the lease");
			deadline = mono_ms() + fence_ms;
			continue;
		}
		ssize_t n = read(0, buf + have, sizeof(buf) - 1 - have);
		if (n <= 0) {
			fence(&v, "kvzd is gone");
			return 0;
		}
		have += (size_t)n;
		buf[have] = 0;
		char *nl;
		while ((nl = strchr(buf, '\n'))) {
			*nl = 0;
			if (!strcmp(buf, "DISARM"))
				return 0;
			if (!strncmp(buf, "PET", 3))
				deadline = mono_ms() + parse_pet(buf, &v, fence_ms);
			size_t used = (size_t)(nl + 1 - buf);
			memmove(buf, nl + 1, have - used + 1);
			have -= used;
		}
		if (have == sizeof(buf) - 1)
			have = 0; /* a line longer than any kvzd writes */
	}
}
