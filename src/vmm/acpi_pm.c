#include "acpi_pm.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "irq.h"
#include "log.h"
#include "vm.h"

/* Status bits this machine can set; the rest read 0. */
#define PM1_STS_IMPLEMENTED (ACPI_PM1_PWRBTN | ACPI_PM1_WAK_STS)
/* Enable bits keep what the guest writes (TMR, GBL, PWRBTN, SLPBTN, RTC,
 * PCIEXP_WAKE_DIS): ACPICA reads an enable back to check that it stuck.
 * Only the power button ever sets its status bit. */
#define PM1_EN_IMPLEMENTED  0x4721
#define RESET_RST_CPU 0x04

struct acpi_pm {
	struct vm *vm;
	pthread_mutex_t lock;   /* vCPUs and the QMP thread race on the registers */
	struct acpi_pm_state st;
};

enum acpi_pm1_cnt_request acpi_pm1_cnt_decode(uint16_t value)
{
	if (!(value & ACPI_PM1_CNT_SLP_EN))
		return ACPI_PM1_CNT_NONE;
	unsigned typ = (value >> ACPI_PM1_CNT_SLP_TYP_SHIFT) & 0x7;
	/* Only _S5_ is offered; a sleep type the DSDT never named is ignored. */
	return typ == ACPI_SLP_TYP_S5 ? ACPI_PM1_CNT_POWEROFF : ACPI_PM1_CNT_NONE;
}

struct acpi_pm *acpi_pm_create(struct vm *vm)
{
	struct acpi_pm *pm = calloc(1, sizeof(*pm));
	if (!pm)
		return NULL;
	pm->vm = vm;
	pthread_mutex_init(&pm->lock, NULL);
	acpi_pm_reset(pm);
	return pm;
}

void acpi_pm_destroy(struct acpi_pm *pm)
{
	if (!pm)
		return;
	pthread_mutex_destroy(&pm->lock);
	free(pm);
}

/* Called with the lock held. The SCI is a level: high while an enabled
 * status bit is set. */
static void update_sci(struct acpi_pm *pm)
{
	int level = (pm->st.pm1_sts & pm->st.pm1_en) != 0;
	if (!pm->vm)
		return;
	int rc = vm_set_irq_line(pm->vm, ACPI_SCI_IRQ, level);
	if (rc < 0)
		kvz_warn("acpi: KVM_IRQ_LINE %d: %s", ACPI_SCI_IRQ, strerror(-rc));
}

void acpi_pm_reset(struct acpi_pm *pm)
{
	pthread_mutex_lock(&pm->lock);
	memset(&pm->st, 0, sizeof(pm->st));
	/* No SMI_CMD in the FADT: the machine is always in ACPI mode. */
	pm->st.pm1_cnt = ACPI_PM1_CNT_SCI_EN;
	update_sci(pm);
	pthread_mutex_unlock(&pm->lock);
}

/* The event block as bytes: PM1_STS then PM1_EN, little endian. */
static uint8_t evt_read_byte(const struct acpi_pm *pm, unsigned off)
{
	uint16_t reg = off < 2 ? pm->st.pm1_sts : pm->st.pm1_en;
	return (uint8_t)(reg >> ((off & 1) * 8));
}

static void evt_write_byte(struct acpi_pm *pm, unsigned off, uint8_t v)
{
	uint16_t bits = (uint16_t)(v << ((off & 1) * 8));
	if (off < 2)
		pm->st.pm1_sts &= (uint16_t)~bits;    /* write 1 to clear */
	else
		pm->st.pm1_en = (uint16_t)((pm->st.pm1_en & ~(0xFF << ((off & 1) * 8))) |
					   (bits & PM1_EN_IMPLEMENTED));
}

/* Returns true when the write asks for power-off. */
static bool cnt_write(struct acpi_pm *pm, unsigned off, const uint8_t *data, unsigned len)
{
	uint16_t v = pm->st.pm1_cnt;
	for (unsigned i = 0; i < len && off + i < ACPI_PM1_CNT_LEN; i++) {
		unsigned shift = (off + i) * 8;
		v = (uint16_t)((v & ~(0xFF << shift)) | (data[i] << shift));
	}
	bool poweroff = acpi_pm1_cnt_decode(v) == ACPI_PM1_CNT_POWEROFF;
	/* SLP_EN is write-only; SCI_EN is hard-wired: no legacy mode exists. */
	pm->st.pm1_cnt = (uint16_t)((v & ~ACPI_PM1_CNT_SLP_EN) | ACPI_PM1_CNT_SCI_EN);
	return poweroff;
}

static void pio_locked(struct acpi_pm *pm, uint16_t port, uint8_t *data, unsigned len, bool is_write,
		       bool *poweroff, bool *reset)
{
	if (port == ACPI_RESET_PORT) {
		if (!is_write) {
			data[0] = pm->st.reset_ctl;
			return;
		}
		*reset = data[0] & RESET_RST_CPU;
		pm->st.reset_ctl = data[0] & (uint8_t)~RESET_RST_CPU;
		return;
	}
	if (port >= ACPI_PM1_CNT_PORT) {
		unsigned off = port - ACPI_PM1_CNT_PORT;
		if (is_write) {
			*poweroff = cnt_write(pm, off, data, len);
			return;
		}
		for (unsigned i = 0; i < len; i++)
			data[i] = off + i < ACPI_PM1_CNT_LEN ? (uint8_t)(pm->st.pm1_cnt >> ((off + i) * 8)) : 0;
		return;
	}
	unsigned off = port - ACPI_PM1_EVT_PORT;
	for (unsigned i = 0; i < len; i++) {
		if (off + i >= ACPI_PM1_EVT_LEN) {
			if (!is_write)
				data[i] = 0;
			continue;
		}
		if (is_write)
			evt_write_byte(pm, off + i, data[i]);
		else
			data[i] = evt_read_byte(pm, off + i);
	}
	if (is_write)
		update_sci(pm);
}

bool acpi_pm_pio(struct acpi_pm *pm, uint16_t port, void *data, unsigned len, bool is_write)
{
	bool evt = port >= ACPI_PM1_EVT_PORT && port < ACPI_PM1_EVT_PORT + ACPI_PM1_EVT_LEN;
	bool cnt = port >= ACPI_PM1_CNT_PORT && port < ACPI_PM1_CNT_PORT + ACPI_PM1_CNT_LEN;
	/* 0xCF9 is a byte register inside the PCI configuration ports: a
	 * dword at 0xCF8 stays the configuration address. */
	bool rst = port == ACPI_RESET_PORT && len == 1;
	if (!evt && !cnt && !rst)
		return false;
	bool poweroff = false, reset = false;
	pthread_mutex_lock(&pm->lock);
	pio_locked(pm, port, data, len, is_write, &poweroff, &reset);
	pthread_mutex_unlock(&pm->lock);
	if (!pm->vm)    /* a PM block without a machine (unit tests) only keeps registers */
		return true;
	if (poweroff)
		vm_request_stop(pm->vm, VM_STOP_POWEROFF, "guest ACPI power-off (S5)");
	else if (reset)
		vm_request_stop(pm->vm, VM_STOP_GUEST_RESET, "guest reset through port 0xCF9");
	return true;
}

int acpi_pm_press_power_button(struct acpi_pm *pm)
{
	pthread_mutex_lock(&pm->lock);
	pm->st.pm1_sts |= ACPI_PM1_PWRBTN;
	bool enabled = pm->st.pm1_en & ACPI_PM1_PWRBTN;
	update_sci(pm);
	pthread_mutex_unlock(&pm->lock);
	return enabled ? 0 : -1;
}

void acpi_pm_get_state(struct acpi_pm *pm, struct acpi_pm_state *s)
{
	pthread_mutex_lock(&pm->lock);
	*s = pm->st;
	pthread_mutex_unlock(&pm->lock);
}

void acpi_pm_set_state(struct acpi_pm *pm, const struct acpi_pm_state *s)
{
	pthread_mutex_lock(&pm->lock);
	pm->st = *s;
	pm->st.pm1_sts &= PM1_STS_IMPLEMENTED;
	pm->st.pm1_en &= PM1_EN_IMPLEMENTED;
	pm->st.pm1_cnt |= ACPI_PM1_CNT_SCI_EN;
	update_sci(pm);
	pthread_mutex_unlock(&pm->lock);
}
