/* ACPI fixed-hardware power management, as on a PIIX4 PC: the PM1a event
 * block (status and enable), the PM1a control register whose SLP_EN with
 * the _S5_ sleep type powers the machine off, the power button that QMP
 * system_powerdown presses, the SCI that tells the guest about it, and the
 * reset control register at 0xCF9 that the FADT names as RESET_REG. */
#ifndef KVZ_VMM_ACPI_PM_H
#define KVZ_VMM_ACPI_PM_H

#include <stdbool.h>
#include <stdint.h>

#define ACPI_PM1_EVT_PORT 0x600   /* 4 bytes: PM1_STS (16 bits), PM1_EN (16 bits) */
#define ACPI_PM1_EVT_LEN  4
#define ACPI_PM1_CNT_PORT 0x604   /* 2 bytes: PM1_CNT */
#define ACPI_PM1_CNT_LEN  2
#define ACPI_RESET_PORT   0xCF9
#define ACPI_RESET_VALUE  0x06    /* RST_CPU | SYS_RST: what the FADT tells the guest to write */
#define ACPI_SCI_IRQ      9       /* ISA IRQ = GSI, level-triggered, active high (MADT override) */
#define ACPI_SLP_TYP_S5   0       /* the DSDT's _S5_ package */

/* PM1 register bits (ACPI 6.x 4.8.3). */
#define ACPI_PM1_PWRBTN    0x0100  /* PM1_STS / PM1_EN: power button */
#define ACPI_PM1_WAK_STS   0x8000
#define ACPI_PM1_CNT_SCI_EN 0x0001
#define ACPI_PM1_CNT_SLP_EN 0x2000
#define ACPI_PM1_CNT_SLP_TYP_SHIFT 10

struct vm;

/* Serializable register state (snapshots, migration). */
struct acpi_pm_state {
	uint16_t pm1_sts;
	uint16_t pm1_en;
	uint16_t pm1_cnt;     /* as last written, SLP_EN cleared */
	uint8_t reset_ctl;    /* 0xCF9 as last written, RST_CPU cleared */
};

/* What a write to PM1_CNT asks the machine to do. */
enum acpi_pm1_cnt_request { ACPI_PM1_CNT_NONE, ACPI_PM1_CNT_POWEROFF };
enum acpi_pm1_cnt_request acpi_pm1_cnt_decode(uint16_t value);

struct acpi_pm;
struct acpi_pm *acpi_pm_create(struct vm *vm);
void acpi_pm_destroy(struct acpi_pm *pm);
void acpi_pm_reset(struct acpi_pm *pm);
/* Handles the PM1 block and port 0xCF9; false for any other port. */
bool acpi_pm_pio(struct acpi_pm *pm, uint16_t port, void *data, unsigned len, bool is_write);
/* Presses the power button: PWRBTN_STS is set and, when the guest enabled
 * it, the SCI raised. The guest's ACPI button driver turns that into a
 * KEY_POWER event for its init to act on. */
int acpi_pm_press_power_button(struct acpi_pm *pm);
void acpi_pm_get_state(struct acpi_pm *pm, struct acpi_pm_state *s);
void acpi_pm_set_state(struct acpi_pm *pm, const struct acpi_pm_state *s);

#endif
