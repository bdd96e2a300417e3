/* kvz-vmm: parses the command line, builds the machine, runs it until the
 * guest powers off or reboots, QMP quits it, or something fails. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <jansson.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "boot.h"
#include "console.h"
#include "cpuid.h"
#include "device_hooks.h"
#include "log.h"
#include "migration_live.h"
#include "migration_tcp.h"
#include "parse.h"
#include "qmp_control.h"
#include "phase_trace.h"
#include "seccomp_filter.h"
#include "serial.h"
#include "snapshot.h"
#include "stop_watchdog.h"
#include "virtio/virtio_devices.h"
#include "vm.h"

#define MAX_DEVICES 16
/* A stop ends the process within about twice this: the vCPU threads get
 * this long to leave their devices, then the teardown as long again. */
#define STOP_LIMIT_S 5

struct options {
	struct boot_config boot;
	struct vm_config vm;
	const char *qmp_path;
	const char *console_socket;
	const char *name;
	enum seccomp_mode seccomp;
	const char *disks[MAX_DEVICES];
	const char *nets[MAX_DEVICES];
	struct virtio_options virtio;
	const char *incoming;      /* file:PATH or fd:N: restore a snapshot;
				    * defer, tcp:ADDR:PORT or fd:N of a socket:
				    * a live migration's stream */
	bool restore_read;         /* --restore-ram=read */
	bool bench_phases;         /* --bench-phases */
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: kvz-vmm --kernel PATH [--initrd PATH] [--cmdline STR] [--memory SIZE]\n"
		"       kvz-vmm --firmware bios|PATH [--boot disk|cdrom|N] [--cdrom ISO] ...\n"
		"               [--cpus N] [--cpu-model host|kvz64] [--qmp PATH]\n"
		"               [--console-socket PATH] [--name NAME]\n"
		"               [--disk PATH[,readonly][,format=raw|qcow2][,num-queues=N][,aio=io_uring|sync]]...\n"
		"               [--net tap=NAME[,mac=MAC][,bridge=BR][,vhost=auto|on|off]]... [--balloon[=deflate-on-oom]] [--rng]\n"
		"               [--seccomp=on|off|log] [--bench-first-exit] [--bench-phases] [--verbose]\n"
		"               [--incoming file:PATH|fd:N|tcp:ADDR:PORT|defer] [--restore-ram map|read] [--paused]\n"
		"               [--memory-backing anon|memfd] [--dirty-log auto|manual|legacy]\n"
		"  --firmware boot through a firmware instead of a kernel: bios is Debian's\n"
		"             SeaBIOS (/usr/share/seabios), PATH another image; its console\n"
		"             is the serial port\n"
		"  --boot     with --firmware: boot from the disks (disk), the CD-ROM (cdrom)\n"
		"             or --disk N (counted from 0) first; default: the firmware's order\n"
		"  --cdrom    a read-only CD-ROM (virtio-scsi) holding the ISO image (\"\": an\n"
		"             empty drive); QMP eject / blockdev-change-medium change it live\n"
		"  --seccomp  system call allow-list once the machine is built (default on;\n"
		"             log: allow and log what the list lacks, to the kernel log)\n"
		"  --incoming restore the snapshot (QMP migrate) instead of booting; the\n"
		"             machine options must be those of the saved machine;\n"
		"             tcp:ADDR:PORT (unauthenticated, for manual use), a socket's\n"
		"             fd:N, or defer (QMP migrate-incoming fd:NAME) take a live\n"
		"             migration's stream; the VM runs when it is complete\n"
		"  --restore-ram  map (default: the file's RAM image mapped, restore time\n"
		"             independent of RAM size) or read (its data read into RAM:\n"
		"             slower, but the VM no longer depends on the file)\n"
		"  --paused   start paused, until QMP cont (also with --incoming)\n"
		"  --bench-phases  one stderr line per start-up or restore phase (time\n"
		"             since exec, page faults) up to the guest's first console line\n"
		"  --memory-backing  anon (default: transparent huge pages) or memfd\n"
		"             (RAM another process can map)\n"
		"  --dirty-log  how live migration tracks guest writes: manual (KVM's\n"
		"             manual protect, pages re-protected as they are sent), legacy\n"
		"             (all RAM write-protected at the start and every pass) or auto\n"
		"             (default: manual where KVM offers it)\n");
}

enum { OPT_KERNEL = 256, OPT_INITRD, OPT_CMDLINE, OPT_MEMORY, OPT_CPUS, OPT_CPU_MODEL, OPT_QMP,
       OPT_CONSOLE_SOCKET, OPT_NAME, OPT_DISK, OPT_NET, OPT_BALLOON, OPT_RNG, OPT_SECCOMP,
       OPT_BENCH, OPT_VERBOSE, OPT_HELP, OPT_INCOMING, OPT_PAUSED, OPT_MEM_BACKING, OPT_RESTORE_RAM,
       OPT_FIRMWARE, OPT_BOOT, OPT_CDROM, OPT_BENCH_PHASES, OPT_DIRTY_LOG };

static const struct option long_opts[] = {
	{"kernel", required_argument, NULL, OPT_KERNEL},
	{"initrd", required_argument, NULL, OPT_INITRD},
	{"cmdline", required_argument, NULL, OPT_CMDLINE},
	{"memory", required_argument, NULL, OPT_MEMORY},
	{"cpus", required_argument, NULL, OPT_CPUS},
	{"cpu-model", required_argument, NULL, OPT_CPU_MODEL},
	{"qmp", required_argument, NULL, OPT_QMP},
	{"console-socket", required_argument, NULL, OPT_CONSOLE_SOCKET},
	{"name", required_argument, NULL, OPT_NAME},
	{"disk", required_argument, NULL, OPT_DISK},
	{"net", required_argument, NULL, OPT_NET},
	{"balloon", optional_argument, NULL, OPT_BALLOON},
	{"rng", no_argument, NULL, OPT_RNG},
	{"seccomp", required_argument, NULL, OPT_SECCOMP},
	{"bench-first-exit", no_argument, NULL, OPT_BENCH},
	{"bench-phases", no_argument, NULL, OPT_BENCH_PHASES},
	{"verbose", no_argument, NULL, OPT_VERBOSE},
	{"help", no_argument, NULL, OPT_HELP},
	{"incoming", required_argument, NULL, OPT_INCOMING},
	{"paused", no_argument, NULL, OPT_PAUSED},
	{"memory-backing", required_argument, NULL, OPT_MEM_BACKING},
	{"restore-ram", required_argument, NULL, OPT_RESTORE_RAM},
	{"firmware", required_argument, NULL, OPT_FIRMWARE},
	{"boot", required_argument, NULL, OPT_BOOT},
	{"cdrom", required_argument, NULL, OPT_CDROM},
	{"dirty-log", required_argument, NULL, OPT_DIRTY_LOG},
	{NULL, 0, NULL, 0},
};

/* Returns 0, or -1 after printing one error line. */
static int parse_one(struct options *o, int opt, const char *arg)
{
	uint64_t v;
	switch (opt) {
	case OPT_KERNEL: o->boot.kernel = arg; return 0;
	case OPT_INITRD: o->boot.initrd = arg; return 0;
	case OPT_CMDLINE: o->boot.cmdline = arg; return 0;
	case OPT_MEMORY:
		if (!kvz_parse_size(arg, &v) || v < (2u << 20)) {
			kvz_error("--memory %s: expected a size of at least 2M, e.g. 512M", arg);
			return -1;
		}
		o->vm.mem_size = (v + 4095) & ~4095ull;
		return 0;
	case OPT_CPUS:
		if (!kvz_parse_u64(arg, 1, 1u << 20, &v)) {
			kvz_error("--cpus %s: expected a number of vCPUs >= 1", arg);
			return -1;
		}
		if (v > VM_MAX_VCPUS) {
			kvz_error("too many vCPUs: --cpus %s, kvz-vmm supports at most %d", arg,
				  VM_MAX_VCPUS);
			return -1;
		}
		o->vm.ncpus = (int)v;
		return 0;
	case OPT_CPU_MODEL: o->vm.cpu_model = arg; return 0;
	case OPT_QMP: o->qmp_path = arg; return 0;
	case OPT_CONSOLE_SOCKET: o->console_socket = arg; return 0;
	case OPT_NAME:
		if (!kvz_valid_name(arg)) {
			kvz_error("--name %s: invalid name", arg);
			return -1;
		}
		o->name = arg;
		return 0;
	case OPT_DISK:
	case OPT_NET: {
		size_t *n = opt == OPT_DISK ? &o->virtio.ndisks : &o->virtio.nnets;
		const char **list = opt == OPT_DISK ? o->disks : o->nets;
		if (*n >= MAX_DEVICES) {
			kvz_error("at most %d --%s options", MAX_DEVICES, opt == OPT_DISK ? "disk" : "net");
			return -1;
		}
		list[(*n)++] = arg;
		return 0;
	}
	case OPT_BALLOON:
		if (arg && strcmp(arg, "deflate-on-oom")) {
			kvz_error("--balloon=%s: the only option is deflate-on-oom", arg);
			return -1;
		}
		o->virtio.balloon = true;
		o->virtio.balloon_deflate_on_oom = arg != NULL;
		return 0;
	case OPT_RNG: o->virtio.rng = true; return 0;
	case OPT_SECCOMP:
		if (!seccomp_filter_parse_mode(arg, &o->seccomp)) {
			kvz_error("--seccomp=%s: expected on, off or log", arg);
			return -1;
		}
		return 0;
	case OPT_BENCH: o->vm.bench_first_exit = true; return 0;
	case OPT_BENCH_PHASES: o->bench_phases = true; return 0;
	case OPT_INCOMING:
		if (strncmp(arg, "file:", 5) && strncmp(arg, "fd:", 3) && strncmp(arg, "tcp:", 4) &&
		    strcmp(arg, "defer")) {
			kvz_error("--incoming %s: expected file:PATH, fd:N, tcp:ADDR:PORT or defer", arg);
			return -1;
		}
		o->incoming = arg;
		return 0;
	case OPT_PAUSED: o->vm.start_paused = true; return 0;
	case OPT_RESTORE_RAM:
		if (strcmp(arg, "map") && strcmp(arg, "read")) {
			kvz_error("--restore-ram %s: expected map or read", arg);
			return -1;
		}
		o->restore_read = !strcmp(arg, "read");
		return 0;
	case OPT_MEM_BACKING:
		if (strcmp(arg, "anon") && strcmp(arg, "memfd")) {
			kvz_error("--memory-backing %s: expected anon or memfd", arg);
			return -1;
		}
		o->vm.shared_memory = !strcmp(arg, "memfd");
		return 0;
	case OPT_FIRMWARE: o->vm.firmware = arg; return 0;
	case OPT_DIRTY_LOG: {
		static const char *const modes[] = {
			[VM_DIRTY_LOG_AUTO] = "auto", [VM_DIRTY_LOG_LEGACY] = "legacy",
			[VM_DIRTY_LOG_MANUAL] = "manual",
		};
		for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
			if (!strcmp(arg, modes[i])) {
				o->vm.dirty_log = (enum vm_dirty_log)i;
				return 0;
			}
		kvz_error("--dirty-log %s: expected auto, manual or legacy", arg);
		return -1;
	}
	case OPT_CDROM: o->virtio.cdrom = arg; return 0;
	case OPT_BOOT:
		if (firmware_parse_boot(arg, &o->vm.boot_order) < 0) {
			kvz_error("--boot %s: expected disk, cdrom or a disk number", arg);
			return -1;
		}
		return 0;
	case OPT_VERBOSE: kvz_log_set_verbose(true); return 0;
	case OPT_HELP: usage(stdout); exit(0);
	default: usage(stderr); return -1;
	}
}

static int parse_args(int argc, char **argv, struct options *o)
{
	memset(o, 0, sizeof(*o));
	o->vm.mem_size = 256ull << 20;
	o->vm.ncpus = 1;
	o->vm.cpu_model = "kvz64";
	o->seccomp = SECCOMP_FILTER_ON;
	o->vm.kvm_path = getenv("KVZ_KVM_DEVICE");
	o->virtio.disks = o->disks;
	o->virtio.nets = o->nets;
	int opt;
	while ((opt = getopt_long(argc, argv, "", long_opts, NULL)) != -1)
		if (parse_one(o, opt, optarg) < 0)
			return -1;
	o->virtio.ncpus = (unsigned)o->vm.ncpus;
	/* The source may still run on the same (shared) images. */
	o->virtio.disks_lock_later = o->incoming != NULL;
	if (optind < argc) {
		kvz_error("unexpected argument '%s'", argv[optind]);
		return -1;
	}
	if (o->vm.firmware && o->boot.kernel) {
		kvz_error("--firmware and --kernel: choose one (the firmware boots from a disk)");
		return -1;
	}
	if (!o->vm.firmware && o->vm.boot_order.kind != BOOT_ORDER_DEFAULT) {
		kvz_error("--boot needs --firmware (a direct kernel boot has no boot order)");
		return -1;
	}
	if (!o->boot.kernel && !o->vm.firmware) {
		kvz_error("--kernel PATH (or --firmware) is required");
		return -1;
	}
	if (o->incoming && !strcmp(o->incoming, "defer") && !o->qmp_path) {
		kvz_error("--incoming defer needs --qmp (the stream comes with migrate-incoming)");
		return -1;
	}
	return 0;
}

static bool want_virtio(const struct options *o)
{
	return o->virtio.ndisks || o->virtio.nnets || o->virtio.balloon || o->virtio.rng ||
	       o->virtio.cdrom;
}

static void console_input(void *opaque, const uint8_t *buf, size_t len)
{
	serial_receive(opaque, buf, len);
}

struct signal_waiter {
	struct vm *vm;
	int sig;      /* the stop signal taken, 0 if none; written before the stop request */
	bool closing; /* set by stop_signal_thread(): the next signal only ends the thread */
	bool started;
	pthread_t thread;
};

/* SIGINT/SIGTERM/SIGHUP end the VM cleanly (terminal restored, sockets
 * removed): they are blocked everywhere and taken by this thread. */
static void *signal_thread(void *arg)
{
	struct signal_waiter *w = arg;
	pthread_setname_np(pthread_self(), "signals");   /* for top -H, gdb, stack dumps */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	int sig;
	if (sigwait(&set, &sig) != 0 || __atomic_load_n(&w->closing, __ATOMIC_ACQUIRE))
		return NULL;
	__atomic_store_n(&w->sig, sig, __ATOMIC_RELEASE);
	vm_request_stop(w->vm, VM_STOP_QUIT, "signal %d", sig);
	return NULL;
}

/* Joined, not detached: a signal that arrives while the VM stops for
 * another reason is still inside vm_request_stop() (which emits SHUTDOWN
 * through the QMP server), so the VM and the server may only go once this
 * thread has ended. */
static void stop_signal_thread(struct signal_waiter *w)
{
	if (!w->started)
		return;
	__atomic_store_n(&w->closing, true, __ATOMIC_RELEASE);
	pthread_kill(w->thread, SIGHUP);   /* harmless if it already took a signal */
	pthread_join(w->thread, NULL);
	w->started = false;
}

static int block_stop_signals(void)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	return pthread_sigmask(SIG_BLOCK, &set, NULL);
}

/* Everything is built: from here on only the calls that serving the guest
 * needs are allowed (seccomp_filter.c), before the first vCPU runs. */
static int lock_down(enum seccomp_mode mode, char *err, size_t errlen)
{
	if (mode == SECCOMP_FILTER_OFF)
		return 0;
	if (!seccomp_filter_supported()) {
		kvz_debug("seccomp filter skipped: sanitizer build");
		return 0;
	}
	/* Lazy initializations that open files, done now: jansson seeds its
	 * hash tables from /dev/urandom at the first JSON object (the first
	 * QMP client's), glibc reads /etc/localtime at the first gmtime_r
	 * (the guest's first RTC read). */
	json_object_seed(0);
	tzset();
	return seccomp_filter_install(mode, err, errlen);
}

/* --incoming fd:N: the inherited descriptor, or -1 with err. */
static int inherited_fd(const char *uri, char *err, size_t errlen)
{
	uint64_t n;
	if (!kvz_parse_u64(uri + 3, 3, INT_MAX, &n) || fcntl((int)n, F_GETFD) < 0) {
		snprintf(err, errlen, "--incoming %s: not an open file descriptor", uri);
		return -1;
	}
	return (int)n;
}

/* A live migration's stream (a socket or pipe) rather than a snapshot file. */
static bool live_incoming_uri(const char *uri)
{
	if (!strcmp(uri, "defer") || !strncmp(uri, "tcp:", 4))
		return true;
	struct stat st;
	uint64_t n;
	return !strncmp(uri, "fd:", 3) && kvz_parse_u64(uri + 3, 3, INT_MAX, &n) &&
	       fstat((int)n, &st) == 0 && !S_ISREG(st.st_mode);
}

/* --incoming: the descriptor of file:PATH or the inherited fd:N. The RAM
 * mapping keeps the file; the descriptor is closed either way. */
static int restore(struct vm *vm, const char *uri, bool map, char *err, size_t errlen)
{
	int fd;
	if (!strncmp(uri, "fd:", 3)) {
		fd = inherited_fd(uri, err, errlen);
		if (fd < 0)
			return -1;
	} else {
		fd = open(uri + 5, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			snprintf(err, errlen, "--incoming %s: %s", uri, strerror(errno));
			return -1;
		}
	}
	char why[400];
	int rc = snapshot_restore(vm, fd, map, why, sizeof(why));
	close(fd);
	if (rc < 0)
		snprintf(err, errlen, "--incoming %s: %s", uri, why);
	return rc;
}

/* The live stream's descriptor: accepted on listen_fd or migrate-incoming's.
 * Polls so that a stop signal ends the wait. */
static int incoming_stream_fd(struct vmm_control *ctl, const char *uri, int listen_fd,
			      const struct signal_waiter *w, char *err, size_t errlen)
{
	kvz_info("waiting for the migration stream (--incoming %s)", uri);
	for (;;) {
		if (__atomic_load_n(&w->sig, __ATOMIC_ACQUIRE)) {
			snprintf(err, errlen, "--incoming %s: stopped before the stream came", uri);
			return -1;
		}
		if (listen_fd >= 0) {
			struct pollfd p = { .fd = listen_fd, .events = POLLIN };
			if (poll(&p, 1, 200) > 0)
				return accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
			continue;
		}
		pthread_mutex_lock(&ctl->incoming_lock);
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += 200000000;
		if (until.tv_nsec >= 1000000000) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000;
		}
		if (ctl->incoming_fd < 0)
			pthread_cond_timedwait(&ctl->incoming_cond, &ctl->incoming_lock, &until);
		int fd = ctl->incoming_fd;
		if (fd >= 0) {   /* taken: a second migrate-incoming is refused */
			ctl->incoming_fd = -1;
			ctl->incoming_deferred = false;
		}
		pthread_mutex_unlock(&ctl->incoming_lock);
		if (fd >= 0)
			return fd;
	}
}

/* What a migration without shared storage copies (source) or writes
 * (target). */
static void set_migration_disks(struct vmm_control *ctl, struct migration *m)
{
	struct blk_backend *disks[MIG_DISK_MAX];
	unsigned n = virtio_devices_writable_disks(ctl->vd, disks, MIG_DISK_MAX);
	migration_set_disks(m, disks, n);
}

/* Target of a live migration: the stream loaded into the built machine
 * (after the seccomp lock-down: the stream is hostile input). */
static int receive_live(struct vmm_control *ctl, const char *uri, int listen_fd, int fd,
			const struct signal_waiter *w, char *err, size_t errlen)
{
	struct migration local;
	struct migration *m = &ctl->mig;
	if (!ctl->mig_ready) {   /* no QMP: status goes nowhere */
		migration_init(&local, ctl->vm);
		m = &local;
		set_migration_disks(ctl, m);
	}
	if (fd < 0)
		fd = incoming_stream_fd(ctl, uri, listen_fd, w, err, errlen);
	int rc = fd < 0 ? -1 : live_incoming(ctl->vm, m, fd, err, errlen);
	if (fd >= 0)
		close(fd);
	if (m == &local)
		migration_finish(&local);
	return rc;
}

/* A vCPU thread that does not leave its device is a bug (a lock never
 * released, a write that never returns): the machine cannot be torn down
 * with it running, so leave at once (the caller logged each vCPU). */
static _Noreturn void exit_stuck(struct console *con)
{
	console_flush_nowait(con);
	struct termios tty;
	if (console_saved_terminal(con, &tty))
		tcsetattr(STDIN_FILENO, TCSANOW, &tty);
	kvz_error("stopping: a vCPU did not stop within %d s (states above); exiting without teardown",
		  STOP_LIMIT_S);
	_exit(1);
}

/* Order: nothing may call into the VM once it is gone. Each stage is named
 * for the watchdog, which ends the process if one of them hangs. */
static void teardown(struct signal_waiter *waiter, struct vmm_control *ctl, struct vm *vm,
		     struct console *con)
{
	struct stop_watchdog *wd = stop_watchdog_start(STOP_LIMIT_S, con);
	stop_watchdog_stage(wd, "the signal thread");
	stop_signal_thread(waiter);
	stop_watchdog_stage(wd, "the QMP server");
	qmp_control_stop(ctl);
	if (vm)
		serial_set_console(vm_serial(vm), NULL);
	stop_watchdog_stage(wd, "the console");
	console_destroy(con);
	if (ctl->vd) {
		stop_watchdog_stage(wd, "the I/O thread");
		if (vm)
			vm_stop_io(vm);
		stop_watchdog_stage(wd, "the virtio devices");
		virtio_devices_destroy(ctl->vd);
	}
	stop_watchdog_stage(wd, "the machine");
	vm_destroy(vm);
	stop_watchdog_done(wd);
}

static int run(struct options *o)
{
	char err[512] = "";
	struct vm *vm = NULL;
	struct console *con = NULL;
	struct vmm_control ctl = {
		.incoming_lock = PTHREAD_MUTEX_INITIALIZER,
		.incoming_cond = PTHREAD_COND_INITIALIZER,
		.incoming_fd = -1,
	};
	int listen_fd = -1, stream_fd = -1;
	struct signal_waiter waiter = {0};
	int status = 1;

	/* Before any thread exists, so that every thread inherits the mask. */
	if (block_stop_signals() != 0) {
		snprintf(err, sizeof(err), "cannot block signals");
		goto out;
	}
	if (!cpuid_model_valid(o->vm.cpu_model)) {
		snprintf(err, sizeof(err), "unknown --cpu-model '%s' (known: %s)", o->vm.cpu_model,
			 cpuid_model_names());
		goto out;
	}
	if ((o->boot.kernel && boot_probe(o->boot.kernel, err, sizeof(err)) < 0) ||
	    vm_check_config(&o->vm, err, sizeof(err)) < 0)
		goto out;
	vm = vm_create(&o->vm, err, sizeof(err));
	if (!vm)
		goto out;
	ctl.vm = vm;
	kvz_phase("machine created");
	if (want_virtio(o)) {
		struct vmm_context vctx;
		vm_device_context(vm, &vctx);
		ctl.vd = virtio_devices_create(&vctx, &o->virtio, err, sizeof(err));
		if (!ctl.vd)
			goto out;
		kvz_phase("virtio devices created");
	}
	/* A reset (QMP only) reloads the images of the first boot through
	 * descriptors kept open: the seccomp filter forbids opening files. */
	if (o->qmp_path)
		boot_keep_files();
	bool live = o->incoming && live_incoming_uri(o->incoming);
	bool from_file = o->incoming && !live;
	if (from_file ? vm_prepare_restore(vm, &o->boot, err, sizeof(err)) < 0
		      : vm_load(vm, &o->boot, err, sizeof(err)) < 0)
		goto out;
	kvz_phase(from_file ? "reset state prepared" : "boot images loaded");
	if (from_file && restore(vm, o->incoming, !o->restore_read, err, sizeof(err)) < 0)
		goto out;
	if (from_file)
		kvz_phase("restored");
	/* Listening before QMP answers: a source told "ready" can connect. */
	if (live && !strncmp(o->incoming, "tcp:", 4) &&
	    (listen_fd = mig_tcp_listen(o->incoming + 4, err, sizeof(err))) < 0)
		goto out;
	/* Checked before the lock-down, which forbids fcntl. */
	if (live && !strncmp(o->incoming, "fd:", 3) &&
	    (stream_fd = inherited_fd(o->incoming, err, sizeof(err))) < 0)
		goto out;
	ctl.incoming_deferred = live && !strcmp(o->incoming, "defer");
	con = o->console_socket ? console_create_socket(o->console_socket, err, sizeof(err))
				: console_create_stdio(err, sizeof(err));
	if (!con)
		goto out;
	serial_set_console(vm_serial(vm), con);
	ctl.may_open_files = o->seccomp == SECCOMP_FILTER_OFF || !seccomp_filter_supported();
	if (o->qmp_path && qmp_control_start(&ctl, o->qmp_path, err, sizeof(err)) < 0)
		goto out;
	if (ctl.mig_ready)
		set_migration_disks(&ctl, &ctl.mig);
	waiter.vm = vm;
	if (pthread_create(&waiter.thread, NULL, signal_thread, &waiter) != 0) {
		snprintf(err, sizeof(err), "cannot start the signal thread");
		goto out;
	}
	waiter.started = true;
	/* Guest input is read only by a console nobody else reads: with a
	 * console socket, stdin stays untouched. */
	if (console_start(con, console_input, vm_serial(vm), err, sizeof(err)) < 0)
		goto out;
	kvz_phase("console, QMP and signal thread started");
	if (lock_down(o->seccomp, err, sizeof(err)) < 0)
		goto out;
	kvz_phase("seccomp filter installed");
	if (live && receive_live(&ctl, o->incoming, listen_fd, stream_fd, &waiter, err, sizeof(err)) < 0)
		goto out;
	bool joined;
	if (vm_start(vm, err, sizeof(err)) < 0) {
		vm_wait(vm, STOP_LIMIT_S, &joined);
		if (!joined) {
			vm_log_vcpus(vm);
			exit_stuck(con);
		}
		goto out;
	}
	kvz_phase("vCPU threads started");
	if (live && !o->vm.start_paused && ctl.mig_ready)
		migration_emit(&ctl.mig, "RESUME");
	if (live && ctl.vd && virtio_devices_announce(ctl.vd))
		kvz_warn("could not announce the guest's MAC on every NIC");
	enum vm_stop_reason why = vm_wait(vm, STOP_LIMIT_S, &joined);
	/* The guest's last output before the lines that say why it stopped. */
	if (joined)
		console_flush(con);
	int sig = __atomic_load_n(&waiter.sig, __ATOMIC_ACQUIRE);
	/* Killed from outside, often because the guest looked stuck, or a
	 * vCPU that did not stop: say where each vCPU was. */
	if (sig)
		kvz_info("stopped by signal %d", sig);
	if (sig || !joined)
		vm_log_vcpus(vm);
	if (!joined)
		exit_stuck(con);
	vm_log_exit_counts(vm);
	if (why == VM_STOP_ERROR) {
		snprintf(err, sizeof(err), "%s", vm_stop_message(vm));
	} else {
		/* One line on why a VM that ends well ended: a guest that reset
		 * itself while booting is otherwise indistinguishable from one
		 * that was stopped (issue 9). The exit count tells a boot that
		 * got somewhere (thousands) from one that never started. */
		kvz_info("stopped: %s (%llu vCPU exits)", vm_stop_message(vm), vm_exit_count(vm));
		status = 0;
	}
out:
	if (listen_fd >= 0)
		close(listen_fd);
	if (ctl.incoming_fd >= 0)
		close(ctl.incoming_fd);
	teardown(&waiter, &ctl, vm, con);
	boot_forget_files();
	if (status != 0)
		kvz_error("%s", err[0] ? err : "failed");
	return status;
}

/* Keeps the VMM's own memory small next to the guest's: with transparent
 * huge pages on for anonymous memory, an 8 MiB thread stack or a 64 MiB
 * per-thread malloc arena costs a 2 MiB huge page at first touch. 1 MiB
 * stacks (jansson's parser recursion fits easily) and one malloc arena
 * cannot hold one. Failures only cost memory. */
static void limit_overhead(void)
{
	mallopt(M_ARENA_MAX, 1);
	pthread_attr_t attr;
	if (pthread_attr_init(&attr) == 0) {
		pthread_attr_setstacksize(&attr, 1u << 20);
		pthread_setattr_default_np(&attr);
		pthread_attr_destroy(&attr);
	}
}

int main(int argc, char **argv)
{
	kvz_log_init("kvz-vmm");
	limit_overhead();
	struct options o;
	if (parse_args(argc, argv, &o) < 0)
		return 1;
	kvz_phase_init(o.bench_phases);
	return run(&o);
}
