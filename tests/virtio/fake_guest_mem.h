/* Host-only guest memory for unit tests and fuzzers (see the .c file). */
#ifndef KVZ_TESTS_FAKE_GUEST_MEM_H
#define KVZ_TESTS_FAKE_GUEST_MEM_H

#include "guest_mem.h"

int fake_guest_mem_init(struct guest_mem *m, uint64_t lo_size, uint64_t hi_size);
void fake_guest_mem_destroy(struct guest_mem *m);

#endif
