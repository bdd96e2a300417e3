/* libFuzzer target: fw_cfg's guest-facing side. The input's first part is
 * guest RAM (descriptors and buffers the fuzzer chooses, low and high
 * RAM), the rest a sequence of port accesses: selector writes, data-port
 * reads, DMA address writes (any address, in RAM or not). Checks that no
 * descriptor makes the device touch memory outside guest RAM or crash,
 * that every DMA ends as done, error or ignored, and that the items stay
 * as they were (all are read-only). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_guest_mem.h"
#include "fw_cfg.h"

#define LO_RAM 0x10000u
#define HI_RAM 0x1000u
#define RAM_FROM_INPUT 2048u
#define OP_LEN 9          /* op byte + 64-bit argument */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char file_data[] = "a file the firmware reads";

static void check_signature(struct fw_cfg *c)
{
	uint16_t sel = FW_CFG_SIGNATURE;
	uint8_t sig[4];
	fw_cfg_pio(c, FW_CFG_PORT_SEL, &sel, 2, true);
	fw_cfg_pio(c, FW_CFG_PORT_DATA, sig, 4, false);
	if (memcmp(sig, "QEMU", 4))
		abort();   /* a guest changed a read-only item */
}

static void run_op(struct fw_cfg *c, uint8_t op, uint64_t arg)
{
	uint8_t buf[8];
	switch (op % 5) {
	case 0: {
		uint16_t key = (uint16_t)arg;
		fw_cfg_pio(c, FW_CFG_PORT_SEL, &key, 2, true);
		break;
	}
	case 1:
		fw_cfg_pio(c, FW_CFG_PORT_DATA, buf, 1 + (unsigned)(arg % 8), false);
		break;
	case 2: {
		int r = fw_cfg_dma(c, arg % 2 ? arg : arg % LO_RAM);   /* mostly in RAM */
		if (r != -1 && r != 0 && r != FW_CFG_DMA_ERROR)
			abort();
		break;
	}
	case 3: {   /* the DMA ports, any width and offset */
		uint32_t v = (uint32_t)arg;
		fw_cfg_pio(c, (uint16_t)(FW_CFG_PORT_DMA + (arg >> 32) % 8), &v,
			   1u << ((arg >> 40) % 3), true);
		break;
	}
	default:
		fw_cfg_pio(c, FW_CFG_PORT_DATA, &arg, 1, true);   /* ignored */
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct guest_mem mem;
	if (fake_guest_mem_init(&mem, LO_RAM, HI_RAM) < 0)
		return 0;
	size_t ram = size < RAM_FROM_INPUT ? size : RAM_FROM_INPUT;
	memcpy(mem.host, data, ram);
	memcpy(mem.host + LO_RAM, data, ram < HI_RAM ? ram : HI_RAM);
	struct fw_cfg *c = fw_cfg_create(&mem);
	if (!c || fw_cfg_add_file(c, "etc/test", file_data, sizeof(file_data)) < 0 ||
	    fw_cfg_add_u16(c, FW_CFG_NB_CPUS, 2) < 0)
		abort();
	for (size_t at = ram; at + OP_LEN <= size; at += OP_LEN) {
		uint64_t arg;
		memcpy(&arg, data + at + 1, 8);
		run_op(c, data[at], arg);
	}
	check_signature(c);
	fw_cfg_destroy(c);
	fake_guest_mem_destroy(&mem);
	return 0;
}
