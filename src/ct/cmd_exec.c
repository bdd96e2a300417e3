/* kvz-ct exec: runs a command inside a running container (found through
 * the init pid in NAME.json). This process stays on the host and relays
 * stdio; a child joins the container and forks the command there, with a
 * new pty from the container's devpts (-t, or stdin a terminal) or pipes,
 * and a clean environment (exec_env.c). See docs/architecture.md. */
#include "cmd_common.h"
#include "ct.h"
#include "exec_env.h"
#include "exec_inside.h"
#include "exec_relay.h"
#include "log.h"
#include "state.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define EXEC_USAGE "usage: kvz-ct exec --name N [--run-dir DIR] [-t|--tty] [--env NAME[=VALUE]]... -- CMD [ARGS...]"

extern char **environ;

struct exec_opts {
	const char *name, *run_dir;
	bool tty;
	char **env;  /* --env arguments */
	size_t nenv;
	char **argv; /* the command */
};

static void parse_opts(int argc, char **argv, struct exec_opts *o)
{
	static const struct option opts[] = {
		{"name", required_argument, NULL, 'n'},
		{"run-dir", required_argument, NULL, 'r'},
		{"tty", no_argument, NULL, 't'},
		{"env", required_argument, NULL, 'e'},
		{NULL, 0, NULL, 0},
	};
	*o = (struct exec_opts){.run_dir = KVZ_CT_DEFAULT_RUNDIR};
	o->env = calloc((size_t)argc, sizeof(char *));
	if (!o->env)
		kvz_die("out of memory");
	opterr = 0; /* one error line, ours */
	int opt;
	while ((opt = getopt_long(argc, argv, "+te:", opts, NULL)) != -1) {
		if (opt == 'n')
			o->name = optarg;
		else if (opt == 'r')
			o->run_dir = optarg;
		else if (opt == 't')
			o->tty = true;
		else if (opt == 'e')
			o->env[o->nenv++] = optarg;
		else
			kvz_die("invalid option '%s': " EXEC_USAGE, argv[optind - 1]);
	}
	require_name(o->name);
	if (optind >= argc)
		kvz_die("no command: " EXEC_USAGE);
	o->argv = argv + optind;
}

/* Pipes and sockets made below must not land on 0-2 if the administrator
 * started us with one of them closed. */
static void ensure_stdio(void)
{
	for (int fd = 0; fd < 3; fd++)
		if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) != fd)
			kvz_die("cannot open /dev/null: %m");
}

/* The administrator's environment is not for the container: once what
 * --env asked for is copied, its strings are wiped, so that no process
 * forked from here carries them (/proc/PID/environ reads that memory). */
static void wipe_environment(void)
{
	for (char **e = environ; *e; e++)
		explicit_bzero(*e, strlen(*e));
}

/* SIGCHLD and the signals passed on to the command go to a signalfd; the
 * child inherits the mask and waits for them with sigwaitinfo. */
static int block_signals(void)
{
	sigset_t set;
	sigemptyset(&set);
	int sigs[] = {SIGCHLD, SIGWINCH, SIGINT, SIGTERM, SIGHUP, SIGQUIT};
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaddset(&set, sigs[i]);
	signal(SIGPIPE, SIG_IGN);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return -1;
	return signalfd(-1, &set, SFD_CLOEXEC);
}

/* pipe mode: p[i][0] is read, p[i][1] written; stdin's read end and
 * stdout/stderr's write ends go to the command. */
static void make_pipes(int p[3][2])
{
	for (int i = 0; i < 3; i++)
		if (pipe2(p[i], O_CLOEXEC) < 0)
			kvz_die("pipe: %m");
}

/* tty mode: the container side sends the pty master, or why it failed. */
static int receive_master(struct exec_relay *r)
{
	char type = 0;
	struct iovec iov = {.iov_base = &type, .iov_len = 1};
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} c;
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = c.buf,
			   .msg_controllen = sizeof(c.buf)};
	ssize_t n;
	/* A peek without a control buffer installs no descriptor. */
	while ((n = recv(r->ctl, &type, 1, MSG_PEEK)) < 0 && errno == EINTR)
		;
	if (n <= 0 || type != EXEC_MSG_MASTER)
		return -1; /* an error line (left for the relay to read) or EOF */
	while ((n = recvmsg(r->ctl, &m, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR)
		;
	struct cmsghdr *h = CMSG_FIRSTHDR(&m);
	if (n <= 0 || !h || h->cmsg_type != SCM_RIGHTS)
		return -1;
	memcpy(&r->master, CMSG_DATA(h), sizeof(int));
	return 0;
}

static void fill_inside(struct exec_inside *x, const struct exec_opts *o, json_t *st,
			const struct exec_env *env)
{
	*x = (struct exec_inside){
		.init = (pid_t)json_integer_value(json_object_get(st, "init-pid")),
		.cgroups = json_object_get(st, "cgroups"),
		.name = o->name, .argv = o->argv, .envp = env->vars, .tty = o->tty,
		.stdio = {-1, -1, -1},
	};
	if (o->tty)
		x->has_winsize = ioctl(0, TIOCGWINSZ, &x->ws) == 0 || ioctl(1, TIOCGWINSZ, &x->ws) == 0;
}

/* Starts the container side; returns its pid with r ready to relay. */
static pid_t start_inside(struct exec_inside *x, struct exec_relay *r)
{
	int sv[2], p[3][2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		kvz_die("socketpair: %m");
	if (!x->tty)
		make_pipes(p);
	x->ctl = sv[1];
	if (!x->tty)
		for (int i = 0; i < 3; i++)
			x->stdio[i] = p[i][i == 0 ? 0 : 1];
	pid_t pid = fork();
	if (pid < 0)
		kvz_die("fork: %m");
	if (pid == 0) {
		close(sv[0]);
		exec_inside_run(x);
	}
	close(sv[1]);
	*r = (struct exec_relay){.child = pid, .ctl = sv[0], .master = -1,
				 .cmd_in = -1, .cmd_out = -1, .cmd_err = -1};
	if (!x->tty) {
		for (int i = 0; i < 3; i++)
			close(x->stdio[i]);
		r->cmd_in = p[0][1];
		r->cmd_out = p[1][0];
		r->cmd_err = p[2][0];
	}
	return pid;
}

int cmd_exec(int argc, char **argv)
{
	struct exec_opts o;
	parse_opts(argc, argv, &o);
	ensure_stdio();
	/* Interactive use gets a terminal; output captured by a program (tests,
	 * scripts) keeps stdout and stderr apart, as without -t. */
	o.tty = o.tty || (isatty(0) && isatty(1));
	char err[512];
	struct exec_env env;
	if (exec_env_build(&env, o.env, o.nenv, err, sizeof(err)) < 0)
		kvz_die("%s", err);
	json_t *st = state_load(o.run_dir, o.name, err, sizeof(err));
	if (!st)
		kvz_die("%s", err);
	/* The same confinement as the container's init, compiled here once. */
	struct confine_opts conf;
	if (confine_from_json(json_object_get(st, "confine"), &conf, err, sizeof(err)) < 0 ||
	    confine_prepare(&conf, err, sizeof(err)) < 0)
		kvz_die("container '%s': %s", o.name, err);
	wipe_environment();
	int sig_fd = block_signals();
	if (sig_fd < 0)
		kvz_die("cannot set up signals: %m");
	struct exec_inside x;
	struct exec_relay r;
	fill_inside(&x, &o, st, &env);
	x.conf = &conf;
	start_inside(&x, &r);
	r.sig_fd = sig_fd;
	json_decref(st);
	exec_env_free(&env);
	free(o.env);
	if (x.tty && receive_master(&r) < 0)
		r.master = -1; /* the relay then only collects the error and the exit */
	int code = exec_relay_run(&r);
	confine_release(&conf);
	if (r.error[0])
		kvz_error("%s", r.error);
	return code;
}
