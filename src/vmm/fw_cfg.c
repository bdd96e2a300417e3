/* fw_cfg: items, the legacy selector/data ports and the DMA interface. */
#include "fw_cfg.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ITEMS 64
#define FW_CFG_WRITE_CHANNEL 0x4000   /* selector bit: the guest means to write */
#define FW_CFG_VERSION       0x01     /* traditional interface */
#define FW_CFG_VERSION_DMA   0x02
#define DMA_DESC_LEN 16               /* be32 control, be32 length, be64 address */
/* What a read of the DMA address register returns: "QEMU CFG". */
#define DMA_SIGNATURE 0x51454d5520434647ull

struct item {
	uint16_t key;
	uint32_t len;
	uint8_t *data;
	char name[FW_CFG_NAME_LEN];   /* empty unless a file */
};

struct fw_cfg {
	struct guest_mem *mem;
	/* Guards everything below: vCPUs may race on the ports. */
	pthread_mutex_t lock;
	struct item items[MAX_ITEMS];
	unsigned nitems;
	unsigned nfiles;
	uint16_t selector;
	uint32_t offset;              /* into the selected item */
	uint32_t dma_hi;              /* high half of the descriptor address */
};

static uint32_t be32(uint32_t v) { return __builtin_bswap32(v); }

static struct item *find(struct fw_cfg *c, uint16_t key)
{
	for (unsigned i = 0; i < c->nitems; i++)
		if (c->items[i].key == key)
			return &c->items[i];
	return NULL;
}

static void free_item(struct item *it)
{
	free(it->data);
	memset(it, 0, sizeof(*it));
}

/* Adds or replaces key's item. */
static int put_item(struct fw_cfg *c, uint16_t key, const char *name, const void *data, size_t len)
{
	if (len > UINT32_MAX)
		return -EINVAL;
	uint8_t *copy = malloc(len ? len : 1);
	if (!copy)
		return -ENOMEM;
	if (len)
		memcpy(copy, data, len);
	struct item *it = find(c, key);
	if (!it) {
		if (c->nitems == MAX_ITEMS) {
			free(copy);
			return -ENOSPC;
		}
		it = &c->items[c->nitems++];
	} else {
		free_item(it);
	}
	it->key = key;
	it->len = (uint32_t)len;
	it->data = copy;
	if (name)
		strcpy(it->name, name);
	return 0;
}

/* The file directory: be32 count, then per file be32 size, be16 key,
 * u16 reserved, the name padded to 56 bytes. */
static int rebuild_dir(struct fw_cfg *c)
{
	uint8_t dir[4 + FW_CFG_MAX_FILES * 64];
	memset(dir, 0, sizeof(dir));
	uint32_t n = be32(c->nfiles);
	memcpy(dir, &n, 4);
	size_t at = 4;
	for (unsigned k = 0; k < c->nfiles; k++) {
		const struct item *it = find(c, (uint16_t)(FW_CFG_FILE_FIRST + k));
		if (!it)
			return -EINVAL;
		uint32_t size = be32(it->len);
		uint16_t key = __builtin_bswap16(it->key);
		memcpy(dir + at, &size, 4);
		memcpy(dir + at + 4, &key, 2);
		memcpy(dir + at + 8, it->name, FW_CFG_NAME_LEN);
		at += 64;
	}
	return put_item(c, FW_CFG_FILE_DIR, NULL, dir, at);
}

int fw_cfg_add_item(struct fw_cfg *c, uint16_t key, const void *data, size_t len)
{
	if (key >= FW_CFG_FILE_FIRST && key < 0x8000)
		return -EINVAL;   /* file keys are assigned by fw_cfg_add_file */
	pthread_mutex_lock(&c->lock);
	int rc = put_item(c, key, NULL, data, len);
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int fw_cfg_add_file(struct fw_cfg *c, const char *name, const void *data, size_t len)
{
	if (!name[0] || strlen(name) >= FW_CFG_NAME_LEN)
		return -EINVAL;
	pthread_mutex_lock(&c->lock);
	int rc = 0;
	for (unsigned i = 0; i < c->nitems && rc == 0; i++)
		if (!strcmp(c->items[i].name, name))
			rc = -EEXIST;
	if (rc == 0 && c->nfiles == FW_CFG_MAX_FILES)
		rc = -ENOSPC;
	if (rc == 0)
		rc = put_item(c, (uint16_t)(FW_CFG_FILE_FIRST + c->nfiles), name, data, len);
	if (rc == 0) {
		c->nfiles++;
		rc = rebuild_dir(c);
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int fw_cfg_add_u16(struct fw_cfg *c, uint16_t key, uint16_t v)
{
	uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
	return fw_cfg_add_item(c, key, b, sizeof(b));
}

int fw_cfg_add_u64(struct fw_cfg *c, uint16_t key, uint64_t v)
{
	uint8_t b[8];
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	return fw_cfg_add_item(c, key, b, sizeof(b));
}

static void add_fixed_items(struct fw_cfg *c)
{
	uint32_t id = FW_CFG_VERSION | FW_CFG_VERSION_DMA;
	uint8_t idb[4] = {(uint8_t)id, 0, 0, 0};
	put_item(c, FW_CFG_SIGNATURE, NULL, "QEMU", 4);
	put_item(c, FW_CFG_ID, NULL, idb, sizeof(idb));
}

struct fw_cfg *fw_cfg_create(struct guest_mem *mem)
{
	struct fw_cfg *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->mem = mem;
	pthread_mutex_init(&c->lock, NULL);
	add_fixed_items(c);
	if (c->nitems != 2) {
		fw_cfg_destroy(c);
		return NULL;
	}
	return c;
}

static void clear_locked(struct fw_cfg *c)
{
	for (unsigned i = 0; i < c->nitems; i++)
		free_item(&c->items[i]);
	c->nitems = 0;
	c->nfiles = 0;
	c->selector = 0;
	c->offset = 0;
	c->dma_hi = 0;
}

void fw_cfg_destroy(struct fw_cfg *c)
{
	if (!c)
		return;
	clear_locked(c);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

void fw_cfg_clear(struct fw_cfg *c)
{
	pthread_mutex_lock(&c->lock);
	clear_locked(c);
	add_fixed_items(c);
	pthread_mutex_unlock(&c->lock);
}

void fw_cfg_reset(struct fw_cfg *c)
{
	pthread_mutex_lock(&c->lock);
	c->selector = 0;
	c->offset = 0;
	c->dma_hi = 0;
	pthread_mutex_unlock(&c->lock);
}

static void select_key(struct fw_cfg *c, uint16_t key)
{
	c->selector = key;
	c->offset = 0;
}

/* The selected item; NULL for a key without one (reads give zeros). */
static const struct item *selected(struct fw_cfg *c)
{
	return find(c, (uint16_t)(c->selector & ~FW_CFG_WRITE_CHANNEL));
}

static uint8_t data_read_byte(struct fw_cfg *c)
{
	const struct item *it = selected(c);
	if (!it || c->offset >= it->len)
		return 0;
	return it->data[c->offset++];
}

/* Copies len bytes of the selected item from the current offset to dst,
 * zeros past its end, and advances the offset (clamped to the item). */
static void read_into(struct fw_cfg *c, uint8_t *dst, uint32_t len)
{
	const struct item *it = selected(c);
	uint32_t have = it && c->offset < it->len ? it->len - c->offset : 0;
	uint32_t n = len < have ? len : have;
	if (n)
		memcpy(dst, it->data + c->offset, n);
	memset(dst + n, 0, len - n);
	c->offset += n;
}

static void skip(struct fw_cfg *c, uint32_t len)
{
	const struct item *it = selected(c);
	uint32_t have = it && c->offset < it->len ? it->len - c->offset : 0;
	c->offset += len < have ? len : have;
}

/* One descriptor's transfer; returns the control word to write back. */
static uint32_t dma_transfer(struct fw_cfg *c, uint32_t control, uint32_t len, uint64_t addr)
{
	if (control & FW_CFG_DMA_SELECT)
		select_key(c, (uint16_t)(control >> 16));
	if (control & FW_CFG_DMA_READ) {
		uint8_t *dst = len ? guest_mem_ptr(c->mem, addr, len) : NULL;
		if (len && !dst)
			return FW_CFG_DMA_ERROR;   /* buffer not (wholly) in RAM */
		if (len) {
			read_into(c, dst, len);
			guest_mem_mark_dirty(c->mem, addr, len);
		}
		return 0;
	}
	if (control & FW_CFG_DMA_WRITE)
		return FW_CFG_DMA_ERROR;           /* every item is read-only */
	if (control & FW_CFG_DMA_SKIP)
		skip(c, len);
	return 0;
}

int fw_cfg_dma(struct fw_cfg *c, uint64_t gpa)
{
	uint8_t *desc = guest_mem_ptr(c->mem, gpa, DMA_DESC_LEN);
	if (!desc)
		return -1;
	uint32_t control, len;
	uint64_t addr;
	/* Read once: another vCPU may change the descriptor meanwhile. */
	memcpy(&control, desc, 4);
	memcpy(&len, desc + 4, 4);
	memcpy(&addr, desc + 8, 8);
	control = be32(control);
	len = be32(len);
	addr = __builtin_bswap64(addr);
	pthread_mutex_lock(&c->lock);
	uint32_t result = dma_transfer(c, control, len, addr);
	pthread_mutex_unlock(&c->lock);
	uint32_t out = be32(result);
	memcpy(desc, &out, 4);
	guest_mem_mark_dirty(c->mem, gpa, 4);
	return (int)result;
}

static void dma_port(struct fw_cfg *c, uint16_t port, uint8_t *b, unsigned len, bool is_write)
{
	unsigned off = port - FW_CFG_PORT_DMA;
	if (!is_write) {
		/* The register reads as the DMA signature, big-endian. */
		for (unsigned i = 0; i < len; i++)
			b[i] = off + i < 8 ? (uint8_t)(DMA_SIGNATURE >> (56 - 8 * (off + i))) : 0xFF;
		return;
	}
	if (len != 4 || (off != 0 && off != 4))
		return;   /* only aligned 32-bit halves */
	uint32_t v;
	memcpy(&v, b, 4);
	v = be32(v);
	if (off == 0) {
		pthread_mutex_lock(&c->lock);
		c->dma_hi = v;
		pthread_mutex_unlock(&c->lock);
		return;
	}
	pthread_mutex_lock(&c->lock);
	uint64_t gpa = (uint64_t)c->dma_hi << 32 | v;
	c->dma_hi = 0;
	pthread_mutex_unlock(&c->lock);
	fw_cfg_dma(c, gpa);
}

bool fw_cfg_pio(struct fw_cfg *c, uint16_t port, void *data, unsigned len, bool is_write)
{
	uint8_t *b = data;
	if (port >= FW_CFG_PORT_DMA && port < FW_CFG_PORT_DMA + 8) {
		dma_port(c, port, b, len, is_write);
		return true;
	}
	if (port != FW_CFG_PORT_SEL && port != FW_CFG_PORT_DATA)
		return false;
	pthread_mutex_lock(&c->lock);
	if (port == FW_CFG_PORT_SEL) {
		if (is_write && len >= 2)
			select_key(c, (uint16_t)(b[0] | b[1] << 8));
		else if (!is_write)
			memset(b, 0, len);
	} else if (!is_write) {
		/* One byte a read on x86; wider reads get successive bytes. */
		for (unsigned i = 0; i < len; i++)
			b[i] = data_read_byte(c);
	}
	/* Data-port writes: every item is read-only, ignored. */
	pthread_mutex_unlock(&c->lock);
	return true;
}
