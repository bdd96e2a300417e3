/* A VM's disk from the cached VM layer (vm_image.h): copy, grow, and
 * write its own settings with debugfs. */
#include "vm_image.h"

#include "part_table.h"
#include "util.h"

#include <crypt.h>
#include <stdbool.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define SHADOW_GID 42 /* Debian's fixed gid of group shadow */

struct staging {
	char dir[PATH_MAX];
	FILE *script; /* debugfs commands */
};

static int fs_arg(const char *img, char *out, size_t outlen)
{
	return snprintf(out, outlen, "%s?offset=%u", img, VM_IMAGE_PART_OFFSET) < (int)outlen ? 0
											  : -1;
}

/* A file staged for the image: written here with its owner and mode, then
 * "write" puts it at dest (debugfs takes both from the local file). */
static int stage(struct staging *s, const char *dest, const char *text, size_t n, mode_t mode,
		 gid_t gid, char *err, size_t len)
{
	char local[PATH_MAX]; /* named by the script's length: one name per staged file */
	snprintf(local, sizeof(local), "%s/f%ld", s->dir, ftell(s->script));
	int fd = open(local, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, text, n) != (ssize_t)n || fchown(fd, 0, gid) < 0 ||
	    fchmod(fd, mode) < 0) {
		snprintf(err, len, "cannot stage %s: %s", dest, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	fprintf(s->script, "rm \"%s\"\nwrite \"%s\" \"%s\"\n", dest, local, dest);
	/* write keeps the local mode but not the group. */
	if (gid)
		fprintf(s->script, "sif \"%s\" gid %u\n", dest, (unsigned)gid);
	return 0;
}

static int stage_text(struct staging *s, const char *dest, const char *text, mode_t mode,
		      char *err, size_t len)
{
	return stage(s, dest, text, strlen(text), mode, 0, err, len);
}

static int stage_network(struct staging *s, const struct vm_image_opts *o, char *err,
			 size_t len)
{
	char text[1024];
	int n = snprintf(text, sizeof(text),
			 "auto lo\niface lo inet loopback\n\nauto eth0\n");
	if (o->ip)
		n += snprintf(text + n, sizeof(text) - (size_t)n,
			      "iface eth0 inet static\n\taddress %s\n", o->ip);
	else
		n += snprintf(text + n, sizeof(text) - (size_t)n, "iface eth0 inet dhcp\n");
	if (o->gw)
		snprintf(text + n, sizeof(text) - (size_t)n, "\tgateway %s\n", o->gw);
	if (stage_text(s, "/etc/network/interfaces", text, 0644, err, len) < 0)
		return -1;
	/* The host's name servers: the VM reaches the archive as the host does. */
	char *rc = read_text("/etc/resolv.conf");
	char resolv[1024] = "";
	size_t used = 0;
	for (char *save, *l = rc ? strtok_r(rc, "\n", &save) : NULL; l; l = strtok_r(NULL, "\n", &save))
		if (!strncmp(l, "nameserver ", 11) && used + strlen(l) + 2 < sizeof(resolv))
			used += (size_t)snprintf(resolv + used, sizeof(resolv) - used, "%s\n", l);
	free(rc);
	return stage_text(s, "/etc/resolv.conf", resolv, 0644, err, len);
}

static int stage_identity(struct staging *s, const char *hostname, char *err, size_t len)
{
	char text[512];
	snprintf(text, sizeof(text), "%s\n", hostname);
	if (stage_text(s, "/etc/hostname", text, 0644, err, len) < 0)
		return -1;
	snprintf(text, sizeof(text), "127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\tlocalhost ip6-localhost\n",
		 hostname);
	return stage_text(s, "/etc/hosts", text, 0644, err, len);
}

/* Host keys of the VM's own, made here: the layer has none, so two VMs
 * never share one. */
static int stage_host_keys(struct staging *s, char *err, size_t len)
{
	static const char *const types[] = {"ed25519", "ecdsa"};
	for (size_t i = 0; i < 2; i++) {
		char key[PATH_MAX], pub[PATH_MAX + 8], dest[128];
		snprintf(key, sizeof(key), "%s/host_%s", s->dir, types[i]);
		const char *argv[] = {"ssh-keygen", "-q", "-t", types[i], "-N", "", "-C", "",
				      "-f", key, NULL};
		if (run_quiet(argv, err, len) < 0)
			return -1;
		snprintf(pub, sizeof(pub), "%s.pub", key);
		snprintf(dest, sizeof(dest), "/etc/ssh/ssh_host_%s_key", types[i]);
		fprintf(s->script, "write \"%s\" \"%s\"\n", key, dest);
		fprintf(s->script, "write \"%s\" \"%s.pub\"\n", pub, dest);
	}
	return 0;
}

static int stage_ssh_key(struct staging *s, const char *file, char *err, size_t len)
{
	char *keys = read_text(file);
	if (!keys) {
		snprintf(err, len, "cannot read the ssh key file %s: %s", file, strerror(errno));
		return -1;
	}
	fprintf(s->script, "mkdir /root/.ssh\nsif /root/.ssh mode 040700\n");
	int rc = stage_text(s, "/root/.ssh/authorized_keys", keys, 0600, err, len);
	free(keys);
	return rc;
}

/* root's line of /etc/shadow with a yescrypt hash of the file's first line. */
static int stage_password(struct staging *s, const char *img, const char *file, char *err,
			  size_t len)
{
	char *pw = read_text(file);
	if (!pw) {
		snprintf(err, len, "cannot read the password file %s: %s", file, strerror(errno));
		free(pw);
		return -1;
	}
	pw[strcspn(pw, "\n")] = 0;
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data cd = {0};
	const char *hash = NULL;
	if (pw[0] && crypt_gensalt_rn("$y$", 0, NULL, 0, salt, sizeof(salt)))
		hash = crypt_r(pw, salt, &cd);
	explicit_bzero(pw, strlen(pw));
	free(pw);
	if (!hash || hash[0] == '*') {
		snprintf(err, len, "the password file %s is empty or cannot be hashed", file);
		return -1;
	}
	char fs[PATH_MAX + 32], req[64] = "cat /etc/shadow";
	fs_arg(img, fs, sizeof(fs));
	const char *argv[] = {"debugfs", "-R", req, fs, NULL};
	char *shadow = NULL;
	if (run_capture(argv, &shadow, err, len) < 0 || !shadow || strncmp(shadow, "root:", 5)) {
		if (!err[0] || shadow)
			snprintf(err, len, "the template's /etc/shadow does not start with root");
		free(shadow);
		return -1;
	}
	char *rest = strchr(shadow + 5, ':');
	size_t n = strlen(hash) + strlen(rest ? rest : "") + 8;
	char *text = malloc(n);
	int rc = -1;
	if (text && rest) {
		snprintf(text, n, "root:%s%s", hash, rest);
		rc = stage(s, "/etc/shadow", text, strlen(text), 0640, SHADOW_GID, err, len);
		explicit_bzero(text, strlen(text));
	}
	free(text);
	free(shadow);
	explicit_bzero(&cd, sizeof(cd));
	return rc;
}

static int copy_layer(const char *layer, const struct vm_image_opts *o, char *err, size_t len)
{
	struct stat st;
	if (stat(layer, &st) < 0) {
		snprintf(err, len, "cannot read %s: %s", layer, strerror(errno));
		return -1;
	}
	if (o->size < (uint64_t)st.st_size) {
		snprintf(err, len, "a %s VM disk needs at least %lluM", o->template,
			 (unsigned long long)((st.st_size + (1 << 20) - 1) >> 20));
		return -1;
	}
	if (path_exists(o->out)) {
		snprintf(err, len, "%s exists", o->out);
		return -1;
	}
	const char *cp[] = {"cp", "--sparse=always", "--reflink=auto", layer, o->out, NULL};
	return run_quiet(cp, err, len);
}

/* The partition to the end of the disk, then the file system to the end of
 * the partition. */
static int grow(const struct vm_image_opts *o, char *err, size_t len)
{
	uint64_t sectors = (o->size - VM_IMAGE_PART_OFFSET) / PART_SECTOR;
	if (sectors > UINT32_MAX) {
		snprintf(err, len, "a disk over 2 TiB needs GPT, which template disks do not have yet");
		return -1;
	}
	int fd = open(o->out, O_RDWR | O_CLOEXEC);
	uint8_t mbr[PART_SECTOR];
	if (fd < 0 || ftruncate(fd, (off_t)o->size) < 0 ||
	    pread(fd, mbr, sizeof(mbr), 0) != (ssize_t)sizeof(mbr)) {
		snprintf(err, len, "cannot grow %s: %s", o->out, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	uint32_t id;
	if (getrandom(&id, sizeof(id), 0) != sizeof(id))
		id = (uint32_t)getpid();
	part_table_write_mbr(mbr, id, VM_IMAGE_PART_OFFSET / PART_SECTOR, (uint32_t)sectors);
	ssize_t w = pwrite(fd, mbr, sizeof(mbr), 0);
	close(fd);
	if (w != (ssize_t)sizeof(mbr)) {
		snprintf(err, len, "cannot write the partition table of %s", o->out);
		return -1;
	}
	char fs[PATH_MAX + 32];
	fs_arg(o->out, fs, sizeof(fs));
	/* resize2fs would take the whole file, offset included, as the device. */
	char blocks[32];
	snprintf(blocks, sizeof(blocks), "%lluK", (unsigned long long)(sectors / 2));
	const char *resize[] = {"resize2fs", "-f", fs, blocks, NULL};
	const char *uuid[] = {"tune2fs", "-U", "random", fs, NULL};
	if (run_quiet(resize, err, len) < 0)
		return -1;
	/* ... and sets a regular file's length to the file system's, without
	 * the offset: the disk's own size again. */
	if (truncate(o->out, (off_t)o->size) < 0) {
		snprintf(err, len, "cannot size %s: %s", o->out, strerror(errno));
		return -1;
	}
	return run_quiet(uuid, err, len);
}

/* GRUB in the MBR and the gap, its menu in /boot/grub and the links it
 * boots: the same disk boots by firmware as well as directly. */
static int stage_boot_loader(struct staging *s, const char *img, char *err, size_t len)
{
	if (vm_grub_install(img, s->dir, err, len) < 0)
		return -1;
	fprintf(s->script, "mkdir /boot/grub\n");
	if (stage_text(s, "/boot/grub/grub.cfg", vm_grub_cfg, 0644, err, len) < 0)
		return -1;
	return vm_grub_links(img, s->script, err, len);
}

static int personalize(const struct vm_image_opts *o, vm_image_progress progress, char *err,
		       size_t len)
{
	struct staging s = {0};
	snprintf(s.dir, sizeof(s.dir), "%s.stage.XXXXXX", o->out);
	if (strpbrk(o->out, "\"\n") || !mkdtemp(s.dir)) {
		snprintf(err, len, "cannot stage files beside %s", o->out);
		return -1;
	}
	char script[PATH_MAX];
	snprintf(script, sizeof(script), "%s/script", s.dir);
	s.script = fopen(script, "we");
	int rc = s.script ? 0 : -1;
	if (rc < 0)
		snprintf(err, len, "cannot write %s: %s", script, strerror(errno));
	if (rc == 0) {
		progress("boot-loader", 0, 0);
		rc = stage_boot_loader(&s, o->out, err, len);
	}
	if (rc == 0)
		progress("personalize", 0, 0);
	if (rc == 0)
		rc = stage_identity(&s, o->hostname, err, len);
	if (rc == 0)
		rc = stage_network(&s, o, err, len);
	if (rc == 0)
		rc = stage_host_keys(&s, err, len);
	if (rc == 0 && o->ssh_key)
		rc = stage_ssh_key(&s, o->ssh_key, err, len);
	if (rc == 0 && o->password)
		rc = stage_password(&s, o->out, o->password, err, len);
	if (s.script && fclose(s.script) && rc == 0) {
		snprintf(err, len, "cannot write %s", script);
		rc = -1;
	}
	char fs[PATH_MAX + 32];
	fs_arg(o->out, fs, sizeof(fs));
	const char *argv[] = {"debugfs", "-w", "-f", script, fs, NULL};
	if (rc == 0)
		rc = run_quiet(argv, err, len);
	rm_rf(s.dir);
	return rc;
}

static int cat_starts(const char *img, const char *path, const char *want, char *err,
		      size_t len)
{
	char fs[PATH_MAX + 32], req[128];
	fs_arg(img, fs, sizeof(fs));
	snprintf(req, sizeof(req), "cat %s", path);
	const char *argv[] = {"debugfs", "-R", req, fs, NULL};
	char *got = NULL;
	int rc = run_capture(argv, &got, err, len);
	if (rc == 0 && (!got || strncmp(got, want, strlen(want)))) {
		snprintf(err, len, "%s did not reach %s", path, img);
		rc = -1;
	}
	free(got);
	return rc;
}

/* debugfs -f goes on after a failed command: read back what must be there. */
static int verify(const struct vm_image_opts *o, char *err, size_t len)
{
	if (cat_starts(o->out, "/etc/hostname", o->hostname, err, len) < 0 ||
	    cat_starts(o->out, "/boot/grub/grub.cfg", vm_grub_cfg, err, len) < 0)
		return -1;
	bool k, i;
	if (vm_grub_links_present(o->out, &k, &i, err, len) < 0)
		return -1;
	if (!k || !i) {
		snprintf(err, len, "/vmlinuz or /initrd.img did not reach %s", o->out);
		return -1;
	}
	return 0;
}

static bool host_ok(const char *h)
{
	size_t n = strlen(h);
	return n && n < 64 && strspn(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.") == n && h[0] != '-';
}

int vm_image_make(const struct vm_image_opts *o, vm_image_progress progress, char *err,
		  size_t len)
{
	if (!host_ok(o->hostname)) {
		snprintf(err, len, "bad hostname \"%s\" (letters, digits, '-' and '.')", o->hostname);
		return -1;
	}
	char layer[PATH_MAX];
	if (vm_layer_ensure(o->template, o->cache_dir, layer, sizeof(layer), progress, err, len) < 0)
		return -1;
	progress("copy", 0, o->size);
	if (copy_layer(layer, o, err, len) < 0)
		return -1;
	progress("grow", 0, o->size);
	int rc = grow(o, err, len);
	if (rc == 0)
		rc = personalize(o, progress, err, len);
	if (rc == 0)
		rc = verify(o, err, len);
	if (rc < 0)
		unlink(o->out);
	else
		progress("done", o->size, o->size);
	return rc;
}
