/* boot_keep_files(): after the first read, a kernel or initrd is read
 * again through the descriptor kept open (system_reset under the seccomp
 * filter cannot open files); boot_forget_files() goes back to the path. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "boot.h"

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

static void assert_reads(const char *path, const char *want)
{
	char err[256] = "";
	size_t size = 0;
	char *data = boot_read_file(path, &size, err, sizeof(err));
	if (!data)
		fail_msg("boot_read_file: %s", err);
	assert_int_equal(size, strlen(want));
	assert_memory_equal(data, want, size);
	free(data);
}

static void test_kept_files_survive_changes_and_removal(void **state)
{
	(void)state;
	char path[] = "/tmp/kvz-boot-keep-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	write_file(path, "first image");

	assert_reads(path, "first image");     /* not kept yet: read from disk */
	write_file(path, "second image");
	assert_reads(path, "second image");

	boot_keep_files();
	assert_reads(path, "second image");    /* kept from here on */
	write_file(path, "third, longer image");
	assert_reads(path, "third, longer image");   /* rewritten in place: the same inode */
	char other[sizeof(path) + 4];
	snprintf(other, sizeof(other), "%s.new", path);
	write_file(other, "replacement");
	assert_int_equal(rename(other, path), 0);
	assert_reads(path, "third, longer image");   /* the kept inode, not the new file */
	unlink(path);
	assert_reads(path, "third, longer image");   /* no open needed at all */

	boot_forget_files();
	char err[256] = "";
	size_t size;
	assert_null(boot_read_file(path, &size, err, sizeof(err)));
	assert_non_null(strstr(err, "cannot open"));
}

static void test_missing_file_is_not_kept(void **state)
{
	(void)state;
	boot_keep_files();
	char err[256] = "";
	size_t size;
	assert_null(boot_read_file("/nonexistent/kvz-kernel", &size, err, sizeof(err)));
	assert_null(boot_read_file("/nonexistent/kvz-kernel", &size, err, sizeof(err)));
	assert_non_null(strstr(err, "cannot open /nonexistent/kvz-kernel"));
	boot_forget_files();
}

/* Larger than the first read buffer: the reads grow it. */
static void test_large_file_read_whole(void **state)
{
	(void)state;
	char path[] = "/tmp/kvz-boot-big-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	size_t len = (3u << 20) + 123;
	uint8_t *data = malloc(len);
	assert_non_null(data);
	for (size_t i = 0; i < len; i++)
		data[i] = (uint8_t)(i * 31 + i / 4096);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
	boot_keep_files();
	for (int round = 0; round < 2; round++) {   /* opened, then kept */
		char err[256] = "";
		size_t size = 0;
		uint8_t *got = boot_read_file(path, &size, err, sizeof(err));
		assert_non_null(got);
		assert_int_equal(size, len);
		assert_memory_equal(got, data, len);
		free(got);
	}
	boot_forget_files();
	unlink(path);
	free(data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kept_files_survive_changes_and_removal),
		cmocka_unit_test(test_missing_file_is_not_kept),
		cmocka_unit_test(test_large_file_read_whole),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
