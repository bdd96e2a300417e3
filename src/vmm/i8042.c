#include "i8042.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "irq.h"
#include "vm.h"

#define I8042_DATA 0x60
#define I8042_CMD 0x64
#define STATUS_OBF 0x01
#define STATUS_SYS 0x04
#define STATUS_KEYLOCK 0x10   /* set = keyboard not inhibited */
#define STATUS_AUXDATA 0x20
#define CTR_KBD_INT 0x01
#define CTR_AUX_INT 0x02
#define KBD_IRQ 1
#define AUX_IRQ 12
#define CMD_READ_CTR 0x20
#define CMD_WRITE_CTR 0x60
#define CMD_AUX_DISABLE 0xA7
#define CMD_AUX_ENABLE 0xA8
#define CMD_AUX_TEST 0xA9
#define CMD_SELF_TEST 0xAA
#define CMD_KBD_TEST 0xAB
#define CMD_KBD_DISABLE 0xAD
#define CMD_KBD_ENABLE 0xAE
#define CMD_WRITE_OUTPUT 0xD1
#define CMD_WRITE_KBD_OUT 0xD2
#define CMD_WRITE_AUX_OUT 0xD3
#define CMD_PULSE_RESET 0xFE
#define CTR_KBD_DISABLED 0x10
#define CTR_TRANSLATE 0x40
/* Keyboard commands (written to the data port) and its answers. */
#define KBD_SET_LEDS 0xED
#define KBD_ECHO 0xEE
#define KBD_SCAN_SET 0xF0
#define KBD_GET_ID 0xF2
#define KBD_TYPEMATIC 0xF3
#define KBD_ENABLE 0xF4
#define KBD_DISABLE 0xF5
#define KBD_DEFAULTS 0xF6
#define KBD_RESET 0xFF
#define KBD_ACK 0xFA
#define KBD_RESEND 0xFE
#define KBD_BAT_OK 0xAA

struct i8042 {
	struct vm *vm;
	pthread_mutex_t lock;   /* vCPUs may race on the two ports */
	struct i8042_state st;
};

void i8042_reset(struct i8042 *k)
{
	pthread_mutex_lock(&k->lock);
	memset(&k->st, 0, sizeof(k->st));
	k->st.ctr = 0x45;   /* kbd interrupt, system flag, translation */
	k->st.scan_set = 2;
	pthread_mutex_unlock(&k->lock);
}

struct i8042 *i8042_create(struct vm *vm)
{
	struct i8042 *k = calloc(1, sizeof(*k));
	if (!k)
		return NULL;
	k->vm = vm;
	pthread_mutex_init(&k->lock, NULL);
	i8042_reset(k);
	return k;
}

void i8042_destroy(struct i8042 *k)
{
	if (!k)
		return;
	pthread_mutex_destroy(&k->lock);
	free(k);
}

static void reply(struct i8042 *k, uint8_t v)
{
	k->st.out = v;
	k->st.out_full = true;
	k->st.out_aux = false;
}

/* Data "from a device" (the loopback commands): raises IRQ 1 or 12 when
 * the configuration byte enables it. Linux checks that the AUX interrupt
 * arrives before it trusts the port. Returns the GSI to pulse, or -1. */
static int device_reply(struct i8042 *k, uint8_t v, bool aux)
{
	reply(k, v);
	k->st.out_aux = aux;
	if (aux)
		return (k->st.ctr & CTR_AUX_INT) ? AUX_IRQ : -1;
	return (k->st.ctr & CTR_KBD_INT) ? KBD_IRQ : -1;
}

/* Moves the keyboard's next byte into an empty output buffer while the
 * keyboard interface is enabled. Returns the GSI to pulse, or -1. */
static int kbd_refill(struct i8042 *k)
{
	if (k->st.out_full || !k->st.kq_len || (k->st.ctr & CTR_KBD_DISABLED))
		return -1;
	uint8_t v = k->st.kq[0];
	k->st.kq_len--;
	memmove(k->st.kq, k->st.kq + 1, k->st.kq_len);
	return device_reply(k, v, false);
}

static void kbd_queue(struct i8042 *k, const uint8_t *b, unsigned n)
{
	for (unsigned i = 0; i < n && k->st.kq_len < I8042_KBD_QUEUE; i++)
		k->st.kq[k->st.kq_len++] = b[i];
}

#define KBD_SAY(k, ...) kbd_queue((k), (const uint8_t[]){__VA_ARGS__}, \
				  sizeof((const uint8_t[]){__VA_ARGS__}))

/* The parameter byte of a command that takes one. */
static void kbd_param(struct i8042 *k, uint8_t cmd, uint8_t v)
{
	if (cmd != KBD_SCAN_SET) {   /* LEDs, typematic rate: nothing to show */
		KBD_SAY(k, KBD_ACK);
		return;
	}
	if (v == 0) {   /* which set: 2 reads 0x41 through the translation */
		uint8_t set = k->st.scan_set;
		if (k->st.ctr & CTR_TRANSLATE)
			set = set == 1 ? 0x43 : set == 2 ? 0x41 : 0x3f;
		KBD_SAY(k, KBD_ACK, set);
	} else if (v <= 3) {
		k->st.scan_set = v;
		KBD_SAY(k, KBD_ACK);
	} else {
		KBD_SAY(k, KBD_RESEND);
	}
}

/* A byte for the keyboard itself, as an AT keyboard answers it. */
static void kbd_write(struct i8042 *k, uint8_t v)
{
	uint8_t pending = k->st.kbd_cmd;
	k->st.kbd_cmd = 0;
	if (pending && v != KBD_RESET) {
		kbd_param(k, pending, v);
		return;
	}
	k->st.kq_len = 0;   /* a command cancels what the keyboard was saying */
	switch (v) {
	case KBD_SET_LEDS:
	case KBD_TYPEMATIC:
	case KBD_SCAN_SET:
		k->st.kbd_cmd = v;
		KBD_SAY(k, KBD_ACK);
		break;
	case KBD_ECHO: KBD_SAY(k, KBD_ECHO); break;
	case KBD_GET_ID:   /* an MF2 keyboard; its second byte as translated */
		KBD_SAY(k, KBD_ACK, 0xAB, (k->st.ctr & CTR_TRANSLATE) ? 0x41 : 0x83);
		break;
	case KBD_ENABLE:   /* scanning on or off: it has no keys to scan */
		KBD_SAY(k, KBD_ACK);
		break;
	case KBD_DISABLE:
	case KBD_DEFAULTS:
		k->st.scan_set = 2;
		KBD_SAY(k, KBD_ACK);
		break;
	case KBD_RESET:
		k->st.scan_set = 2;
		KBD_SAY(k, KBD_ACK, KBD_BAT_OK);
		break;
	default:
		/* 0xF7..0xFD (key modes) are acknowledged; anything else is not
		 * a command and the keyboard asks for it again. */
		if (v >= 0xF7)
			KBD_SAY(k, KBD_ACK);
		else
			KBD_SAY(k, KBD_RESEND);
		break;
	}
}

/* Returns true when the guest asked for a reset. */
static bool command(struct i8042 *k, uint8_t cmd)
{
	switch (cmd) {
	case CMD_READ_CTR: reply(k, k->st.ctr); break;
	case CMD_WRITE_CTR:
	case CMD_WRITE_OUTPUT:
	case CMD_WRITE_KBD_OUT:
	case CMD_WRITE_AUX_OUT: k->st.pending_cmd = cmd; break;
	case CMD_SELF_TEST: reply(k, 0x55); break;
	case CMD_KBD_TEST: reply(k, 0x00); break;
	case CMD_AUX_TEST: reply(k, 0x02); break;   /* no mouse: clock line stuck high */
	case CMD_AUX_DISABLE: k->st.ctr |= 0x20; break;
	case CMD_AUX_ENABLE: k->st.ctr &= (uint8_t)~0x20; break;
	case CMD_KBD_DISABLE: k->st.ctr |= CTR_KBD_DISABLED; break;
	case CMD_KBD_ENABLE: k->st.ctr &= (uint8_t)~CTR_KBD_DISABLED; break;
	case CMD_PULSE_RESET: return true;
	default: break;   /* no mouse behind the controller */
	}
	return false;
}

/* Returns true when the guest asked for a reset; *irq gets a GSI to pulse. */
static bool data_write(struct i8042 *k, uint8_t v, int *irq)
{
	uint8_t cmd = k->st.pending_cmd;
	k->st.pending_cmd = 0;
	if (cmd == CMD_WRITE_CTR)
		k->st.ctr = v;
	else if (cmd == CMD_WRITE_KBD_OUT || cmd == CMD_WRITE_AUX_OUT)
		*irq = device_reply(k, v, cmd == CMD_WRITE_AUX_OUT);
	else if (cmd == CMD_WRITE_OUTPUT && !(v & 1))
		return true;   /* bit 0 of the output port is the CPU reset line */
	else if (!cmd) {
		/* Sending to the keyboard enables its interface again. */
		k->st.ctr &= (uint8_t)~CTR_KBD_DISABLED;
		kbd_write(k, v);
	}
	return false;
}

bool i8042_pio(struct i8042 *k, uint16_t port, void *data, unsigned len, bool is_write)
{
	if (port != I8042_DATA && port != I8042_CMD)
		return false;
	uint8_t *b = data;
	bool reset = false;
	int irq = -1;
	pthread_mutex_lock(&k->lock);
	if (!is_write) {
		memset(b, 0xFF, len);
		if (port == I8042_CMD) {
			b[0] = STATUS_SYS | STATUS_KEYLOCK | (k->st.out_full ? STATUS_OBF : 0) |
			       (k->st.out_full && k->st.out_aux ? STATUS_AUXDATA : 0);
		} else {
			b[0] = k->st.out;
			k->st.out_full = false;
		}
	} else if (port == I8042_CMD) {
		reset = command(k, b[0]);
	} else {
		reset = data_write(k, b[0], &irq);
	}
	if (irq < 0)
		irq = kbd_refill(k);
	pthread_mutex_unlock(&k->lock);
	if (irq >= 0) {
		/* Edge-triggered ISA line: a pulse is one interrupt. */
		vm_set_irq_line(k->vm, irq, 1);
		vm_set_irq_line(k->vm, irq, 0);
	}
	if (reset)
		vm_request_stop(k->vm, VM_STOP_GUEST_RESET, "guest reset through the i8042");
	return true;
}

void i8042_get_state(struct i8042 *k, struct i8042_state *s)
{
	pthread_mutex_lock(&k->lock);
	*s = k->st;
	pthread_mutex_unlock(&k->lock);
}

void i8042_set_state(struct i8042 *k, const struct i8042_state *s)
{
	pthread_mutex_lock(&k->lock);
	k->st = *s;
	pthread_mutex_unlock(&k->lock);
}
