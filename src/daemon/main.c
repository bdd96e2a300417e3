/* kvzd: the kvz host daemon. Parses options, prepares the state and run
 * directories, opens the store, re-adopts running guests, starts the reaper,
 * monitor and API, then waits for SIGTERM/SIGINT. Guests keep running when
 * kvzd exits. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "cgroup_leaf.h"
#include "guest_ops.h"
#include "image_dirs.h"
#include "jobs.h"
#include "kvzd.h"
#include "log.h"
#include "migration.h"
#include "monitor.h"
#include "policy_engine.h"
#include "parse.h"
#include "peer_client.h"
#include "qmp_watch.h"
#include "backups.h"
#include "node_health.h"
#include "snapshots.h"
#include "vm_create.h"
#include "store.h"
#include "supervisor.h"
#include "token_file.h"
#include "cluster_options.h"
#include "web_routes.h"

int64_t kvzd_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: kvzd [--state-dir DIR] [--socket PATH] [--run-dir DIR]\n"
		"            [--listen ADDR:PORT --token-file FILE] [--vmm PATH] [--ct PATH]\n"
		"            [--sample-interval SEC] [--max-connections N] [--max-connections-per-ip N]\n"
		"            [--idle-timeout SEC] [--images-dir DIR]... [--disk-overcommit RATIO]\n"
		"            [--tls] [--tls-cert FILE --tls-key FILE] [--web-dir DIR]\n"
		"            [--session-idle SEC] [--policy-cap N] [--verbose]\n"
		"  --state-dir DIR        store, images, container roots, logs (/var/lib/kvz)\n"
		"  --socket PATH          API UNIX socket (/run/kvz/kvzd.sock)\n"
		"  --run-dir DIR          supervisor sockets (/run/kvz)\n"
		"  --listen ADDR:PORT     also serve the API on TCP, bearer token required\n"
		"  --token-file FILE      file holding that token (mode 0600, owned by root or kvzd's user)\n"
		"  --tls                  HTTPS on --listen, with a self-signed certificate made at\n"
		"                         first start in STATE/tls/ unless --tls-cert/--tls-key\n"
		"  --tls-cert FILE, --tls-key FILE  PEM certificate and key to serve (imply --tls)\n"
		"  --web-dir DIR          the web UI's built assets (default: beside kvzd)\n"
		"  --session-idle SEC     a web UI session ends after SEC unused (1800)\n"
		"  --vmm PATH, --ct PATH  kvz-vmm and kvz-ct (default: next to kvzd, then PATH)\n"
		"  --sample-interval SEC  monitor sampling period (5)\n"
		"  --max-connections N    connections at once, per listener (128)\n"
		"  --max-connections-per-ip N  TCP connections at once from one address (16)\n"
		"  --idle-timeout SEC     TCP: time to send a complete request header, after\n"
		"                         connecting or after the previous response (5)\n"
		"  --images-dir DIR       kernels and initrds API clients may use lie beneath DIR\n"
		"                         (repeatable; default STATE/images, /var/lib/kvz/images, /boot)\n"
		"  --disk-overcommit RATIO  guest disks on a filesystem may promise RATIO times\n"
		"                         its free space (1: no overcommit)\n"
		"  --policy-cap N         policy actions carried out per minute, all rules (30; 0: no cap)\n"
		CLUSTER_USAGE);
}

/* mkdir -p with mode for the last component. */
static int make_dir(const char *path, mode_t mode)
{
	char tmp[512];
	snprintf(tmp, sizeof(tmp), "%s", path);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	if (mkdir(tmp, mode) < 0 && errno != EEXIST)
		return -1;
	return 0;
}

static int prepare_dirs(struct kvzd *d)
{
	const char *subs[][2] = {
		{d->state_dir, ""}, {d->state_dir, "/images"}, {d->state_dir, "/logs"},
		{d->state_dir, "/ct"}, {d->run_dir, ""},
		{d->run_dir, "/vm"}, {d->run_dir, "/ct"},
	};
	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
		char p[512];
		snprintf(p, sizeof(p), "%s%s", subs[i][0], subs[i][1]);
		if (make_dir(p, 0750) < 0) {
			kvz_error("cannot create %s: %s", p, strerror(errno));
			return -1;
		}
	}
	char sockdir[256];
	snprintf(sockdir, sizeof(sockdir), "%s", d->socket_path);
	if (make_dir(dirname(sockdir), 0755) < 0) {
		kvz_error("cannot create the directory of %s: %s", d->socket_path, strerror(errno));
		return -1;
	}
	return 0;
}

/* A supervisor binary: the option if given, else beside kvzd (the build
 * tree puts kvzd in src/daemon and the others in src/vmm and src/ct; an
 * install puts them all in one bin directory), else on PATH. */
static int find_bin(const char *opt, const char *env, const char *sibling,
		    const char *prog, char *out, size_t len)
{
	const char *v = opt ? opt : getenv(env);
	if (v) {
		if (realpath(v, out) == NULL) {
			kvz_error("%s: %s", v, strerror(errno));
			return -1;
		}
		return 0;
	}
	char self[512];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = 0;
		char *dir = dirname(self);
		char cand[700];
		snprintf(cand, sizeof(cand), "%s/%s", dir, sibling);
		if (access(cand, X_OK) == 0 && realpath(cand, out))
			return 0;
		snprintf(cand, sizeof(cand), "%s/%s", dir, prog);
		if (access(cand, X_OK) == 0 && realpath(cand, out))
			return 0;
	}
	const char *path = getenv("PATH");
	char buf[1024];
	snprintf(buf, sizeof(buf), "%s", path ? path : "/usr/local/bin:/usr/bin:/bin");
	for (char *save, *p = strtok_r(buf, ":", &save); p; p = strtok_r(NULL, ":", &save)) {
		char cand[700];
		snprintf(cand, sizeof(cand), "%s/%s", p, prog);
		if (access(cand, X_OK) == 0) {
			if (!realpath(cand, out))
				continue;
			return 0;
		}
	}
	/* Not fatal: kvzd still serves guests of the other kind. */
	snprintf(out, len, "/usr/local/bin/%s", prog);
	kvz_warn("%s not found; starting such guests will fail until it is installed", prog);
	return 0;
}

struct options {
	const char *tcp, *token_file, *vmm, *ct;
	const char *images_dirs[IMAGE_DIRS_MAX];
	size_t nimages;
	struct api_limits limits;
	struct web_options web;
	unsigned policy_cap;   /* policy actions per minute, all rules (0: no cap) */
	struct cluster_opts cluster;
};

/* A whole number option in [min, max]. */
static int opt_uint(const char *name, uint64_t min, uint64_t max, unsigned *out)
{
	uint64_t v;
	if (!kvz_parse_u64(optarg, min, max, &v)) {
		kvz_error("--%s: want %llu..%llu, got \"%s\"", name, (unsigned long long)min,
			  (unsigned long long)max, optarg);
		return -1;
	}
	*out = (unsigned)v;
	return 0;
}

static int opt_ratio(double *out)
{
	char *end;
	errno = 0;
	double v = strtod(optarg, &end);
	if (errno || end == optarg || *end || !(v >= 1 && v <= 1e6)) {
		kvz_error("--disk-overcommit: want a ratio from 1 to 1000000, got \"%s\"", optarg);
		return -1;
	}
	*out = v;
	return 0;
}

static int opt_images_dir(struct options *o)
{
	if (o->nimages == IMAGE_DIRS_MAX) {
		kvz_error("--images-dir: at most %d directories", IMAGE_DIRS_MAX);
		return -1;
	}
	o->images_dirs[o->nimages++] = optarg;
	return 0;
}

static int parse_options(int argc, char **argv, struct kvzd *d, struct options *o)
{
	static const struct option longopts[] = {
		{"state-dir", required_argument, NULL, 's'},
		{"socket", required_argument, NULL, 'S'},
		{"run-dir", required_argument, NULL, 'r'},
		{"listen", required_argument, NULL, 'l'},
		{"token-file", required_argument, NULL, 't'},
		{"vmm", required_argument, NULL, 'V'},
		{"ct", required_argument, NULL, 'C'},
		{"sample-interval", required_argument, NULL, 'i'},
		{"max-connections", required_argument, NULL, 'm'},
		{"max-connections-per-ip", required_argument, NULL, 'p'},
		{"idle-timeout", required_argument, NULL, 'T'},
		{"images-dir", required_argument, NULL, 'I'},
		{"disk-overcommit", required_argument, NULL, 'O'},
		{"tls", no_argument, NULL, 'L'},
		{"tls-cert", required_argument, NULL, 'c'},
		{"tls-key", required_argument, NULL, 'k'},
		{"web-dir", required_argument, NULL, 'w'},
		{"session-idle", required_argument, NULL, 'e'},
		{"policy-cap", required_argument, NULL, 'P'},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		CLUSTER_LONGOPTS,
		{NULL, 0, NULL, 0},
	};
	int c, bad = 0;
	uint64_t v;
	while (!bad && (c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 's': snprintf(d->state_dir, sizeof(d->state_dir), "%s", optarg); break;
		case 'S': snprintf(d->socket_path, sizeof(d->socket_path), "%s", optarg); break;
		case 'r': snprintf(d->run_dir, sizeof(d->run_dir), "%s", optarg); break;
		case 'l': o->tcp = optarg; break;
		case 't': o->token_file = optarg; break;
		case 'V': o->vmm = optarg; break;
		case 'C': o->ct = optarg; break;
		case 'i':
			if (!kvz_parse_u64(optarg, 1, 3600, &v)) {
				kvz_error("--sample-interval: want 1..3600 seconds, got \"%s\"", optarg);
				return -1;
			}
			d->sample_interval_s = (int)v;
			break;
		case 'm': bad = opt_uint("max-connections", 1, 65536, &o->limits.max_conns); break;
		case 'p': bad = opt_uint("max-connections-per-ip", 1, 65536, &o->limits.max_per_ip); break;
		case 'T': bad = opt_uint("idle-timeout", 1, 3600, &o->limits.idle_timeout_s); break;
		case 'I': bad = opt_images_dir(o); break;
		case 'O': bad = opt_ratio(&d->disk_overcommit); break;
		case 'L': o->web.tls = true; break;
		case 'c': o->web.tls_cert = optarg; o->web.tls = true; break;
		case 'k': o->web.tls_key = optarg; o->web.tls = true; break;
		case 'w': o->web.web_dir = optarg; break;
		case 'e': bad = opt_uint("session-idle", 2, 7 * 86400, &o->web.session_idle_s); break;
		case 'P': bad = opt_uint("policy-cap", 0, 100000, &o->policy_cap); break;
		case 'v': kvz_log_set_verbose(true); break;
		case 'h': usage(stdout); exit(0);
		default:
			bad = cluster_parse_option(c, optarg, &o->cluster);
			if (bad > 0) {
				usage(stderr);
				return -1;
			}
		}
	}
	if (bad)
		return -1;
	if (optind < argc) {
		kvz_error("unexpected argument \"%s\"", argv[optind]);
		return -1;
	}
	if (o->limits.max_per_ip > o->limits.max_conns) {
		kvz_error("--max-connections-per-ip %u is above --max-connections %u",
			  o->limits.max_per_ip, o->limits.max_conns);
		return -1;
	}
	if (!o->web.tls_cert != !o->web.tls_key) {
		kvz_error("--tls-cert and --tls-key go together");
		return -1;
	}
	if (o->web.tls && !o->tcp) {
		kvz_error("--tls and --tls-cert/--tls-key are for the --listen TCP listener");
		return -1;
	}
	if (o->tcp && !o->token_file) {
		kvz_error("--listen needs --token-file: the TCP API always requires a token");
		return -1;
	}
	return 0;
}

/* Each connection holds a descriptor, and each listener may hold
 * max_conns of them: take the hard limit, and refuse to start when even
 * that is too small, rather than fail accept() under load. */
static int raise_fd_limit(const struct api_limits *lim)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return 0;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	/* Two listeners, plus the store, logs, QMP clients and guests' files. */
	rlim_t need = 2 * (rlim_t)lim->max_conns + 256;
	if (rl.rlim_cur < need) {
		kvz_error("--max-connections %u needs %llu open files, the limit is %llu (ulimit -n)",
			  lim->max_conns, (unsigned long long)need,
			  (unsigned long long)rl.rlim_cur);
		return -1;
	}
	return 0;
}

/* An absolute path: supervisors and sockets must not depend on our cwd. */
/* The address of "ADDR:PORT" (brackets of an IPv6 one removed). */
static const char *listen_host(const char *spec, char *buf, size_t len)
{
	const char *colon = strrchr(spec, ':');
	size_t n = colon ? (size_t)(colon - spec) : strlen(spec);
	if (n >= 2 && spec[0] == '[' && spec[n - 1] == ']')
		snprintf(buf, len, "%.*s", (int)(n - 2), spec + 1);
	else
		snprintf(buf, len, "%.*s", (int)n, spec);
	return buf;
}

static int absolutize(char *path, size_t len)
{
	if (path[0] == '/')
		return 0;
	char cwd[256], tmp[512];
	if (!getcwd(cwd, sizeof(cwd)))
		return -1;
	snprintf(tmp, sizeof(tmp), "%s/%s", cwd, path);
	if (strlen(tmp) >= len)
		return -1;
	snprintf(path, len, "%s", tmp);
	return 0;
}

int main(int argc, char **argv)
{
	kvz_log_init(argv[0]);
	/* The fence watchdog is kvzd's own binary (cluster_fence.c). */
	if (argc == 3 && !strcmp(argv[1], "--fence-watchdog"))
		return fence_watchdog_main(atoi(argv[2]));
	struct kvzd d = {.sample_interval_s = 5, .ops_lock = PTHREAD_MUTEX_INITIALIZER,
			 .ops_cond = PTHREAD_COND_INITIALIZER, .disk_overcommit = 1,
			 .disk_lock = PTHREAD_MUTEX_INITIALIZER};
	snprintf(d.state_dir, sizeof(d.state_dir), "/var/lib/kvz");
	snprintf(d.run_dir, sizeof(d.run_dir), "/run/kvz");
	snprintf(d.socket_path, sizeof(d.socket_path), "/run/kvz/kvzd.sock");
	struct options o = {.policy_cap = 30, .limits = {.max_conns = 128, .max_per_ip = 16, .idle_timeout_s = 5},
			    .web = {.session_idle_s = 1800}};
	cluster_options_default(&o.cluster);
	if (parse_options(argc, argv, &d, &o))
		return 2;
	if (raise_fd_limit(&o.limits))
		return 1;
	if (absolutize(d.state_dir, sizeof(d.state_dir)) ||
	    absolutize(d.run_dir, sizeof(d.run_dir)) ||
	    absolutize(d.socket_path, sizeof(d.socket_path))) {
		kvz_error("path too long");
		return 1;
	}
	if (find_bin(o.vmm, "KVZ_VMM", "../vmm/kvz-vmm", "kvz-vmm", d.vmm_bin, sizeof(d.vmm_bin)) ||
	    find_bin(o.ct, "KVZ_CT", "../ct/kvz-ct", "kvz-ct", d.ct_bin, sizeof(d.ct_bin)))
		return 1;
	char *token = o.token_file ? kvz_read_token_file(o.token_file) : NULL;
	if (o.token_file && !token)
		return 1;
	if (cluster_options_finish(&o.cluster, o.tcp))
		return 2;
	if (prepare_dirs(&d))
		return 1;
	char err[512], lhost[128];
	d.images = image_dirs_open(o.images_dirs, o.nimages, d.state_dir, err, sizeof(err));
	if (!d.images) {
		kvz_error("%s", err);
		return 1;
	}

	/* One kvzd per state directory. */
	char lockp[300];
	snprintf(lockp, sizeof(lockp), "%s/kvzd.lock", d.state_dir);
	int lockfd = open(lockp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lockfd < 0 || flock(lockfd, LOCK_EX | LOCK_NB) < 0) {
		kvz_error("%s: %s", lockp, errno == EWOULDBLOCK ?
			  "another kvzd uses this state directory" : strerror(errno));
		return 1;
	}

	/* Before any kvz-ct runs, and before threads (it moves the process). */
	if (kvzd_cgroup_leaf("/sys/fs/cgroup", "/proc/self/cgroup", err, sizeof(err))) {
		kvz_error("%s", err);
		return 1;
	}

	/* Signals are taken by sigwait() below; every thread inherits the mask. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	char dbp[300];
	snprintf(dbp, sizeof(dbp), "%s/kvzd.db", d.state_dir);
	d.store = store_open(dbp, err, sizeof(err));
	if (!d.store) {
		kvz_error("%s", err);
		return 1;
	}
	if (peer_client_init(err, sizeof(err))) {
		kvz_error("%s", err);
		return 1;
	}
	if (sup_init(err, sizeof(err))) {
		kvz_error("%s", err);
		return 1;
	}
	if (migration_init(&d, o.tcp ? listen_host(o.tcp, lhost, sizeof(lhost)) : NULL, err,
			   sizeof(err))) {
		kvz_error("%s", err);
		return 1;
	}
	/* Before adoption, which leaves migrating guests to it. */
	migration_recover(&d);
	guests_adopt_all(&d);
	/* After adoption: recovering a snapshot job may resume its VM. */
	static const struct job_kind *const job_kinds[] = {
		&snapshot_create_job, &snapshot_restore_job, &migrate_job, &vm_create_job,
		&backup_create_job,   &backup_restore_job,   NULL,
	};
	if (jobs_init(&d, job_kinds, err, sizeof(err))) {
		kvz_error("%s", err);
		return 1;
	}
	/* Before the API: a member rejoins before it answers anything. */
	if (cluster_setup(&d, &o.cluster, err, sizeof(err))) {
		kvz_error("%s", err);
		return 1;
	}
	struct api *api = api_start(&d, o.tcp, token, &o.limits, &o.web, err, sizeof(err));
	if (!api) {
		kvz_error("%s", err);
		return 1;
	}
	if (monitor_start(&d, err, sizeof(err))) {
		kvz_error("%s", err);
		return 1;
	}
	if (qmp_watch_start(&d, err, sizeof(err))) {
		kvz_error("%s", err);
		return 1;
	}
	if (policy_engine_start(&d, (int)o.policy_cap, err, sizeof(err)) ||
	    node_health_start(&d, err, sizeof(err))) {
		kvz_error("%s", err);
		return 1;
	}
	kvz_info("listening on %s%s%s%s (state %s)", d.socket_path, o.tcp ? " and " : "",
		 o.tcp ? o.tcp : "", o.tcp ? (o.web.tls ? " (https)" : " (http)") : "",
		 d.state_dir);
	guests_autostart(&d);

	int sig;
	while (sigwait(&sigs, &sig) == 0 && sig == SIGHUP)
		;
	kvz_info("signal %d: stopping the API; guests keep running", sig);
	/* MHD joins its connection threads, so no request is in flight after
	 * api_stop(); then the monitor; then nobody uses the store. The reaper
	 * only touches its own table and dies with the process. */
	api_stop(api);
	unlink(d.socket_path);
	node_health_stop();
	policy_engine_stop();
	cluster_shutdown(&d);
	jobs_stop(&d);
	migration_stop(&d);
	qmp_watch_stop();
	monitor_stop();
	store_close(d.store);
	image_dirs_free(d.images);
	free(token);
	return 0;
}
