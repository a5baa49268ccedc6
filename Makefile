# levee build. `make` builds ./levee; `make test` installs what is missing and
# runs every test (unit, fuzz corpus replay, integration), then all of it again
# under AddressSanitizer + UndefinedBehaviorSanitizer; `make run` starts the
# example app; `make bench` runs the side-by-side benchmarks.
#
# Layout: every src/**/*.c except src/main.c goes into a static library that
# the binary, the unit tests and the fuzz drivers link against. Objects live
# in $(BUILD) (build/ normally, build-san/ with SAN=1), so the plain and the
# sanitized builds never mix.

CC      ?= cc
SAN     ?= 0
PKGS    := yaml-0.1 jansson libcrypto libxxhash
WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter
CFLAGS_BASE := -std=gnu11 -g -D_GNU_SOURCE -Isrc $(WARN) -fno-strict-aliasing
PY      := /usr/bin/python3

ifeq ($(SAN),1)
BUILD   := build-san
OPT     := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
LDSAN   := -fsanitize=address,undefined
else
BUILD   := build
OPT     := -O2
LDSAN   :=
endif

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CFLAGS  := $(CFLAGS_BASE) $(OPT) $(PKG_CFLAGS) $(EXTRA_CFLAGS)
LDLIBS  := $(PKG_LIBS) -lpthread -lm

SRCS     := $(shell find src -name '*.c' ! -name main.c | sort)
OBJS     := $(SRCS:%.c=$(BUILD)/%.o)
LIB      := $(BUILD)/liblevee.a
UNIT_SRCS := $(shell find tests/unit -name '*_test.c' | sort)
UNIT_BINS := $(UNIT_SRCS:%.c=$(BUILD)/%)
BIN      := $(if $(filter 1,$(SAN)),$(BUILD)/levee,levee)

.PHONY: all deps micro spike unit fuzz fuzz-replay node-unit integration test test-plain test-san run bench bench-functions clean

all: $(BIN)

deps:
	@./scripts/install-deps.sh test

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(LIB): $(OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BIN): $(BUILD)/src/main.o $(LIB)
	$(CC) $(LDSAN) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/unit/%: tests/unit/%.c $(LIB) tests/unit/test.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/unit $(LDSAN) -o $@ $< $(LIB) $(LDLIBS) $(if $(findstring differential,$@),-lhttp_parser)

# Micro-benchmarks next to hot code (parser, redirect table): built, not run
# by the tests. `make micro` builds them all into build/bench/micro/.
MICRO_SRCS := $(shell find bench/micro -name '*.c' 2>/dev/null | sort)
MICRO_BINS := $(MICRO_SRCS:%.c=build/%)
build/bench/micro/%: bench/micro/%.c build/liblevee.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) -O2 $(PKG_CFLAGS) -o $@ $< build/liblevee.a $(LDLIBS)
micro: $(MICRO_BINS)

# Runs every unit test binary; fails if any fails.
unit: $(UNIT_BINS)
	@fail=0; for t in $(UNIT_BINS); do echo "== $$t"; $$t || fail=1; done; exit $$fail

# libFuzzer drivers (clang). The library is compiled once with coverage
# instrumentation into build-fuzz/; each driver links against it. `make fuzz`
# builds them; fuzz-replay runs each over its committed corpus once, as a
# regression test (a crash or leak fails the build).
FUZZ_SRCS := $(shell find tests/fuzz -name 'fuzz_*.c' | sort)
FUZZ_BINS := $(FUZZ_SRCS:tests/fuzz/%.c=build-fuzz/%)
FUZZ_CFLAGS := $(CFLAGS_BASE) -Wno-unused-function -O1 -g -fsanitize=fuzzer-no-link,address,undefined $(PKG_CFLAGS)
FUZZ_OBJS := $(SRCS:%.c=build-fuzz/%.o)

build-fuzz/%.o: %.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -MMD -MP -c $< -o $@

build-fuzz/liblevee.a: $(FUZZ_OBJS)
	@rm -f $@
	ar rcs $@ $^

build-fuzz/%: tests/fuzz/%.c build-fuzz/liblevee.a
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< build-fuzz/liblevee.a $(LDLIBS)

fuzz: $(FUZZ_BINS)

fuzz-replay: $(FUZZ_BINS)
	@for f in $(FUZZ_BINS); do n=$$(basename $$f); \
	  out=$$(ASAN_OPTIONS=detect_leaks=1 $$f -runs=0 tests/fuzz/corpus/$${n#fuzz_} 2>&1) || \
	    { echo "$$out" | tail -40; echo "FAILED: $$n"; exit 1; }; \
	  echo "$$n: $$(echo "$$out" | tail -1)"; done
	@echo "fuzz corpus replay: ok"

# The JavaScript unit tests of levee's nodejs runtime (node's own runner).
node-unit:
	node --test runtimes/nodejs/test/

integration: $(BIN)
	LEVEE_BIN=$(abspath $(BIN)) $(PY) -m pytest -q tests/integration

test-plain: deps
	$(MAKE) all unit node-unit fuzz-replay integration

test-san: deps
	$(MAKE) SAN=1 all unit integration

test: deps
	$(MAKE) test-plain
	$(MAKE) test-san

run:
	@./scripts/install-deps.sh run
	$(MAKE) all
	cd examples && ./run.sh

bench: all
	./scripts/install-deps.sh all
	./bench/run.sh

# The flash-crowd scenario (bench/spike/README section in bench/README.md).
spike: all
	./scripts/install-deps.sh all
	./bench/spike/run.sh

# Functions side by side with serverless-offline (bench/functions/README.md).
bench-functions: all
	./scripts/install-deps.sh all
	./bench/functions/setup.sh
	./bench/functions/run.sh

clean:
	rm -rf build build-san build-fuzz levee

-include $(OBJS:.o=.d) $(BUILD)/src/main.d $(FUZZ_OBJS:.o=.d)
