/* 8250/16550A UART on COM1 (0x3F8, IRQ 4): the guest console. */
#ifndef KVZ_VMM_SERIAL_H
#define KVZ_VMM_SERIAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SERIAL_RX_SIZE 1024

struct vm;
struct console;

/* Serializable register state. */
struct serial_state {
	uint8_t ier, lcr, mcr, scr, dll, dlm, fcr;
	bool thre_pending;     /* "transmitter empty" interrupt not yet seen */
	bool irq_level;        /* what the line was last set to */
	uint16_t rx_head, rx_len;
	uint8_t rx[SERIAL_RX_SIZE];
};

struct serial;
struct serial *serial_create(struct vm *vm, int irq);
void serial_destroy(struct serial *s);
void serial_reset(struct serial *s);
/* Where transmitted bytes go; NULL discards them. */
void serial_set_console(struct serial *s, struct console *c);
bool serial_pio(struct serial *s, uint16_t port, void *data, unsigned len, bool is_write);
/* Bytes typed by the user; bytes that do not fit the FIFO are dropped. */
void serial_receive(struct serial *s, const uint8_t *buf, size_t len);
void serial_get_state(struct serial *s, struct serial_state *st);
void serial_set_state(struct serial *s, const struct serial_state *st);

#endif
