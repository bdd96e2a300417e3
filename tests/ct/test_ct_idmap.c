/* The id range pool: which host ids /etc/passwd, /etc/group, /etc/subuid
 * and /etc/subgid take, and the first free 64K range around them and the
 * ranges already given out. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "idmap.h"
#include "idmap_pool.h"

static void parses_databases(void **state)
{
	(void)state;
	struct id_spans s = {0};
	assert_int_equal(id_spans_add_db(&s, "root:x:0:0:root:/root:/bin/bash\n"
					  "# a comment:x:5:5\n"
					  "broken line\n"
					  "big:x:600000:600000::/:/bin/false\n"
					  "last:x:65534:65534::/:/bin/false"), 0);
	assert_int_equal(s.n, 3);
	assert_true(id_spans_overlap(&s, 600000, 1));
	assert_true(id_spans_overlap(&s, 65534, 1));
	assert_false(id_spans_overlap(&s, 5, 1));
	assert_int_equal(id_spans_add_subid(&s, "alice:100000:65536\nbob:x:1\nnone:700000:0\n"), 0);
	assert_int_equal(s.n, 4);
	assert_true(id_spans_overlap(&s, 165535, 1));
	assert_false(id_spans_overlap(&s, 165536, 1));
	assert_false(id_spans_overlap(&s, 700000, 1));
	id_spans_free(&s);
}

static void picks_first_free_range(void **state)
{
	(void)state;
	struct id_spans s = {0};
	assert_int_equal(idmap_pool_pick(IDMAP_POOL_START, IDMAP_POOL_END, IDMAP_COUNT, NULL, 0, &s),
			 0x80000);
	uint32_t used[] = {0x80000, 0xa0000};
	assert_int_equal(idmap_pool_pick(IDMAP_POOL_START, IDMAP_POOL_END, IDMAP_COUNT, used, 2, &s),
			 0x90000);
	/* A host user inside 0x90000..0x9ffff and a subuid range over the
	 * next two push the pick past them. */
	assert_int_equal(id_spans_add_db(&s, "u:x:600000:1::/:/bin/sh\n"), 0);
	assert_int_equal(id_spans_add_subid(&s, "v:655360:100000\n"), 0);
	assert_int_equal(idmap_pool_pick(IDMAP_POOL_START, IDMAP_POOL_END, IDMAP_COUNT, used, 2, &s),
			 0xc0000);
	id_spans_free(&s);
}

static void exhausted_pool_gives_zero(void **state)
{
	(void)state;
	struct id_spans s = {0};
	uint32_t used[] = {0x80000, 0x90000};
	assert_int_equal(idmap_pool_pick(0x80000, 0xa0000, IDMAP_COUNT, used, 2, &s), 0);
	assert_int_equal(id_spans_add_subid(&s, "all:0:4294967295\n"), 0);
	assert_int_equal(idmap_pool_pick(IDMAP_POOL_START, IDMAP_POOL_END, IDMAP_COUNT, NULL, 0, &s), 0);
	id_spans_free(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(parses_databases),
		cmocka_unit_test(picks_first_free_range),
		cmocka_unit_test(exhausted_pool_gives_zero),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
