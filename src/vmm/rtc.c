#include "rtc.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RTC_INDEX_PORT 0x70
#define RTC_DATA_PORT 0x71
#define REG_SEC 0x00
#define REG_MIN 0x02
#define REG_HOUR 0x04
#define REG_WDAY 0x06
#define REG_MDAY 0x07
#define REG_MON 0x08
#define REG_YEAR 0x09
#define REG_A 0x0A
#define REG_B 0x0B
#define REG_C 0x0C
#define REG_D 0x0D
#define REG_CENTURY 0x32

struct rtc {
	pthread_mutex_t lock;   /* vCPUs may race on index and data */
	struct rtc_state st;
};

static uint8_t bcd(int v) { return (uint8_t)(((v / 10) << 4) | (v % 10)); }

void rtc_reset(struct rtc *r)
{
	pthread_mutex_lock(&r->lock);
	memset(&r->st, 0, sizeof(r->st));
	r->st.ram[REG_A] = 0x26;   /* 32.768 kHz time base, 1024 Hz rate */
	r->st.ram[REG_B] = 0x02;   /* 24-hour mode, BCD */
	r->st.ram[REG_D] = 0x80;   /* battery good */
	pthread_mutex_unlock(&r->lock);
}

struct rtc *rtc_create(void)
{
	struct rtc *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	pthread_mutex_init(&r->lock, NULL);
	rtc_reset(r);
	return r;
}

void rtc_destroy(struct rtc *r)
{
	if (!r)
		return;
	pthread_mutex_destroy(&r->lock);
	free(r);
}

static uint8_t read_reg(struct rtc *r, uint8_t idx)
{
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	switch (idx) {
	case REG_SEC: return bcd(tm.tm_sec);
	case REG_MIN: return bcd(tm.tm_min);
	case REG_HOUR: return bcd(tm.tm_hour);
	case REG_WDAY: return bcd(tm.tm_wday + 1);
	case REG_MDAY: return bcd(tm.tm_mday);
	case REG_MON: return bcd(tm.tm_mon + 1);
	case REG_YEAR: return bcd(tm.tm_year % 100);
	case REG_CENTURY: return bcd((tm.tm_year + 1900) / 100);
	case REG_C: return 0;   /* no interrupt flags: no RTC interrupts */
	default: return r->st.ram[idx];
	}
}

bool rtc_pio(struct rtc *r, uint16_t port, void *data, unsigned len, bool is_write)
{
	if (port != RTC_INDEX_PORT && port != RTC_DATA_PORT)
		return false;
	uint8_t *b = data;
	pthread_mutex_lock(&r->lock);
	if (port == RTC_INDEX_PORT) {
		if (is_write)
			r->st.index = b[0] & 0x7F;   /* bit 7 is the NMI mask */
		else
			b[0] = 0xFF;
	} else if (is_write) {
		if (r->st.index != REG_C && r->st.index != REG_D)
			r->st.ram[r->st.index] = b[0];
	} else {
		b[0] = read_reg(r, r->st.index);
	}
	for (unsigned i = 1; i < len; i++)
		if (!is_write)
			b[i] = 0xFF;
	pthread_mutex_unlock(&r->lock);
	return true;
}

void rtc_get_state(struct rtc *r, struct rtc_state *s)
{
	pthread_mutex_lock(&r->lock);
	*s = r->st;
	pthread_mutex_unlock(&r->lock);
}

void rtc_set_state(struct rtc *r, const struct rtc_state *s)
{
	pthread_mutex_lock(&r->lock);
	r->st = *s;
	pthread_mutex_unlock(&r->lock);
}
