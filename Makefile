# Thin wrapper over Meson so that users type `make`, `make check`, `make run`.
BUILD ?= build
MESON_FLAGS ?=

.PHONY: all deps check check-fast check-lab run bench clean asan fuzz

all: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

deps:
	@scripts/install-deps.sh

$(BUILD)/build.ninja:
	meson setup $(BUILD) $(MESON_FLAGS)

# Every test: unit, fast VMM tests on host /dev/kvm, containers, and the nested
# lab; the lab suite and the host suites run side by side (scripts/check.sh).
check: all
	scripts/check.sh $(BUILD)

check-fast: all
	meson test -C $(BUILD) --print-errorlogs --suite unit --suite fast

check-lab: all
	meson test -C $(BUILD) --print-errorlogs --suite lab

# Main job: build, start kvzd with its embedded store, and a demo.
run: all
	scripts/run-demo.sh

# bench/vmm_cycles_lab.sh (30 boot cycles, hours of lab time) runs on its own;
# the files that are not executable are parts the benches source or copy.
bench: all
	@for b in bench/*.sh; do case $$b in *vmm_cycles_lab.sh) continue;; esac; \
		[ -x $$b ] || continue; \
		echo "== $$b"; $$b || exit 1; done

asan: deps
	[ -f build-asan/build.ninja ] || meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false
	ninja -C build-asan
	meson test -C build-asan --print-errorlogs --suite unit --suite fast

fuzz: deps
	[ -f build-fuzz/build.ninja ] || CC=clang meson setup build-fuzz -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false
	ninja -C build-fuzz

clean:
	rm -rf $(BUILD) build-asan build-fuzz
