/* MC146818 CMOS/RTC on ports 0x70/0x71: wall-clock time in BCD. */
#ifndef KVZ_VMM_RTC_H
#define KVZ_VMM_RTC_H

#include <stdbool.h>
#include <stdint.h>

/* Serializable device state. Time registers are not stored: they are read
 * from the host clock on each access. */
struct rtc_state {
	uint8_t index;
	uint8_t ram[128];
};

struct rtc;
struct rtc *rtc_create(void);
void rtc_destroy(struct rtc *r);
void rtc_reset(struct rtc *r);
bool rtc_pio(struct rtc *r, uint16_t port, void *data, unsigned len, bool is_write);
void rtc_get_state(struct rtc *r, struct rtc_state *s);
void rtc_set_state(struct rtc *r, const struct rtc_state *s);

#endif
