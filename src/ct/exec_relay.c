#include "exec_relay.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

/* Once the command has exited, output still arriving is read until the
 * sources close or stay silent this long (a background process of the
 * container may keep them open forever). */
#define DRAIN_IDLE_MS 100

/* One direction: bytes read from `from` and written to `to`. */
struct chan {
	int from, to;
	bool to_is_ours;   /* `to` is non-blocking and ours: poll it for room */
	bool own_from;     /* close `from` at its end (a pipe of the command's) */
	bool close_to_eof; /* close `to` at EOF of `from` (a stdin pipe) */
	char buf[4096];
	size_t len, off;
};

static void chan_close(struct chan *c)
{
	if (c->own_from)
		close(c->from);
	c->from = -1;
	if (c->close_to_eof && c->to >= 0) {
		close(c->to);
		c->to = -1;
	}
}

/* Blocking writes to the administrator's stdout/stderr (not ours to make
 * non-blocking); a closed reader ends that direction. */
static void chan_flush_blocking(struct chan *c)
{
	while (c->off < c->len) {
		ssize_t n = write(c->to, c->buf + c->off, c->len - c->off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			c->len = c->off = 0;
			chan_close(c);
			return;
		}
		c->off += (size_t)n;
	}
	c->len = c->off = 0;
}

static void chan_flush_nonblocking(struct chan *c)
{
	ssize_t n = write(c->to, c->buf + c->off, c->len - c->off);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n < 0) {
		c->len = c->off = 0;
		chan_close(c);
		return;
	}
	c->off += (size_t)n;
	if (c->off == c->len)
		c->len = c->off = 0;
}

static void chan_read(struct chan *c)
{
	ssize_t n = read(c->from, c->buf, sizeof(c->buf));
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) { /* EOF, or EIO on a master whose slaves are all closed */
		chan_close(c);
		return;
	}
	c->len = (size_t)n;
	c->off = 0;
	if (!c->to_is_ours)
		chan_flush_blocking(c);
}

/* The pollfd for a direction: room to write when something is pending,
 * else data to read. Returns false when it has nothing to wait for. */
static bool chan_pollfd(const struct chan *c, struct pollfd *p, bool reading)
{
	if (c->from < 0 && c->len == 0)
		return false;
	if (c->len > 0)
		*p = (struct pollfd){.fd = c->to, .events = POLLOUT};
	else if (reading && c->from >= 0)
		*p = (struct pollfd){.fd = c->from, .events = POLLIN};
	else
		return false;
	return true;
}

static void chan_event(struct chan *c, const struct pollfd *p)
{
	if (!p->revents)
		return;
	if (c->len > 0)
		chan_flush_nonblocking(c);
	else
		chan_read(c);
}

/* The administrator's terminal type comes from the admin; error text from
 * the container side could carry escape sequences: printable only. */
static void keep_printable(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = '?';
}

static void read_ctl(struct exec_relay *r)
{
	char msg[1024];
	ssize_t n = recv(r->ctl, msg, sizeof(msg) - 1, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		close(r->ctl);
		r->ctl = -1;
		return;
	}
	msg[n] = 0;
	if (msg[0] == 'E' && !r->error[0]) {
		snprintf(r->error, sizeof(r->error), "%s", msg + 1);
		keep_printable(r->error);
	}
}

static void pass_winsize(const struct exec_relay *r)
{
	struct winsize ws;
	if (r->master >= 0 && (ioctl(0, TIOCGWINSZ, &ws) == 0 || ioctl(1, TIOCGWINSZ, &ws) == 0))
		ioctl(r->master, TIOCSWINSZ, &ws);
}

/* Returns true once the child has been reaped; *code gets its exit code. */
static bool on_signal(const struct exec_relay *r, int *code)
{
	struct signalfd_siginfo si;
	if (read(r->sig_fd, &si, sizeof(si)) != sizeof(si))
		return false;
	if (si.ssi_signo == SIGWINCH) {
		pass_winsize(r);
		return false;
	}
	if (si.ssi_signo != SIGCHLD) {
		kill(r->child, (int)si.ssi_signo);
		return false;
	}
	int status;
	pid_t pid = waitpid(r->child, &status, WNOHANG);
	if (pid != r->child)
		return false;
	*code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	return true;
}

static bool raw_mode(struct termios *saved)
{
	struct termios t;
	if (!isatty(0) || tcgetattr(0, saved) < 0)
		return false;
	t = *saved;
	cfmakeraw(&t);
	return tcsetattr(0, TCSANOW, &t) == 0;
}

static void set_nonblocking(int fd)
{
	if (fd >= 0)
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* The three directions: stdin -> command, command -> stdout, and the
 * command's stderr -> stderr (pipe mode; a pty merges it into stdout). */
static void make_chans(const struct exec_relay *r, struct chan ch[3])
{
	bool tty = r->master >= 0;
	memset(ch, 0, 3 * sizeof(*ch));
	ch[0] = (struct chan){.to = tty ? r->master : r->cmd_in, .to_is_ours = true,
			      .close_to_eof = !tty};
	ch[0].from = ch[0].to >= 0 ? 0 : -1; /* no command side: nothing to send */
	ch[1] = (struct chan){.from = tty ? r->master : r->cmd_out, .to = 1, .own_from = !tty};
	ch[2] = (struct chan){.from = tty ? -1 : r->cmd_err, .to = 2, .own_from = !tty};
	set_nonblocking(ch[0].to);
	set_nonblocking(ch[1].from);
	set_nonblocking(ch[2].from);
}

static bool outputs_open(const struct chan ch[3])
{
	return ch[1].from >= 0 || ch[2].from >= 0;
}

static void run_loop(struct exec_relay *r, struct chan ch[3], int *code)
{
	bool exited = false;
	for (;;) {
		struct pollfd p[5];
		int idx[3] = {-1, -1, -1};
		nfds_t n = 0;
		for (int i = 0; i < 3; i++)
			if (chan_pollfd(&ch[i], &p[n], !(exited && i == 0)))
				idx[i] = (int)n++;
		int sig = (int)n;
		p[n++] = (struct pollfd){.fd = exited ? -1 : r->sig_fd, .events = POLLIN};
		int ctl = (int)n;
		p[n++] = (struct pollfd){.fd = r->ctl, .events = POLLIN};
		int ready = poll(p, n, exited ? DRAIN_IDLE_MS : -1);
		if (ready < 0 && errno == EINTR)
			continue;
		if (ready <= 0)
			return; /* drained: silent for DRAIN_IDLE_MS, or poll failed */
		for (int i = 0; i < 3; i++)
			if (idx[i] >= 0)
				chan_event(&ch[i], &p[idx[i]]);
		if (p[ctl].revents)
			read_ctl(r);
		if (p[sig].revents && on_signal(r, code))
			exited = true;
		if (exited && !outputs_open(ch) && r->ctl < 0)
			return;
	}
}

int exec_relay_run(struct exec_relay *r)
{
	struct termios saved;
	bool raw = r->master >= 0 && raw_mode(&saved);
	struct chan ch[3];
	make_chans(r, ch);
	int code = 1;
	run_loop(r, ch, &code);
	for (int i = 0; i < 3; i++)
		if (ch[i].own_from && ch[i].from >= 0)
			close(ch[i].from);
	if (ch[0].close_to_eof && ch[0].to >= 0)
		close(ch[0].to);
	if (r->master >= 0)
		close(r->master);
	if (r->ctl >= 0)
		read_ctl(r);
	if (raw)
		tcsetattr(0, TCSADRAIN, &saved);
	return code;
}
