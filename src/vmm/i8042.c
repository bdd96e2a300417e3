#include "i8042.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "vm.h"

#define I8042_DATA 0x60
#define I8042_CMD 0x64
#define STATUS_OBF 0x01
#define STATUS_SYS 0x04
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
#define CMD_PULSE_RESET 0xFE

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
}

/* Returns true when the guest asked for a reset. */
static bool command(struct i8042 *k, uint8_t cmd)
{
	switch (cmd) {
	case CMD_READ_CTR: reply(k, k->st.ctr); break;
	case CMD_WRITE_CTR:
	case CMD_WRITE_OUTPUT: k->st.pending_cmd = cmd; break;
	case CMD_SELF_TEST: reply(k, 0x55); break;
	case CMD_KBD_TEST:
	case CMD_AUX_TEST: reply(k, 0x00); break;
	case CMD_AUX_DISABLE: k->st.ctr |= 0x20; break;
	case CMD_AUX_ENABLE: k->st.ctr &= (uint8_t)~0x20; break;
	case CMD_KBD_DISABLE: k->st.ctr |= 0x10; break;
	case CMD_KBD_ENABLE: k->st.ctr &= (uint8_t)~0x10; break;
	case CMD_PULSE_RESET: return true;
	default: break;   /* no keyboard or mouse behind the controller */
	}
	return false;
}

static bool data_write(struct i8042 *k, uint8_t v)
{
	uint8_t cmd = k->st.pending_cmd;
	k->st.pending_cmd = 0;
	if (cmd == CMD_WRITE_CTR)
		k->st.ctr = v;
	else if (cmd == CMD_WRITE_OUTPUT && !(v & 1))
		return true;   /* bit 0 of the output port is the CPU reset line */
	return false;
}

bool i8042_pio(struct i8042 *k, uint16_t port, void *data, unsigned len, bool is_write)
{
	if (port != I8042_DATA && port != I8042_CMD)
		return false;
	uint8_t *b = data;
	bool reset = false;
	pthread_mutex_lock(&k->lock);
	if (!is_write) {
		memset(b, 0xFF, len);
		if (port == I8042_CMD) {
			b[0] = STATUS_SYS | (k->st.out_full ? STATUS_OBF : 0);
		} else {
			b[0] = k->st.out;
			k->st.out_full = false;
		}
	} else if (port == I8042_CMD) {
		reset = command(k, b[0]);
	} else {
		reset = data_write(k, b[0]);
	}
	pthread_mutex_unlock(&k->lock);
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
