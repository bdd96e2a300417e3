/* kvz console NAME: attaches the terminal to a guest's console socket
 * (served by kvz-vmm or kvz-ct). kvz connects to the socket path the API
 * names, so it must run on the same host as kvzd. Ctrl-] detaches; the
 * terminal mode is restored however kvz leaves. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include "cli.h"
#include "log.h"
#include "write_all.h"

#define DETACH_KEY 0x1d  /* Ctrl-] */

/* Set by SIGTERM/SIGHUP so that the relay ends and the terminal is
 * restored; a signal handler can only talk through a global. */
static volatile sig_atomic_t quit_signal;

static void on_signal(int sig) { quit_signal = sig; }

static int connect_console(const char *path)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(addr.sun_path)) {
		kvz_error("console socket path too long: %s", path);
		return -1;
	}
	strcpy(addr.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		kvz_error("cannot connect to console %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/* After piped input ends, output is still shown until the guest has been
 * quiet this long: the console protocol has no end-of-input, and closing
 * our side would detach before the guest answered. */
#define LINGER_MS 1500

/* Copies between the terminal and the socket until detach, EOF, error, or
 * (piped input) the guest going quiet after the input ended. */
static int relay(int sock, bool tty)
{
	struct pollfd fds[2] = {{.fd = 0, .events = POLLIN}, {.fd = sock, .events = POLLIN}};
	bool stdin_open = true;
	char buf[4096];
	for (;;) {
		if (quit_signal)
			return 0;
		int r = poll(fds, 2, stdin_open ? -1 : LINGER_MS);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (r == 0)
			return 0;
		if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t n = read(sock, buf, sizeof(buf));
			if (n <= 0)
				return 0;
			if (kvz_write_all(1, buf, (size_t)n))
				return -1;
		}
		if (stdin_open && fds[0].revents & (POLLIN | POLLHUP)) {
			ssize_t n = read(0, buf, sizeof(buf));
			if (n <= 0) {
				stdin_open = false;
				fds[0].fd = -1;
				continue;
			}
			char *k = tty ? memchr(buf, DETACH_KEY, (size_t)n) : NULL;
			size_t len = k ? (size_t)(k - buf) : (size_t)n;
			if (kvz_write_all(sock, buf, len))
				return -1;
			if (k)
				return 0;
		}
	}
}

int cmd_console(int argc, char **argv)
{
	if (argc != 2) {
		kvz_error("usage: kvz console NAME");
		return 2;
	}
	json_t *g = get_guest(argv[1]);
	if (!g)
		return 1;
	const char *path = json_string_value(json_object_get(g, "console"));
	const char *state = json_string_value(json_object_get(g, "state"));
	if (strcmp(state, "running") || !path || !path[0]) {
		kvz_error("%s is not running (%s): no console", argv[1], state);
		json_decref(g);
		return 1;
	}
	int sock = connect_console(path);
	json_decref(g);
	if (sock < 0)
		return 1;
	bool tty = isatty(0);
	struct termios saved, raw;
	if (tty) {
		if (tcgetattr(0, &saved) < 0) {
			kvz_error("tcgetattr: %s", strerror(errno));
			return 1;
		}
		raw = saved;
		cfmakeraw(&raw);
		tcsetattr(0, TCSANOW, &raw);
		fprintf(stderr, "kvz: attached to %s; detach with Ctrl-]\r\n", argv[1]);
	}
	signal(SIGPIPE, SIG_IGN);
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	int rc = relay(sock, tty);
	if (tty) {
		tcsetattr(0, TCSANOW, &saved);
		fprintf(stderr, "\nkvz: detached from %s\n", argv[1]);
	}
	close(sock);
	return rc ? 1 : 0;
}
