/* Usage views: kvz stats (series of one guest or the host), kvz top (live
 * table), kvz host (host totals). */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "http.h"
#include "log.h"
#include "parse.h"

static void print_sample_row(json_t *s)
{
	char t[32], mu[16], ml[16], du[16], rx[16], tx[16];
	printf("%-19s %6.1f %8s %8s %8s %8s %8s\n",
	       fmt_time(json_integer_value(json_object_get(s, "ts_ms")), t, sizeof(t)),
	       json_number_value(json_object_get(s, "cpu_pct")),
	       fmt_size((uint64_t)json_integer_value(json_object_get(s, "mem_used")), mu, sizeof(mu)),
	       fmt_size((uint64_t)json_integer_value(json_object_get(s, "mem_limit")), ml, sizeof(ml)),
	       fmt_size((uint64_t)json_integer_value(json_object_get(s, "disk_used")), du, sizeof(du)),
	       fmt_size((uint64_t)json_integer_value(json_object_get(s, "net_rx")), rx, sizeof(rx)),
	       fmt_size((uint64_t)json_integer_value(json_object_get(s, "net_tx")), tx, sizeof(tx)));
}

static void print_stats(json_t *st, int rows)
{
	json_t *samples = json_object_get(st, "samples");
	size_t n = json_array_size(samples);
	double sum = 0, max = 0;
	size_t i;
	json_t *s;
	json_array_foreach(samples, i, s) {
		double c = json_number_value(json_object_get(s, "cpu_pct"));
		sum += c;
		if (c > max)
			max = c;
	}
	printf("%s: %zu samples at %s resolution", json_string_value(json_object_get(st, "name")),
	       n, json_integer_value(json_object_get(st, "resolution_s")) ? "1-minute" : "full");
	if (n)
		printf("; CPU %% average %.1f, peak %.1f", sum / (double)n, max);
	printf("\n%-19s %6s %8s %8s %8s %8s %8s\n", "TIME (UTC)", "CPU%", "MEM", "LIMIT",
	       "DISK", "NET-RX", "NET-TX");
	for (i = n > (size_t)rows ? n - (size_t)rows : 0; i < n; i++)
		print_sample_row(json_array_get(samples, i));
}

int cmd_stats(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"range", required_argument, NULL, 'r'}, {"rows", required_argument, NULL, 'n'},
		{"host", no_argument, NULL, 'H'}, {NULL, 0, NULL, 0},
	};
	const char *range = "1h";
	uint64_t rows = 20;
	bool host = false;
	int c;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (c == 'r' && (!strcmp(optarg, "1h") || !strcmp(optarg, "24h"))) {
			range = optarg;
		} else if (c == 'n' && kvz_parse_u64(optarg, 1, 100000, &rows)) {
		} else if (c == 'H') {
			host = true;
		} else {
			kvz_error("usage: kvz stats NAME|--host [--range 1h|24h] [--rows N]");
			return 2;
		}
	}
	if (host == (argc - optind == 1) || argc - optind > 1) {
		kvz_error("usage: kvz stats NAME|--host [--range 1h|24h] [--rows N]");
		return 2;
	}
	char path[160];
	if (host) {
		snprintf(path, sizeof(path), "/v1/host/stats?range=%s", range);
	} else {
		if (!name_ok(argv[optind]))
			return 1;
		snprintf(path, sizeof(path), "/v1/guests/%s/stats?range=%s", argv[optind], range);
	}
	json_t *st = NULL;
	if (http_call("GET", path, NULL, &st))
		return 1;
	if (cli_json)
		print_json(st);
	else
		print_stats(st, (int)rows);
	json_decref(st);
	return 0;
}

static void print_host_line(json_t *h)
{
	json_t *u = json_object_get(h, "usage");
	char mu[16], mt[16], ma[16];
	printf("kvzd %s: %lld guests, %d CPUs, host CPU %.1f%%, memory %s used of %s (%s available)\n",
	       json_string_value(json_object_get(h, "version")),
	       (long long)json_integer_value(json_object_get(h, "guests")),
	       (int)json_integer_value(json_object_get(h, "cpus")),
	       json_number_value(json_object_get(u, "cpu_pct")),
	       fmt_size((uint64_t)json_integer_value(json_object_get(u, "mem_used")), mu, sizeof(mu)),
	       fmt_size((uint64_t)json_integer_value(json_object_get(h, "mem_total")), mt, sizeof(mt)),
	       fmt_size((uint64_t)json_integer_value(json_object_get(h, "mem_available")), ma, sizeof(ma)));
}

int cmd_host(int argc, char **argv)
{
	(void)argv;
	if (argc != 1) {
		kvz_error("usage: kvz host");
		return 2;
	}
	json_t *h = NULL;
	if (http_call("GET", "/v1/host", NULL, &h))
		return 1;
	if (cli_json)
		print_json(h);
	else
		print_host_line(h);
	json_decref(h);
	return 0;
}

int cmd_top(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"interval", required_argument, NULL, 'i'}, {"iterations", required_argument, NULL, 'n'},
		{NULL, 0, NULL, 0},
	};
	uint64_t interval = 2, iterations = 0;
	int c;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (c == 'i' && kvz_parse_u64(optarg, 1, 3600, &interval))
			continue;
		if (c == 'n' && kvz_parse_u64(optarg, 1, UINT32_MAX, &iterations))
			continue;
		kvz_error("usage: kvz top [--interval SEC] [--iterations N]");
		return 2;
	}
	bool tty = isatty(1);
	for (uint64_t i = 0; !iterations || i < iterations; i++) {
		if (i)
			sleep((unsigned)interval);
		json_t *h = NULL, *list = NULL;
		if (http_call("GET", "/v1/host", NULL, &h) ||
		    http_call("GET", "/v1/guests", NULL, &list)) {
			json_decref(h);
			return 1;
		}
		if (cli_json) {
			json_t *o = json_pack("{s:o, s:o}", "host", h, "guests", list);
			json_dumpf(o, stdout, JSON_COMPACT);
			putchar('\n');
			json_decref(o);
		} else {
			/* Home and clear: redraw in place like top. */
			if (tty)
				fputs("\033[H\033[2J", stdout);
			print_host_line(h);
			putchar('\n');
			print_guest_table(list);
			json_decref(h);
			json_decref(list);
		}
		fflush(stdout);
	}
	return 0;
}
