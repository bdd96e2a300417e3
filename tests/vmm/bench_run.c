/* kvz-bench-run N CMD [ARGS...]: runs CMD N times and prints the median
 * and minimum wall time from fork to exit in microseconds. When CMD prints
 * "first-exit-monotonic-ns T" on stderr (kvz-vmm --bench-first-exit), the
 * median time from fork to that point is printed too. For bench/ scripts
 * run inside the nested lab, where there is no Python and no perf. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

#define MAX_RUNS 1000

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
	long long x = *(const long long *)a, y = *(const long long *)b;
	return x < y ? -1 : x > y;
}

/* Runs argv once; *total gets fork-to-exit, *first fork-to-first-exit (or -1). */
static int nonzero_exits;

static int run_once(char **argv, long long *total, long long *first)
{
	int pipefd[2];
	if (pipe(pipefd) < 0)
		return -1;
	long long t0 = now_ns();
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);
		dup2(null, 0);
		dup2(null, 1);
		dup2(pipefd[1], 2);
		close(pipefd[0]);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(pipefd[1]);
	char buf[4096];
	size_t len = 0;
	ssize_t n;
	while ((n = read(pipefd[0], buf + len, sizeof(buf) - 1 - len)) > 0)
		len += (size_t)n;
	close(pipefd[0]);
	buf[len] = 0;
	int status;
	if (waitpid(pid, &status, 0) < 0)
		return -1;
	*total = now_ns() - t0;
	*first = -1;
	const char *p = strstr(buf, "first-exit-monotonic-ns ");
	if (p)
		*first = atoll(p + strlen("first-exit-monotonic-ns ")) - t0;
	if (!WIFEXITED(status)) {
		fprintf(stderr, "kvz-bench-run: %s died: %s\n", argv[0], buf);
		return -1;
	}
	if (WEXITSTATUS(status) != 0)
		nonzero_exits++;
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: kvz-bench-run N CMD [ARGS...]\n");
		return 2;
	}
	int runs = atoi(argv[1]);
	if (runs < 1 || runs > MAX_RUNS) {
		fprintf(stderr, "kvz-bench-run: N must be 1..%d\n", MAX_RUNS);
		return 2;
	}
	static long long totals[MAX_RUNS], firsts[MAX_RUNS];
	int nfirst = 0;
	for (int i = 0; i < runs; i++) {
		long long first;
		if (run_once(argv + 2, &totals[i], &first) < 0) {
			fprintf(stderr, "kvz-bench-run: run %d failed: %s\n", i, strerror(errno));
			return 1;
		}
		if (first >= 0)
			firsts[nfirst++] = first;
	}
	qsort(totals, (size_t)runs, sizeof(totals[0]), cmp);
	printf("runs=%d median_us=%lld min_us=%lld", runs, totals[runs / 2] / 1000, totals[0] / 1000);
	if (nfirst) {
		qsort(firsts, (size_t)nfirst, sizeof(firsts[0]), cmp);
		printf(" first_exit_median_us=%lld first_exit_min_us=%lld", firsts[nfirst / 2] / 1000,
		       firsts[0] / 1000);
	}
	printf(" nonzero_exits=%d\n", nonzero_exits);
	return 0;
}
