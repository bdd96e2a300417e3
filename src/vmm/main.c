/* kvz-vmm: parses the command line, builds the machine, runs it until the
 * guest powers off or reboots, QMP quits it, or something fails. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
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
#include "parse.h"
#include "qmp_control.h"
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
	const char *incoming;      /* file:PATH or fd:N: restore a snapshot */
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: kvz-vmm --kernel PATH [--initrd PATH] [--cmdline STR] [--memory SIZE]\n"
		"               [--cpus N] [--cpu-model host|kvz64] [--qmp PATH]\n"
		"               [--console-socket PATH] [--name NAME] [--disk PATH[,readonly]]...\n"
		"               [--net tap=NAME[,mac=MAC][,bridge=BR][,vhost=auto|on|off]]... [--balloon[=deflate-on-oom]] [--rng]\n"
		"               [--seccomp=on|off|log] [--bench-first-exit] [--verbose]\n"
		"               [--incoming file:PATH|fd:N] [--paused] [--memory-backing anon|memfd]\n"
		"  --seccomp  system call allow-list once the machine is built (default on;\n"
		"             log: allow and log what the list lacks, to the kernel log)\n"
		"  --incoming restore the snapshot (QMP migrate) instead of booting; the\n"
		"             machine options must be those of the saved machine\n"
		"  --paused   start paused, until QMP cont (also with --incoming)\n"
		"  --memory-backing  anon (default: transparent huge pages) or memfd\n"
		"             (RAM another process can map)\n");
}

enum { OPT_KERNEL = 256, OPT_INITRD, OPT_CMDLINE, OPT_MEMORY, OPT_CPUS, OPT_CPU_MODEL, OPT_QMP,
       OPT_CONSOLE_SOCKET, OPT_NAME, OPT_DISK, OPT_NET, OPT_BALLOON, OPT_RNG, OPT_SECCOMP,
       OPT_BENCH, OPT_VERBOSE, OPT_HELP, OPT_INCOMING, OPT_PAUSED, OPT_MEM_BACKING };

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
	{"verbose", no_argument, NULL, OPT_VERBOSE},
	{"help", no_argument, NULL, OPT_HELP},
	{"incoming", required_argument, NULL, OPT_INCOMING},
	{"paused", no_argument, NULL, OPT_PAUSED},
	{"memory-backing", required_argument, NULL, OPT_MEM_BACKING},
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
	case OPT_INCOMING:
		if (strncmp(arg, "file:", 5) && strncmp(arg, "fd:", 3)) {
			kvz_error("--incoming %s: expected file:PATH or fd:N", arg);
			return -1;
		}
		o->incoming = arg;
		return 0;
	case OPT_PAUSED: o->vm.start_paused = true; return 0;
	case OPT_MEM_BACKING:
		if (strcmp(arg, "anon") && strcmp(arg, "memfd")) {
			kvz_error("--memory-backing %s: expected anon or memfd", arg);
			return -1;
		}
		o->vm.shared_memory = !strcmp(arg, "memfd");
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
	if (optind < argc) {
		kvz_error("unexpected argument '%s'", argv[optind]);
		return -1;
	}
	if (!o->boot.kernel) {
		kvz_error("--kernel PATH is required");
		return -1;
	}
	return 0;
}

static bool want_virtio(const struct options *o)
{
	return o->virtio.ndisks || o->virtio.nnets || o->virtio.balloon || o->virtio.rng;
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

/* --incoming: the descriptor of file:PATH or the inherited fd:N. The RAM
 * mapping keeps the file; the descriptor is closed either way. */
static int restore(struct vm *vm, const char *uri, char *err, size_t errlen)
{
	int fd;
	uint64_t n;
	if (!strncmp(uri, "fd:", 3)) {
		if (!kvz_parse_u64(uri + 3, 3, INT_MAX, &n) || fcntl((int)n, F_GETFD) < 0) {
			snprintf(err, errlen, "--incoming %s: not an open file descriptor", uri);
			return -1;
		}
		fd = (int)n;
	} else {
		fd = open(uri + 5, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			snprintf(err, errlen, "--incoming %s: %s", uri, strerror(errno));
			return -1;
		}
	}
	char why[400];
	int rc = snapshot_restore(vm, fd, why, sizeof(why));
	close(fd);
	if (rc < 0)
		snprintf(err, errlen, "--incoming %s: %s", uri, why);
	return rc;
}

/* A vCPU thread that does not leave its device is a bug (a lock never
 * released, a write that never returns): the machine cannot be torn down
 * with it running, so leave at once (the caller logged each vCPU). */
static _Noreturn void exit_stuck(struct console *con)
{
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
	struct vmm_control ctl = {0};
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
	if (boot_probe(o->boot.kernel, err, sizeof(err)) < 0 ||
	    vm_check_config(&o->vm, err, sizeof(err)) < 0)
		goto out;
	vm = vm_create(&o->vm, err, sizeof(err));
	if (!vm)
		goto out;
	ctl.vm = vm;
	if (want_virtio(o)) {
		struct vmm_context vctx;
		vm_device_context(vm, &vctx);
		ctl.vd = virtio_devices_create(&vctx, &o->virtio, err, sizeof(err));
		if (!ctl.vd)
			goto out;
	}
	/* A reset (QMP only) reloads the images of the first boot through
	 * descriptors kept open: the seccomp filter forbids opening files. */
	if (o->qmp_path)
		boot_keep_files();
	if (vm_load(vm, &o->boot, err, sizeof(err)) < 0)
		goto out;
	if (o->incoming && restore(vm, o->incoming, err, sizeof(err)) < 0)
		goto out;
	con = o->console_socket ? console_create_socket(o->console_socket, err, sizeof(err))
				: console_create_stdio(err, sizeof(err));
	if (!con)
		goto out;
	serial_set_console(vm_serial(vm), con);
	ctl.may_open_files = o->seccomp == SECCOMP_FILTER_OFF || !seccomp_filter_supported();
	if (o->qmp_path && qmp_control_start(&ctl, o->qmp_path, err, sizeof(err)) < 0)
		goto out;
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
	if (lock_down(o->seccomp, err, sizeof(err)) < 0)
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
	enum vm_stop_reason why = vm_wait(vm, STOP_LIMIT_S, &joined);
	int sig = __atomic_load_n(&waiter.sig, __ATOMIC_ACQUIRE);
	/* Killed from outside, often because the guest looked stuck, or a
	 * vCPU that did not stop: say where each vCPU was. */
	if (sig)
		kvz_info("stopped by signal %d", sig);
	if (sig || !joined)
		vm_log_vcpus(vm);
	if (!joined)
		exit_stuck(con);
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
	return run(&o);
}
