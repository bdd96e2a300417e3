#include "serial.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "console.h"
#include "irq.h"
#include "log.h"

#define COM1_BASE 0x3F8
#define REG_DATA 0   /* RBR/THR, DLL with DLAB */
#define REG_IER 1    /* DLM with DLAB */
#define REG_IIR 2    /* FCR on write */
#define REG_LCR 3
#define REG_MCR 4
#define REG_LSR 5
#define REG_MSR 6
#define REG_SCR 7

#define IER_RDI 0x01
#define IER_THRI 0x02
#define IIR_NONE 0x01
#define IIR_THRI 0x02
#define IIR_RDI 0x04
#define IIR_FIFO 0xC0
#define FCR_ENABLE 0x01
#define FCR_CLEAR_RX 0x02
#define LCR_DLAB 0x80
#define MCR_LOOP 0x10
#define LSR_DR 0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define MSR_CTS 0x10
#define MSR_DSR 0x20
#define MSR_DCD 0x80

struct serial {
	struct vm *vm;
	int irq;
	struct console *console;
	/* Guards st: vCPUs and the console input thread both touch it. */
	pthread_mutex_t lock;
	struct serial_state st;
};

void serial_reset(struct serial *s)
{
	pthread_mutex_lock(&s->lock);
	memset(&s->st, 0, sizeof(s->st));
	s->st.dll = 12;   /* 9600 baud, as a BIOS leaves it */
	s->st.lcr = 0x03;
	pthread_mutex_unlock(&s->lock);
}

struct serial *serial_create(struct vm *vm, int irq)
{
	struct serial *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->vm = vm;
	s->irq = irq;
	pthread_mutex_init(&s->lock, NULL);
	serial_reset(s);
	return s;
}

void serial_destroy(struct serial *s)
{
	if (!s)
		return;
	pthread_mutex_destroy(&s->lock);
	free(s);
}

void serial_set_console(struct serial *s, struct console *c)
{
	pthread_mutex_lock(&s->lock);
	s->console = c;
	pthread_mutex_unlock(&s->lock);
}

static uint8_t iir_locked(const struct serial *s)
{
	uint8_t fifo = (s->st.fcr & FCR_ENABLE) ? IIR_FIFO : 0;
	if ((s->st.ier & IER_RDI) && s->st.rx_len)
		return IIR_RDI | fifo;
	if ((s->st.ier & IER_THRI) && s->st.thre_pending)
		return IIR_THRI | fifo;
	return IIR_NONE | fifo;
}

/* The line follows "an interrupt is pending". ISA interrupts are edge
 * triggered: every new reason to interrupt must show as a rising edge, so
 * callers drop the line before raising it again (see transmit()). */
static void update_irq_locked(struct serial *s)
{
	bool level = (iir_locked(s) & IIR_NONE) == 0;
	if (level == s->st.irq_level)
		return;
	s->st.irq_level = level;
	int rc = vm_set_irq_line(s->vm, s->irq, level);
	if (rc < 0)
		kvz_warn("serial: KVM_IRQ_LINE %d: %s", s->irq, strerror(-rc));
}

static void rx_push_locked(struct serial *s, uint8_t c)
{
	if (s->st.rx_len >= SERIAL_RX_SIZE)
		return;
	s->st.rx[(s->st.rx_head + s->st.rx_len) % SERIAL_RX_SIZE] = c;
	s->st.rx_len++;
}

static uint8_t rx_pop_locked(struct serial *s)
{
	if (!s->st.rx_len)
		return 0;
	uint8_t c = s->st.rx[s->st.rx_head];
	s->st.rx_head = (uint16_t)((s->st.rx_head + 1) % SERIAL_RX_SIZE);
	s->st.rx_len--;
	return c;
}

static void transmit_locked(struct serial *s, uint8_t c)
{
	s->st.thre_pending = false;
	update_irq_locked(s);
	if (s->st.mcr & MCR_LOOP)
		rx_push_locked(s, c);
	else if (s->console)
		console_write(s->console, &c, 1);
	/* The byte left at once: the holding register is empty again. */
	s->st.thre_pending = true;
	update_irq_locked(s);
}

static uint8_t msr_locked(const struct serial *s)
{
	if (!(s->st.mcr & MCR_LOOP))
		return MSR_DCD | MSR_DSR | MSR_CTS;
	/* Loopback: modem outputs feed the inputs (Linux probes this). */
	uint8_t m = s->st.mcr;
	return (uint8_t)(((m & 0x02) ? 0x10 : 0) | ((m & 0x01) ? 0x20 : 0) |
			 ((m & 0x04) ? 0x40 : 0) | ((m & 0x08) ? 0x80 : 0));
}

static uint8_t read_reg(struct serial *s, unsigned reg)
{
	bool dlab = s->st.lcr & LCR_DLAB;
	switch (reg) {
	case REG_DATA:
		return dlab ? s->st.dll : rx_pop_locked(s);
	case REG_IER:
		return dlab ? s->st.dlm : s->st.ier;
	case REG_IIR: {
		uint8_t iir = iir_locked(s);
		if ((iir & 0x0F) == IIR_THRI)
			s->st.thre_pending = false;   /* reading IIR acknowledges THRE */
		return iir;
	}
	case REG_LCR: return s->st.lcr;
	case REG_MCR: return s->st.mcr;
	case REG_LSR: return (s->st.rx_len ? LSR_DR : 0) | LSR_THRE | LSR_TEMT;
	case REG_MSR: return msr_locked(s);
	default: return s->st.scr;
	}
}

static void write_reg(struct serial *s, unsigned reg, uint8_t v)
{
	bool dlab = s->st.lcr & LCR_DLAB;
	switch (reg) {
	case REG_DATA:
		if (dlab)
			s->st.dll = v;
		else
			transmit_locked(s, v);
		break;
	case REG_IER:
		if (dlab) {
			s->st.dlm = v;
			break;
		}
		/* Enabling THRE while the transmitter is empty interrupts at once. */
		if ((v & IER_THRI) && !(s->st.ier & IER_THRI))
			s->st.thre_pending = true;
		s->st.ier = v & 0x0F;
		break;
	case REG_IIR:
		s->st.fcr = v & 0xC9;
		if (v & FCR_CLEAR_RX)
			s->st.rx_len = 0;
		break;
	case REG_LCR: s->st.lcr = v; break;
	case REG_MCR: s->st.mcr = v & 0x1F; break;
	case REG_SCR: s->st.scr = v; break;
	default: break;   /* LSR, MSR are read-only */
	}
}

bool serial_pio(struct serial *s, uint16_t port, void *data, unsigned len, bool is_write)
{
	if (port < COM1_BASE || port >= COM1_BASE + 8)
		return false;
	uint8_t *b = data;
	unsigned reg = port - COM1_BASE;
	pthread_mutex_lock(&s->lock);
	if (is_write) {
		write_reg(s, reg, b[0]);
	} else {
		memset(b, 0xFF, len);
		b[0] = read_reg(s, reg);
	}
	update_irq_locked(s);
	pthread_mutex_unlock(&s->lock);
	return true;
}

void serial_receive(struct serial *s, const uint8_t *buf, size_t len)
{
	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < len; i++)
		rx_push_locked(s, buf[i]);
	update_irq_locked(s);
	pthread_mutex_unlock(&s->lock);
}

void serial_get_state(struct serial *s, struct serial_state *st)
{
	pthread_mutex_lock(&s->lock);
	*st = s->st;
	pthread_mutex_unlock(&s->lock);
}

void serial_set_state(struct serial *s, const struct serial_state *st)
{
	pthread_mutex_lock(&s->lock);
	s->st = *st;
	pthread_mutex_unlock(&s->lock);
}
