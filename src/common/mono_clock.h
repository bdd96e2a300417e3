/* Milliseconds of CLOCK_MONOTONIC: for timeouts and deadlines, which a
 * change of the wall clock must not move. */
#ifndef KVZ_MONO_CLOCK_H
#define KVZ_MONO_CLOCK_H

#include <stdint.h>

int64_t kvz_mono_ms(void);

#endif
