/* Where the guest console goes: the terminal (stdin/stdout, raw mode when
 * stdin is a tty) or a UNIX socket (--console-socket, one client at a time,
 * the last 64 KiB of output replayed on attach). An input thread feeds what
 * the user types to a callback (the UART). */
#ifndef KVZ_VMM_CONSOLE_H
#define KVZ_VMM_CONSOLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <termios.h>

#define CONSOLE_RING_SIZE (64 * 1024)
/* Guest output is buffered up to a line end, CONSOLE_OUT_SIZE bytes or
 * CONSOLE_FLUSH_MS milliseconds after its first byte. */
#define CONSOLE_OUT_SIZE 4096
#define CONSOLE_FLUSH_MS 5

typedef void (*console_input_fn)(void *opaque, const uint8_t *buf, size_t len);

struct console;

struct console *console_create_stdio(char *err, size_t errlen);
struct console *console_create_socket(const char *path, char *err, size_t errlen);
/* Starts the input thread. */
int console_start(struct console *c, console_input_fn fn, void *opaque, char *err, size_t errlen);
/* Guest output, in order; never blocks on a socket client that stops
 * reading. Buffered (see CONSOLE_OUT_SIZE): stop paths call console_flush. */
void console_write(struct console *c, const uint8_t *buf, size_t len);
/* Writes what is buffered now (c may be NULL). */
void console_flush(struct console *c);
/* The same on an exit path where a vCPU may hold the console or stdout may
 * never drain: writes only if it can take the lock and the fd is writable. */
void console_flush_nowait(struct console *c);
/* Copies the terminal modes the console will restore at exit into *tty;
 * false when it changed none (no tty, a socket console, or c is NULL). */
bool console_saved_terminal(const struct console *c, struct termios *tty);
/* Stops the thread, flushes, restores the terminal, removes the socket. */
void console_destroy(struct console *c);

#endif
