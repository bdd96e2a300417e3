/* Guest lifecycle subcommands: create, start, stop, destroy, set, list,
 * show. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "disk_opts.h"
#include "http.h"
#include "log.h"
#include "parse.h"

/* Cuts argv at "--": returns the index of the first word after it (argc
 * when there is none) and shortens *argc to the words before it. */
static int split_dashdash(int *argc, char **argv)
{
	for (int i = 1; i < *argc; i++)
		if (!strcmp(argv[i], "--")) {
			int rest = i + 1;
			argv[i] = NULL;
			int total = *argc;
			*argc = i;
			return rest < total ? rest : total;
		}
	return *argc;
}

static int print_guest_or_ok(json_t *g, const char *verb)
{
	if (cli_json)
		print_json(g);
	else
		printf("%s %s (%s)\n", json_string_value(json_object_get(g, "name")), verb,
		       json_string_value(json_object_get(g, "state")));
	return 0;
}

static int print_created(const char *name)
{
	json_t *g = get_guest(name);
	if (!g)
		return 1;
	print_guest_or_ok(g, "created");
	json_decref(g);
	return 0;
}

/* Validates and stores a size so that typos fail here with a clear line,
 * not after a round trip. */
static int put_size(json_t *req, const char *key, const char *opt, const char *v, bool pair)
{
	uint64_t a, b;
	if (pair ? !kvz_parse_size_pair(v, &a, &b) : !kvz_parse_size(v, &a)) {
		kvz_error("%s: bad size \"%s\"%s", opt, v, pair ? " (SIZE or SOFT:HARD, e.g. 512M:1G)" : " (e.g. 4G)");
		return -1;
	}
	json_object_set_new(req, key, json_string(v));
	return 0;
}

static int put_cpus(json_t *req, const char *v)
{
	double c;
	if (!kvz_parse_cpus(v, &c)) {
		kvz_error("--cpus: bad value \"%s\" (e.g. 0.5 or 2)", v);
		return -1;
	}
	json_object_set_new(req, "cpus", json_real(c));
	return 0;
}

static int put_abs_path(json_t *req, const char *key, const char *v)
{
	char abs[PATH_MAX];
	if (!realpath(v, abs)) {
		kvz_error("--%s %s: no such file", key, v);
		return -1;
	}
	json_object_set_new(req, key, json_string(abs));
	return 0;
}

/* A credential from a file of the user's, sent as text: kvzd reads no
 * file a client names (its only paths are beneath --images-dir). Trailing
 * newlines go; a password is its file's first line. */
static int put_file_text(json_t *req, const char *key, const char *opt, const char *path)
{
	FILE *f = fopen(path, "re");
	char buf[16385];
	size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
	bool more = f && fgetc(f) != EOF;
	if (f)
		fclose(f);
	if (!f || !n || more) {
		kvz_error("%s %s: %s", opt, path, !f ? strerror(errno) : !n ? "empty" : "over 16 KiB");
		return -1;
	}
	buf[n] = 0;
	if (!strcmp(key, "root_password"))
		buf[strcspn(buf, "\n")] = 0;
	while (n && buf[n - 1] == '\n')
		buf[--n] = 0;
	json_object_set_new(req, key, json_string(buf));
	explicit_bzero(buf, sizeof(buf));
	return 0;
}

/* Appends v to the request's array `key`, made on first use: the options
 * given again for more (--device, --tag). */
static void append_string(json_t *req, const char *key, const char *v)
{
	json_t *a = json_object_get(req, key);
	if (!a) {
		a = json_array();
		json_object_set_new(req, key, a);
	}
	json_array_append_new(a, json_string(v));
}

/* --device PATH[:rwm], repeatable; kvzd checks the node. */
static int put_device(json_t *req, const char *v)
{
	append_string(req, "devices", v);
	return 0;
}

/* --seccomp default|off|FILE: a FILE is made absolute for kvzd. */
static int put_seccomp(json_t *req, const char *v)
{
	if (!strcmp(v, "default") || !strcmp(v, "off")) {
		json_object_set_new(req, "seccomp", json_string(v));
		return 0;
	}
	return put_abs_path(req, "seccomp", v);
}

/* --net bridge=BR[,mac=MAC] */
static int put_net(json_t *req, const char *v)
{
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", v);
	for (char *save, *kv = strtok_r(buf, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(kv, '=');
		if (!eq || (strncmp(kv, "bridge=", 7) && strncmp(kv, "mac=", 4))) {
			kvz_error("--net: want bridge=BR[,mac=MAC], got \"%s\"", v);
			return -1;
		}
		*eq = 0;
		json_object_set_new(req, kv, json_string(eq + 1));
	}
	return 0;
}

/* --tag T, given again for more: the list kvzd checks (docs/api.md). */
static void add_tag(json_t *req, const char *tag)
{
	append_string(req, "tags", tag);
}

int cmd_create(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"template", required_argument, NULL, 't'}, {"memory", required_argument, NULL, 'm'},
		{"cpus", required_argument, NULL, 'c'}, {"disk", required_argument, NULL, 'd'},
		{"disk-mode", required_argument, NULL, 'D'}, {"pids", required_argument, NULL, 'p'},
		{"ip", required_argument, NULL, 'i'}, {"gw", required_argument, NULL, 'g'},
		{"bridge", required_argument, NULL, 'b'}, {"net", required_argument, NULL, 'n'},
		{"kernel", required_argument, NULL, 'k'}, {"initrd", required_argument, NULL, 'r'},
		{"cmdline", required_argument, NULL, 'l'}, {"no-balloon", no_argument, NULL, 'B'},
		{"autostart", no_argument, NULL, 'a'}, {"privileged", no_argument, NULL, 'P'},
		{"tag", required_argument, NULL, 'G'},
		{"device", required_argument, NULL, 'v'}, {"seccomp", required_argument, NULL, 's'},
		{"no-new-privs", no_argument, NULL, 'N'},
		{"import", required_argument, NULL, 'I'}, {"ssh-key", required_argument, NULL, 'K'},
		{"root-password-file", required_argument, NULL, 'W'},
		{"hostname", required_argument, NULL, 'H'}, {"boot", required_argument, NULL, 'O'},
		{"disk-format", required_argument, NULL, 'F'}, {"disk-base", required_argument, NULL, 'Z'},
		{"preallocate", no_argument, NULL, 'A'}, {"cdrom", required_argument, NULL, 'C'},
		{NULL, 0, NULL, 0},
	};
	int cmd_at = split_dashdash(&argc, argv);
	int total = cmd_at;
	for (int i = cmd_at; argv[i]; i++)
		total = i + 1;
	json_t *req = json_object(), *disks = json_array(), *spec;
	int c, rc = 1;
	uint64_t pids;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		int bad = 0;
		switch (c) {
		case 't': json_object_set_new(req, "template", json_string(optarg)); break;
		case 'm': bad = put_size(req, "memory", "--memory", optarg, true); break;
		case 'c': bad = put_cpus(req, optarg); break;
		case 'd':
			bad = disk_spec_parse("--disk", optarg, &spec);
			if (!bad)
				json_array_append_new(disks, spec);
			break;
		case 'D': json_object_set_new(req, "disk_mode", json_string(optarg)); break;
		case 'p':
			if (!(kvz_parse_u64(optarg, 1, 1 << 22, &pids))) {
				kvz_error("--pids: bad number \"%s\"", optarg);
				bad = 1;
			} else {
				json_object_set_new(req, "pids", json_integer((json_int_t)pids));
			}
			break;
		case 'i': json_object_set_new(req, "ip", json_string(optarg)); break;
		case 'g': json_object_set_new(req, "gw", json_string(optarg)); break;
		case 'b': json_object_set_new(req, "bridge", json_string(optarg)); break;
		case 'n': bad = put_net(req, optarg); break;
		case 'k': bad = put_abs_path(req, "kernel", optarg); break;
		case 'r': bad = put_abs_path(req, "initrd", optarg); break;
		case 'l': json_object_set_new(req, "cmdline", json_string(optarg)); break;
		case 'B': json_object_set_new(req, "balloon", json_false()); break;
		case 'a': json_object_set_new(req, "autostart", json_true()); break;
		case 'G': add_tag(req, optarg); break;
		case 'P': json_object_set_new(req, "privileged", json_true()); break;
		case 'v': bad = put_device(req, optarg); break;
		case 's': bad = put_seccomp(req, optarg); break;
		case 'N': json_object_set_new(req, "no_new_privs", json_true()); break;
		case 'I': bad = put_abs_path(req, "import", optarg); break;
		case 'K': bad = put_file_text(req, "ssh_key", "--ssh-key", optarg); break;
		case 'W': bad = put_file_text(req, "root_password", "--root-password-file", optarg); break;
		case 'H': json_object_set_new(req, "hostname", json_string(optarg)); break;
		case 'O': json_object_set_new(req, "boot", json_string(optarg)); break;
		case 'F': json_object_set_new(req, "disk_format", json_string(optarg)); break;
		case 'Z': bad = put_abs_path(req, "disk_base", optarg); break;
		case 'A': json_object_set_new(req, "disk_mode", json_string("fixed")); break;
		case 'C': bad = put_abs_path(req, "cdrom", optarg); break;
		default: bad = 1;
		}
		if (bad)
			goto out;
	}
	if (argc - optind != 2 || (strcmp(argv[optind], "ct") && strcmp(argv[optind], "vm"))) {
		kvz_error("usage: kvz create ct|vm NAME [options] [-- CMD ARGS (containers)]");
		goto out;
	}
	if (disks_finish(req, disks))
		goto out;
	const char *type = argv[optind];
	if (!name_ok(argv[optind + 1]))
		goto out;
	json_object_set_new(req, "type", json_string(type));
	json_object_set_new(req, "name", json_string(argv[optind + 1]));
	if (cmd_at < total) {
		if (strcmp(type, "ct")) {
			kvz_error("a command after -- is for containers (a VM runs its kernel)");
			goto out;
		}
		json_t *cmd = json_array();
		for (int i = cmd_at; i < total; i++)
			json_array_append_new(cmd, json_string(argv[i]));
		json_object_set_new(req, "command", cmd);
	}
	json_t *g = NULL;
	if (http_call("POST", "/v1/guests", req, &g) == 0) {
		/* A template or an import answers with the job making the disk. */
		if (json_is_string(json_object_get(g, "type")) && json_object_get(g, "id") &&
		    !json_object_get(g, "name"))
			rc = follow_job(g) ? 1 : print_created(argv[optind + 1]);
		else
			rc = print_guest_or_ok(g, "created");
		json_decref(g);
	}
out:
	json_decref(req);
	json_decref(disks);
	return rc;
}

static int one_name(int argc, char **argv, const char *usage)
{
	if (argc != 2) {
		kvz_error("usage: kvz %s", usage);
		return -1;
	}
	return name_ok(argv[1]) ? 0 : -1;
}

int cmd_start(int argc, char **argv)
{
	if (one_name(argc, argv, "start NAME"))
		return 1;
	char path[128];
	snprintf(path, sizeof(path), "/v1/guests/%s/start", argv[1]);
	json_t *g = NULL;
	if (http_call("POST", path, NULL, &g))
		return 1;
	print_guest_or_ok(g, "started");
	json_decref(g);
	return 0;
}

int cmd_stop(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"timeout", required_argument, NULL, 't'}, {"force", no_argument, NULL, 'f'},
		{NULL, 0, NULL, 0},
	};
	json_t *req = json_object();
	int c;
	uint64_t t;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (c == 't' && kvz_parse_u64(optarg, 0, 3600, &t)) {
			json_object_set_new(req, "timeout", json_integer((json_int_t)t));
		} else if (c == 'f') {
			json_object_set_new(req, "force", json_true());
		} else {
			if (c == 't')
				kvz_error("--timeout: want 0..3600 seconds, got \"%s\"", optarg);
			json_decref(req);
			return 1;
		}
	}
	if (argc - optind != 1 || !name_ok(argv[optind])) {
		if (argc - optind != 1)
			kvz_error("usage: kvz stop NAME [--timeout SEC] [--force]");
		json_decref(req);
		return 1;
	}
	char path[128];
	snprintf(path, sizeof(path), "/v1/guests/%s/stop", argv[optind]);
	json_t *g = NULL;
	int rc = http_call("POST", path, req, &g);
	json_decref(req);
	if (rc)
		return 1;
	print_guest_or_ok(g, "stopped");
	json_decref(g);
	return 0;
}

int cmd_destroy(int argc, char **argv)
{
	bool force = false;
	const char *name = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--force") || !strcmp(argv[i], "-f"))
			force = true;
		else if (!name && argv[i][0] != '-')
			name = argv[i];
		else {
			kvz_error("usage: kvz destroy NAME [--force]");
			return 1;
		}
	}
	if (!name) {
		kvz_error("usage: kvz destroy NAME [--force]");
		return 1;
	}
	if (!name_ok(name))
		return 1;
	char path[160];
	snprintf(path, sizeof(path), "/v1/guests/%s%s", name, force ? "?force=1" : "");
	json_t *r = NULL;
	if (http_call("DELETE", path, NULL, &r))
		return 1;
	if (cli_json)
		print_json(r);
	else
		printf("%s destroyed\n", name);
	json_decref(r);
	return 0;
}

int cmd_set(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"memory", required_argument, NULL, 'm'}, {"cpus", required_argument, NULL, 'c'},
		{"pids", required_argument, NULL, 'p'}, {"disk", required_argument, NULL, 'd'},
		{"ha", no_argument, NULL, 'H'}, {"no-ha", no_argument, NULL, 'N'},
		{"tag", required_argument, NULL, 'G'}, {"no-tags", no_argument, NULL, 'T'},
		{"boot", required_argument, NULL, 'O'}, {"cdrom", required_argument, NULL, 'C'},
		{"eject", no_argument, NULL, 'E'}, {"force", no_argument, NULL, 'f'},
		{"add-disk", required_argument, NULL, 'a'}, {"remove-disk", required_argument, NULL, 'r'},
		{NULL, 0, NULL, 0},
	};
	json_t *req = json_object(), *spec;
	int c, rc = 1, ha = -1;
	uint64_t pids, n;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		int bad = 0;
		switch (c) {
		case 'm': bad = put_size(req, "memory", "--memory", optarg, true); break;
		case 'c': bad = put_cpus(req, optarg); break;
		case 'd': bad = disk_grow_arg(req, optarg); break;
		case 'a':
			bad = disk_spec_parse("--add-disk", optarg, &spec);
			if (!bad)
				json_object_set_new(req, "add_disk", spec);
			break;
		case 'r':
			bad = !kvz_parse_u64(optarg, 0, 63, &n);
			if (bad)
				kvz_error("--remove-disk: bad disk number \"%s\" (1 for the second disk)", optarg);
			else
				json_object_set_new(req, "remove_disk", json_integer((json_int_t)n));
			break;
		case 'f': json_object_set_new(req, "force", json_true()); break;
		case 'p':
			if (!kvz_parse_u64(optarg, 1, 1 << 22, &pids)) {
				kvz_error("--pids: bad number \"%s\"", optarg);
				bad = 1;
			} else {
				json_object_set_new(req, "pids", json_integer((json_int_t)pids));
			}
			break;
		case 'H': ha = 1; break;
		case 'N': ha = 0; break;
		case 'G': add_tag(req, optarg); break;
		case 'T': json_object_set_new(req, "tags", json_array()); break;
		case 'O': json_object_set_new(req, "boot", json_string(optarg)); break;
		case 'C': bad = put_abs_path(req, "cdrom", optarg); break;
		case 'E': json_object_set_new(req, "cdrom", json_null()); break;
		default: bad = 1;
		}
		if (bad)
			goto out;
	}
	/* HA is the cluster record's, set on its own (kvzd takes {"ha"} alone). */
	if (ha >= 0 && json_object_size(req)) {
		kvz_error("--ha/--no-ha go alone, without resource changes");
		goto out;
	}
	if (ha >= 0)
		json_object_set_new(req, "ha", json_boolean(ha));
	if (argc - optind != 1 || !json_object_size(req)) {
		kvz_error("usage: kvz set NAME [--memory SIZE|SOFT:HARD] [--cpus N] [--pids N] [--disk [N:]SIZE] [--add-disk SIZE[,format=F] | --remove-disk N] [--tag T]... [--no-tags] [--boot direct|firmware|disk|cdrom] [--cdrom ISO | --eject [--force]] | --ha | --no-ha");
		goto out;
	}
	if (!name_ok(argv[optind]))
		goto out;
	char path[128];
	snprintf(path, sizeof(path), "/v1/guests/%s", argv[optind]);
	json_t *g = NULL;
	if (http_call("PATCH", path, req, &g) == 0) {
		rc = print_guest_or_ok(g, "updated");
		json_decref(g);
	}
out:
	json_decref(req);
	return rc;
}

/* kvz list --all: every guest of the cluster and its owner. */
static void print_cluster_guests(json_t *list)
{
	printf("%-20s %-4s %-16s %-11s %-3s %s\n", "NAME", "TYPE", "NODE", "STATE", "HA", "MOVES");
	size_t i;
	json_t *g;
	json_array_foreach(list, i, g) {
		const char *type = json_string_value(json_object_get(g, "type"));
		printf("%-20s %-4s %-16s %-11s %-3s %lld\n", json_string_value(json_object_get(g, "name")),
		       type ? type : "-", json_string_value(json_object_get(g, "owner")) ?: "?",
		       json_string_value(json_object_get(g, "state")) ?: "?",
		       json_is_true(json_object_get(g, "ha")) ? "yes" : "no",
		       (long long)json_integer_value(json_object_get(g, "relocations")));
	}
}

int cmd_list(int argc, char **argv)
{
	bool all = argc == 2 && !strcmp(argv[1], "--all");
	if (argc != 1 && !all) {
		kvz_error("usage: kvz list [--all] [--json]");
		return 1;
	}
	json_t *list = NULL;
	if (http_call("GET", all ? "/v1/guests?all=1" : "/v1/guests", NULL, &list))
		return 1;
	if (cli_json)
		print_json(list);
	else if (all)
		print_cluster_guests(list);
	else
		print_guest_table(list);
	json_decref(list);
	return 0;
}

int cmd_show(int argc, char **argv)
{
	if (one_name(argc, argv, "show NAME"))
		return 1;
	json_t *g = get_guest(argv[1]);
	if (!g)
		return 1;
	/* Detail is structured: JSON reads best either way. */
	print_json(g);
	json_decref(g);
	return 0;
}
