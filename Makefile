# p2pcat: build, test, benchmark and drive the Pix2Pix experiment.
#
# Switches (make VAR=value):
#   CUDA=0        leave out the CUDA backend even where nvcc is found
#   MPI=1         data-parallel p2p-train over MPI (lib/dist.c with -DP2P_MPI and
#                 `pkg-config ompi-c`, or mpicc's flags), built apart in build/mpi:
#                 mpirun -np N build/mpi/bin/p2p-train ...
#   SANITIZE=1    build with AddressSanitizer (LeakSanitizer included) and
#                 UndefinedBehaviorSanitizer into build-san/ instead of build/;
#                 `make check SANITIZE=1` runs the whole suite on that build
#                 (suppressions: tests/lsan.supp, tests/ubsan.supp)
#   FUZZ_SECONDS=30  how long `make fuzz` runs each fuzzer; FUZZERS="npy ..."
#                 runs only those (see the fuzzing block at the end: clang's
#                 libFuzzer, objects in build-fuzz/)
#   PREFIX=/usr/local  DESTDIR=  MANPREFIX=$(PREFIX)/share/man   for install
# CFLAGS and LDFLAGS are yours; the project's own flags live in P2P_CFLAGS.

PREFIX    ?= /usr/local
MANPREFIX ?= $(PREFIX)/share/man
CFLAGS    ?= -O2 -g
NVCC      ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
ifeq ($(SANITIZE),1)
B          = build-san
else
B          = build
endif

PKGS      := vips libcjson openblas
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

P2P_CFLAGS = -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -fopenmp -Ilib \
             $(PKG_CFLAGS) -MMD -MP
P2P_LIBS   = $(PKG_LIBS) -lm -lpthread -fopenmp

# Undefined behaviour stops the program, so that a test sees it fail; the
# instrumentation makes -Wmaybe-uninitialized guess wrong, so it is off here.
ifeq ($(SANITIZE),1)
P2P_CFLAGS += -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer \
              -Wno-maybe-uninitialized
P2P_LIBS   += -fsanitize=address,undefined
endif

LIB_OBJ  = $(patsubst lib/%.c,$B/lib/%.o,$(wildcard lib/*.c))
PROGS    = $(patsubst cmd/%.c,$B/bin/%,$(wildcard cmd/*.c))
UNITS    = $(patsubst tests/unit/%.c,$B/tests/%,$(wildcard tests/unit/*.c))
BENCHES  = $(patsubst bench/%.c,$B/bench/%,$(wildcard bench/*.c))
# Every fuzz harness tests/fuzz/NAME.c is also built without libFuzzer, with
# tests/fuzz/replay.c as main: $B/tests/fuzz_replay_NAME replays its seed
# corpus and its regressions (tests/fuzz/regress/NAME/) as TAP in `make check`.
FUZZERS  = $(filter-out replay,$(patsubst tests/fuzz/%.c,%,$(wildcard tests/fuzz/*.c)))
REPLAYS  = $(patsubst %,$B/tests/fuzz_replay_%,$(FUZZERS))

# The CUDA backend: built whenever nvcc is found, unless CUDA=0.
ifeq ($(CUDA),0)
NVCC :=
endif
ifneq ($(and $(NVCC),$(wildcard lib/*.cu)),)
CU_OBJ      = $(patsubst lib/%.cu,$B/lib/%.cu.o,$(wildcard lib/*.cu))
P2P_CFLAGS += -DP2P_CUDA
P2P_LIBS   += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublas -lcudart -lstdc++
NVFLAGS     = -O2 -Ilib -gencode arch=compute_80,code=sm_80 \
              -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90
endif

# MPI=1: the same programs with lib/dist.c over MPI, in a build folder of
# their own so that the plain build and this one never mix objects.
ifeq ($(MPI),1)
B           = build/mpi
MPI_PC     ?= ompi-c
MPI_CFLAGS := $(shell pkg-config --cflags $(MPI_PC) 2>/dev/null || mpicc --showme:compile 2>/dev/null)
MPI_LIBS   := $(shell pkg-config --libs $(MPI_PC) 2>/dev/null || mpicc --showme:link 2>/dev/null)
P2P_CFLAGS += -DP2P_MPI $(MPI_CFLAGS)
P2P_LIBS   += $(MPI_LIBS)
endif

# Everything built depends on the flags it was built with: $B/.flags holds
# them and changes only when they do, so that CUDA=0, CFLAGS=... and the like
# on an existing build folder rebuild what they affect and nothing else
# (make -n and make clean leave it as it is).
FLAGS_NOW := $(CC) $(CPPFLAGS) $(P2P_CFLAGS) $(CFLAGS) $(LDFLAGS) $(P2P_LIBS) $(NVCC) $(NVFLAGS)
ifeq ($(filter clean,$(MAKECMDGOALS))$(findstring n,$(firstword -$(MAKEFLAGS))),)
$(shell mkdir -p $B && { [ "$$(cat $B/.flags 2>/dev/null)" = '$(FLAGS_NOW)' ] || \
    printf '%s\n' '$(FLAGS_NOW)' >$B/.flags; })
endif

.PHONY: all check test unit bats lint demo bench install uninstall clean deps probe fuzz
all: probe $(PROGS) $(UNITS) $(REPLAYS) $(BENCHES)

probe:
	@echo "p2pcat: CUDA backend $(if $(NVCC),on ($(NVCC)),off)"
ifeq ($(MPI),1)
	@echo "p2pcat: MPI $(if $(MPI_LIBS),on ($(MPI_LIBS)),not found: install libopenmpi-dev) in $B"
	@test -n "$(MPI_LIBS)"
endif

$B/.flags:
	@mkdir -p $(@D)
	@printf '%s\n' '$(FLAGS_NOW)' >$@

$B/lib/%.o: lib/%.c $B/.flags
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(P2P_CFLAGS) $(CFLAGS) -c -o $@ $<

$B/lib/%.cu.o: lib/%.cu $B/.flags
	@mkdir -p $(@D)
	$(NVCC) $(NVFLAGS) -MMD -MP -MF $(@:.o=.d) -c -o $@ $<

$B/libp2p.a: $(LIB_OBJ) $(CU_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$B/cmd/%.o: cmd/%.c $B/.flags
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(P2P_CFLAGS) $(CFLAGS) -c -o $@ $<

$B/bin/%: $B/cmd/%.o $B/libp2p.a $B/.flags
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $< $B/libp2p.a $(P2P_LIBS)

$B/tests/%: tests/unit/%.c tests/unit/check.h $B/libp2p.a $B/.flags
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(P2P_CFLAGS) -Itests/unit $(CFLAGS) $(LDFLAGS) -o $@ $< $B/libp2p.a $(P2P_LIBS)

$B/tests/fuzz_replay_%: tests/fuzz/%.c tests/fuzz/replay.c $(wildcard tests/fuzz/*.h) $B/libp2p.a \
                        $B/.flags
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(filter-out -MMD -MP,$(P2P_CFLAGS)) -Itests/fuzz -DFUZZ_TARGET='"$*"' \
	  $(CFLAGS) $(LDFLAGS) -o $@ tests/fuzz/$*.c tests/fuzz/replay.c $B/libp2p.a $(P2P_LIBS)

$B/bench/%: bench/%.c $B/libp2p.a $B/.flags
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(P2P_CFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $B/libp2p.a $(P2P_LIBS)

deps:
	@scripts/deps

# The whole suite: C unit tests, Bats suites, man page lint; TAP in, one count out.
check: deps
	@$(MAKE) --no-print-directory all
	@P2P_BUILD=$B scripts/run-tests

test: check

# Benchmarks print ratios measured side by side in one run; none is a test.
bench: all
	@for b in bench/prep $B/bench/conv bench/train; do \
	  if [ -x $$b ]; then echo "== $$b"; $$b || exit 1; fi; done

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(MANPREFIX)/man1
	install -m 755 $(PROGS) $(DESTDIR)$(PREFIX)/bin
	install -m 644 man/man1/*.1 $(DESTDIR)$(MANPREFIX)/man1

uninstall:
	rm -f $(addprefix $(DESTDIR)$(PREFIX)/bin/,$(notdir $(PROGS)))
	rm -f $(addprefix $(DESTDIR)$(MANPREFIX)/man1/,$(notdir $(wildcard man/man1/*.1)))

clean:
	rm -rf build build-san $(FUZZ_B)

# ---- Fuzzing: `make fuzz` ----
# Each harness tests/fuzz/NAME.c is built with clang's libFuzzer and
# AddressSanitizer and UBSan, over every lib/*.c compiled anew into
# build-fuzz/ (never mixed with build/), then run FUZZ_SECONDS with one
# worker from its seed corpus tests/fuzz/NAME/, its regressions
# tests/fuzz/regress/NAME/ and its dictionary tests/fuzz/NAME.dict. New
# inputs collect in build-fuzz/corpus/NAME/; a failing input is written to
# build-fuzz/crash/NAME/ and stops the run: copy it to tests/fuzz/regress/NAME/
# once fixed, and `make check` replays it from then on. Needs clang with its
# run-time libraries (Debian: clang, libclang-rt-14-dev).
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 30
FUZZ_B        = build-fuzz
FUZZ_SAN      = -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS   = -std=gnu11 -D_GNU_SOURCE -O1 -g -Wall -Wextra -Wno-unused-parameter \
                -Wno-pass-failed -fopenmp -Ilib $(PKG_CFLAGS) -MMD -MP $(FUZZ_SAN)
FUZZ_OBJ      = $(patsubst lib/%.c,$(FUZZ_B)/lib/%.o,$(wildcard lib/*.c))

$(FUZZ_B)/lib/%.o: lib/%.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

$(FUZZ_B)/libp2p.a: $(FUZZ_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(FUZZ_B)/fuzz_%: tests/fuzz/%.c $(wildcard tests/fuzz/*.h) $(FUZZ_B)/libp2p.a
	$(FUZZ_CC) $(filter-out -MMD -MP,$(FUZZ_CFLAGS)) -Itests/fuzz -fsanitize=fuzzer \
	  -o $@ $< $(FUZZ_B)/libp2p.a $(PKG_LIBS) -lm -lpthread -fopenmp

fuzz: $(patsubst %,$(FUZZ_B)/fuzz_%,$(FUZZERS))
	@for f in $(FUZZERS); do \
	  mkdir -p $(FUZZ_B)/corpus/$$f $(FUZZ_B)/crash/$$f; \
	  echo "== fuzz $$f: $(FUZZ_SECONDS) s"; \
	  $(FUZZ_B)/fuzz_$$f -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 \
	    -print_final_stats=1 -artifact_prefix=$(FUZZ_B)/crash/$$f/ \
	    $$([ -f tests/fuzz/$$f.dict ] && echo -dict=tests/fuzz/$$f.dict) \
	    $(FUZZ_B)/corpus/$$f tests/fuzz/$$f \
	    $$([ -d tests/fuzz/regress/$$f ] && echo tests/fuzz/regress/$$f) || exit 1; \
	done

include experiment.mk

-include $(LIB_OBJ:.o=.d) $(CU_OBJ:.o=.d) $(PROGS:$B/bin/%=$B/cmd/%.d) $(UNITS:=.d) $(FUZZ_OBJ:.o=.d)
