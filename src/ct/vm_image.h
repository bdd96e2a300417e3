/* VM disk images from the container templates (template.h): one cached
 * Debian tree becomes a container's private area or, with a kernel and
 * what a machine needs added once ("the VM layer"), a bootable disk.
 *
 * The VM layer is cached as CACHE/debian-vm.img: a raw disk with one MBR
 * partition (LBA 2048 on, bootable, type 0x83) holding an ext4 file system
 * labelled kvzroot, made by mkfs.ext4 -d from the unpacked template plus
 * linux-image-amd64, udev, openssh-server, ifupdown, isc-dhcp-client and
 * acpid installed with apt in a chroot. Init is sysvinit, as in the
 * container template: one init for both, and a VM boots to its getty on
 * ttyS0 without systemd's units. A VM's disk is a sparse copy of it,
 * grown to the asked size (partition and file system), with hostname,
 * network, credentials and its own ssh host keys written by debugfs: no
 * loop device or mount, so the per-VM step runs unprivileged.
 *
 * Every VM disk also boots by firmware (vm_grub.c): GRUB for BIOS from
 * Debian's grub-pc-bin, boot.img's code in the MBR and core.img (made by
 * grub-mkimage) from sector 1 in the 1 MiB gap, its /boot/grub/grub.cfg
 * booting Debian's /vmlinuz and /initrd.img links on the serial console.
 * Without grub-pc-bin no disk is made: one error line names the package
 * (a disk that boots only one of the two ways kvz offers would fail late,
 * at a `kvz set --boot firmware`). */
#ifndef KVZ_CT_VM_IMAGE_H
#define KVZ_CT_VM_IMAGE_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>

#include "vm_cmdline.h"

#define VM_IMAGE_PART_OFFSET (1024u * 1024u)
/* The kernel's command line in GRUB's menu; kvzd's direct boot passes the
 * same around the root it found (src/common/vm_cmdline.h). */
#define VM_IMAGE_CMDLINE KVZ_VM_CMDLINE_HEAD "/dev/vda1" KVZ_VM_CMDLINE_TAIL

struct vm_image_opts {
	const char *template;     /* "debian" */
	const char *cache_dir;
	const char *out;          /* the disk to write (must not exist) */
	uint64_t size;            /* bytes; at least the layer's size */
	const char *hostname;
	const char *ip;           /* A.B.C.D/P, or NULL for DHCP */
	const char *gw;           /* NULL: none */
	const char *ssh_key;      /* file of authorized_keys lines, or NULL */
	const char *password;     /* file holding root's password, or NULL */
};

/* Called at each phase ("layer", "copy", "grow", "boot-loader",
 * "personalize") with bytes
 * done of total (0 when unknown). */
typedef void (*vm_image_progress)(const char *phase, uint64_t done, uint64_t total);

/* Makes the cached layer for template when missing; its path into out. */
int vm_layer_ensure(const char *template, const char *cache_dir, char *out, size_t outlen,
		    vm_image_progress progress, char *err, size_t len);
/* GRUB for BIOS (vm_grub.c): the directory of Debian's grub-pc-bin
 * (KVZ_GRUB_PC_DIR overrides it), boot.img's code into img's MBR and a
 * core.img made in work into the sectors before the partition; the one
 * error line names the package when it is missing. */
const char *vm_grub_dir(void);
int vm_grub_install(const char *img, const char *work, char *err, size_t len);
/* /boot/grub/grub.cfg's text, and debugfs commands into script that make
 * /vmlinuz and /initrd.img (to the newest kernel) where img lacks them. */
extern const char vm_grub_cfg[];
int vm_grub_links(const char *img, FILE *script, char *err, size_t len);
int vm_grub_links_present(const char *img, bool *kernel, bool *initrd, char *err, size_t len);
/* Makes o->out; on failure it is removed and err says why. */
int vm_image_make(const struct vm_image_opts *o, vm_image_progress progress, char *err,
		  size_t len);

#endif
