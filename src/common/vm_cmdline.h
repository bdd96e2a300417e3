/* The kernel command line of a template VM's disk, around its root=: the
 * disk's grub.cfg (src/ct/vm_image.h, VM_IMAGE_CMDLINE) and kvzd's direct
 * boot of the same disk (src/daemon/guest_vm.c) must boot the kernel the
 * same way, or a firmware boot and a direct boot differ in more than the
 * firmware (and bench/template_boot_lab.sh would compare unlike boots). */
#ifndef KVZ_COMMON_VM_CMDLINE_H
#define KVZ_COMMON_VM_CMDLINE_H

#define KVZ_VM_CMDLINE_HEAD "console=ttyS0 root="
#define KVZ_VM_CMDLINE_TAIL " ro net.ifnames=0"

#endif
