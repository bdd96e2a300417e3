/* kvz job list|show|cancel|wait, and following a job until it ends: the
 * progress bar on a terminal, plain lines when not, JSON records with
 * --json, then one final line. Ctrl-C while following cancels the job. */
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "http.h"
#include "log.h"
#include "parse.h"

#define POLL_MS 200
#define BAR_WIDTH 30

/* Set by SIGINT while a job is followed. */
static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
	(void)sig;
	interrupted = 1;
}

static const char *jstr(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s ? s : "";
}

static uint64_t jnum(json_t *o, const char *key)
{
	json_int_t v = json_integer_value(json_object_get(o, key));
	return v > 0 ? (uint64_t)v : 0;
}

static bool job_ended(json_t *job)
{
	const char *st = jstr(job, "state");
	return strcmp(st, "queued") && strcmp(st, "running");
}

/* "saving memory  45%  12M/26M  8.1M/s" */
static void progress_text(json_t *job, char *buf, size_t len)
{
	uint64_t done = jnum(job, "done"), total = jnum(job, "total");
	double rate = json_number_value(json_object_get(job, "rate"));
	char a[16], b[16], r[16];
	const char *phase = jstr(job, "phase");
	if (!strcmp(jstr(job, "state"), "queued"))
		snprintf(buf, len, "queued (another operation on %s is running)", jstr(job, "guest"));
	else if (total)
		snprintf(buf, len, "%-14s %3d%%  %s/%s  %s/s", phase,
			 (int)(done * 100 / total), fmt_size(done, a, sizeof(a)),
			 fmt_size(total, b, sizeof(b)), fmt_size((uint64_t)rate, r, sizeof(r)));
	else
		snprintf(buf, len, "%s", phase[0] ? phase : "running");
}

static void draw_bar(json_t *job)
{
	uint64_t done = jnum(job, "done"), total = jnum(job, "total");
	int fill = total ? (int)(done * BAR_WIDTH / total) : 0;
	char bar[BAR_WIDTH + 1], text[160];
	for (int i = 0; i < BAR_WIDTH; i++)
		bar[i] = i < fill ? '#' : '.';
	bar[BAR_WIDTH] = 0;
	progress_text(job, text, sizeof(text));
	printf("\r\033[K[%s] %s", bar, text);
	fflush(stdout);
}

/* One line per phase and about every tenth of the way. */
static void plain_line(json_t *job, char *last_phase, size_t len, int *last_tenth)
{
	uint64_t done = jnum(job, "done"), total = jnum(job, "total");
	int tenth = total ? (int)(done * 10 / total) : 0;
	const char *phase = jstr(job, "phase");
	if (!strcmp(phase, last_phase) && tenth == *last_tenth)
		return;
	snprintf(last_phase, len, "%s", phase);
	*last_tenth = tenth;
	char text[160];
	progress_text(job, text, sizeof(text));
	printf("%s\n", text);
	fflush(stdout);
}

/* The last line: what ran, how it ended, how long it took. 0 when it
 * completed. */
static int final_line(json_t *job)
{
	const char *st = jstr(job, "state");
	int64_t ms = json_integer_value(json_object_get(job, "ended_ms")) -
		     json_integer_value(json_object_get(job, "started_ms"));
	if (!json_integer_value(json_object_get(job, "started_ms")))
		ms = 0;
	char what[200];
	snprintf(what, sizeof(what), "job %lld %s of %s", (long long)jnum(job, "id"),
		 jstr(job, "type"), jstr(job, "guest"));
	if (!strcmp(st, "completed")) {
		char a[16];
		printf("%s: completed in %.1f s", what, (double)ms / 1000.0);
		if (jnum(job, "total"))
			printf(" (last phase: %s, %s)", jstr(job, "phase"),
			       fmt_size(jnum(job, "total"), a, sizeof(a)));
		printf("\n");
		return 0;
	}
	kvz_error("%s: %s: %s", what, st, jstr(job, "error"));
	return 1;
}

static int cancel_id(long long id, json_t **out)
{
	char path[64];
	snprintf(path, sizeof(path), "/v1/jobs/%lld/cancel", id);
	return http_call("POST", path, NULL, out);
}

int follow_job(json_t *job)
{
	long long id = (long long)jnum(job, "id");
	bool tty = !cli_json && isatty(STDOUT_FILENO);
	char last_phase[64] = "\001", path[64];
	int last_tenth = -1;
	bool cancel_sent = false;
	struct sigaction sa = {.sa_handler = on_sigint}, old;
	sigaction(SIGINT, &sa, &old);
	snprintf(path, sizeof(path), "/v1/jobs/%lld", id);
	json_incref(job);
	char *last_json = NULL;
	for (;;) {
		if (cli_json) {
			char *text = json_dumps(job, JSON_COMPACT | JSON_SORT_KEYS);
			if (text && (!last_json || strcmp(text, last_json)))
				printf("%s\n", text);
			fflush(stdout);
			free(last_json);
			last_json = text;
		} else if (tty) {
			draw_bar(job);
		} else {
			plain_line(job, last_phase, sizeof(last_phase), &last_tenth);
		}
		if (job_ended(job))
			break;
		if (interrupted && !cancel_sent) {
			cancel_sent = true;
			if (!cli_json)
				printf("%scancelling job %lld\n", tty ? "\n" : "", id);
			cancel_id(id, NULL);
		}
		struct timespec ts = {0, POLL_MS * 1000000L};
		nanosleep(&ts, NULL);
		json_t *next = NULL;
		if (http_call("GET", path, NULL, &next)) {
			json_decref(job);
			free(last_json);
			sigaction(SIGINT, &old, NULL);
			return 1;
		}
		json_decref(job);
		job = next;
	}
	sigaction(SIGINT, &old, NULL);
	free(last_json);
	if (tty)
		printf("\n");
	int rc = cli_json ? (strcmp(jstr(job, "state"), "completed") != 0) : final_line(job);
	json_decref(job);
	return rc;
}

static void print_job_table(json_t *list)
{
	printf("%-6s %-18s %-16s %-10s %-28s %s\n", "ID", "TYPE", "GUEST", "STATE", "PROGRESS",
	       "STARTED (UTC)");
	size_t i;
	json_t *j;
	json_array_foreach(list, i, j) {
		char text[160], t[32] = "-";
		progress_text(j, text, sizeof(text));
		if (job_ended(j))
			snprintf(text, sizeof(text), "%s", jstr(j, "error")[0] ? jstr(j, "error") : "-");
		if (json_integer_value(json_object_get(j, "started_ms")))
			fmt_time(json_integer_value(json_object_get(j, "started_ms")), t, sizeof(t));
		printf("%-6lld %-18s %-16s %-10s %-28.60s %s\n", (long long)jnum(j, "id"),
		       jstr(j, "type"), jstr(j, "guest"), jstr(j, "state"), text, t);
	}
}

static int job_usage(void)
{
	kvz_error("usage: kvz job list [--guest NAME] | show ID | cancel ID | wait ID");
	return 2;
}

static bool parse_id(const char *s, long long *id)
{
	uint64_t v;
	if (!kvz_parse_u64(s, 1, INT64_MAX, &v)) {
		kvz_error("bad job id \"%s\" (a number from 1)", s);
		return false;
	}
	*id = (long long)v;
	return true;
}

static int job_list(int argc, char **argv)
{
	const char *guest = NULL;
	if (argc == 3 && !strcmp(argv[1], "--guest") && name_ok(argv[2]))
		guest = argv[2];
	else if (argc != 1)
		return job_usage();
	char path[128];
	snprintf(path, sizeof(path), "/v1/jobs%s%s", guest ? "?guest=" : "", guest ? guest : "");
	json_t *list = NULL;
	if (http_call("GET", path, NULL, &list))
		return 1;
	if (cli_json)
		print_json(list);
	else
		print_job_table(list);
	json_decref(list);
	return 0;
}

int cmd_job(int argc, char **argv)
{
	if (argc < 2)
		return job_usage();
	if (!strcmp(argv[1], "list"))
		return job_list(argc - 1, argv + 1);
	long long id;
	if (argc != 3 || !parse_id(argv[2], &id))
		return argc == 3 ? 2 : job_usage();
	char path[64];
	snprintf(path, sizeof(path), "/v1/jobs/%lld", id);
	json_t *job = NULL;
	int rc = 0;
	if (!strcmp(argv[1], "show")) {
		rc = http_call("GET", path, NULL, &job) ? 1 : 0;
		if (!rc)
			print_json(job);
	} else if (!strcmp(argv[1], "cancel")) {
		rc = cancel_id(id, &job) ? 1 : 0;
		if (!rc && cli_json)
			print_json(job);
		else if (!rc)
			printf("job %lld: cancel requested\n", id);
	} else if (!strcmp(argv[1], "wait")) {
		rc = http_call("GET", path, NULL, &job) ? 1 : follow_job(job);
	} else {
		rc = job_usage();
	}
	json_decref(job);
	return rc;
}

/* Takes --detach out of argv. */
bool job_take_detach(int *argc, char **argv)
{
	bool detach = false;
	int out = 0;
	for (int i = 0; i < *argc; i++) {
		if (!strcmp(argv[i], "--detach"))
			detach = true;
		else
			argv[out++] = argv[i];
	}
	*argc = out;
	return detach;
}

/* A job was submitted: follow it, or print its id and return. */
int job_submitted(json_t *job, bool detach)
{
	if (!detach) {
		int rc = follow_job(job);
		json_decref(job);
		return rc;
	}
	if (cli_json)
		print_json(job);
	else
		printf("job %lld\n", (long long)json_integer_value(json_object_get(job, "id")));
	json_decref(job);
	return 0;
}
