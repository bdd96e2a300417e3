/* i8042 keyboard controller with a keyboard that has no keys: enough for
 * Linux and SeaBIOS to probe both without waiting for timeouts (the
 * keyboard answers reset, ID, LED and scan-code commands) and, above all,
 * the reset line (command 0xFE on port 0x64) that reboots the machine. */
#ifndef KVZ_VMM_I8042_H
#define KVZ_VMM_I8042_H

#include <stdbool.h>
#include <stdint.h>

struct vm;

#define I8042_KBD_QUEUE 16

struct i8042_state {
	uint8_t ctr;          /* controller configuration byte */
	uint8_t out;          /* output buffer */
	bool out_full;
	bool out_aux;         /* the byte came from the AUX (mouse) side */
	uint8_t pending_cmd;  /* command waiting for its data byte, 0 if none */
	/* The keyboard behind it: its answers queue until the guest reads the
	 * output buffer, one byte (and one IRQ 1) at a time. */
	uint8_t kq[I8042_KBD_QUEUE];
	uint8_t kq_len;
	uint8_t kbd_cmd;      /* keyboard command waiting for its parameter */
	uint8_t scan_set;     /* 1..3 */
};

struct i8042;
struct i8042 *i8042_create(struct vm *vm);
void i8042_destroy(struct i8042 *k);
void i8042_reset(struct i8042 *k);
bool i8042_pio(struct i8042 *k, uint16_t port, void *data, unsigned len, bool is_write);
void i8042_get_state(struct i8042 *k, struct i8042_state *s);
void i8042_set_state(struct i8042 *k, const struct i8042_state *s);

#endif
