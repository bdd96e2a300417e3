/* QEMU's firmware configuration device (fw_cfg), the interface SeaBIOS,
 * OVMF and Linux's qemu_fw_cfg driver read the machine description from:
 * a selector port (0x510, 16-bit), a data port (0x511, one byte a read)
 * and the DMA interface (0x514 high / 0x518 low half of the big-endian
 * address of a descriptor in guest RAM).
 *
 * Every item is read-only to the guest: a DMA write is refused with the
 * error bit, a data-port write ignored. The guest is hostile: descriptors
 * and buffers must lie in RAM (guest_mem_ptr), lengths are the guest's. */
#ifndef KVZ_VMM_FW_CFG_H
#define KVZ_VMM_FW_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "guest_mem.h"

#define FW_CFG_PORT_SEL   0x510
#define FW_CFG_PORT_DATA  0x511
#define FW_CFG_PORT_DMA   0x514   /* high half; the low half at 0x518 starts it */

/* Selector keys (QEMU's docs/specs/fw_cfg.rst). */
#define FW_CFG_SIGNATURE  0x00
#define FW_CFG_ID         0x01
#define FW_CFG_RAM_SIZE   0x03
#define FW_CFG_NOGRAPHIC  0x04
#define FW_CFG_NB_CPUS    0x05
#define FW_CFG_BOOT_MENU  0x0e
#define FW_CFG_MAX_CPUS   0x0f
#define FW_CFG_FILE_DIR   0x19
#define FW_CFG_FILE_FIRST 0x20

/* DMA control bits. */
#define FW_CFG_DMA_ERROR  0x01
#define FW_CFG_DMA_READ   0x02
#define FW_CFG_DMA_SKIP   0x04
#define FW_CFG_DMA_SELECT 0x08
#define FW_CFG_DMA_WRITE  0x10

#define FW_CFG_NAME_LEN   56      /* file names, NUL included */
#define FW_CFG_MAX_FILES  32

struct fw_cfg;

/* The device with its signature and ID items. NULL when out of memory. */
struct fw_cfg *fw_cfg_create(struct guest_mem *mem);
void fw_cfg_destroy(struct fw_cfg *c);

/* Drops every item but the signature and ID (before the machine's items
 * are built again). */
void fw_cfg_clear(struct fw_cfg *c);

/* A numbered item (key < FW_CFG_FILE_FIRST or arch-local 0x8000+), or a
 * named file (its key assigned in order, the directory rebuilt). The data
 * is copied. Returns 0 or -errno (-ENOSPC, -EEXIST, -EINVAL for a name
 * that does not fit). */
int fw_cfg_add_item(struct fw_cfg *c, uint16_t key, const void *data, size_t len);
int fw_cfg_add_file(struct fw_cfg *c, const char *name, const void *data, size_t len);
/* Little-endian integer items, as QEMU stores them. */
int fw_cfg_add_u16(struct fw_cfg *c, uint16_t key, uint16_t v);
int fw_cfg_add_u64(struct fw_cfg *c, uint16_t key, uint64_t v);

/* Port I/O on 0x510-0x51B; returns true when the port is the device's. */
bool fw_cfg_pio(struct fw_cfg *c, uint16_t port, void *data, unsigned len, bool is_write);

/* Runs the DMA descriptor at gpa (what a write of the low address half
 * does). Returns the control word written back (0 = done, or the error
 * bit), or -1 when the descriptor itself is not in RAM (nothing written). */
int fw_cfg_dma(struct fw_cfg *c, uint64_t gpa);

/* Back to no item selected, offset 0 (system_reset). */
void fw_cfg_reset(struct fw_cfg *c);

#endif
