# Wraps meson for habit's sake: make, make check, make demo, make install.
# Each target first installs missing Debian packages (scripts/deps.sh says what; never under nix).

BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
PREFIX     ?= /usr/local
MESON_OPTS ?=

.PHONY: all build deps check unit integration format format-check fuzz demo demo-stop install clean

all: build

deps:
	@scripts/deps.sh build

$(BUILD)/build.ninja:
	@scripts/deps.sh build
	meson setup $(BUILD) --prefix=$(PREFIX) $(MESON_OPTS)

build: $(BUILD)/build.ninja
	ninja -C $(BUILD)

# The whole test suite: format, unit tests under ASan+UBSan, unit tests and checks of the
# normal build, a short fuzz run, the integration tests. Ends with "N passed, N failed, N skipped".
check:
	@scripts/deps.sh check
	@scripts/check.sh

unit: build
	meson test -C $(BUILD) --suite unit --print-errorlogs

integration: build
	WEIR_BUILD_DIR=$(abspath $(BUILD)) /usr/bin/python3 -m pytest -q tests/integration

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h')

demo:
	@scripts/deps.sh demo
	@scripts/demo.sh

demo-stop:
	@scripts/demo.sh stop

install: build
	meson install -C $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
