# p2pcat: build, test, benchmark and drive the Pix2Pix experiment.
#
# Switches (make VAR=value):
#   CUDA=0        leave out the CUDA backend even where nvcc is found
#   SANITIZE=1    build with AddressSanitizer and UndefinedBehaviorSanitizer
#   MPI=1         data-parallel p2p-train over MPI (lib/dist.c with -DP2P_MPI and
#                 `pkg-config ompi-c`, or mpicc's flags), built apart in build/mpi:
#                 mpirun -np N build/mpi/bin/p2p-train ...
#   PREFIX=/usr/local  DESTDIR=  MANPREFIX=$(PREFIX)/share/man   for install
# CFLAGS and LDFLAGS are yours; the project's own flags live in P2P_CFLAGS.

PREFIX    ?= /usr/local
MANPREFIX ?= $(PREFIX)/share/man
CFLAGS    ?= -O2 -g
NVCC      ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
B          = build

PKGS      := vips libcjson openblas
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

P2P_CFLAGS = -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -fopenmp -Ilib \
             $(PKG_CFLAGS) -MMD -MP
P2P_LIBS   = $(PKG_LIBS) -lm -lpthread -fopenmp

ifeq ($(SANITIZE),1)
P2P_CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer
P2P_LIBS   += -fsanitize=address,undefined
endif

LIB_OBJ  = $(patsubst lib/%.c,$B/lib/%.o,$(wildcard lib/*.c))
PROGS    = $(patsubst cmd/%.c,$B/bin/%,$(wildcard cmd/*.c))
UNITS    = $(patsubst tests/unit/%.c,$B/tests/%,$(wildcard tests/unit/*.c))
BENCHES  = $(patsubst bench/%.c,$B/bench/%,$(wildcard bench/*.c))

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

.PHONY: all check test unit bats lint demo bench install uninstall clean deps probe
all: probe $(PROGS) $(UNITS) $(BENCHES)

probe:
	@echo "p2pcat: CUDA backend $(if $(NVCC),on ($(NVCC)),off)"
ifeq ($(MPI),1)
	@echo "p2pcat: MPI $(if $(MPI_LIBS),on ($(MPI_LIBS)),not found: install libopenmpi-dev) in $B"
	@test -n "$(MPI_LIBS)"
endif

$B/lib/%.o: lib/%.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(P2P_CFLAGS) $(CFLAGS) -c -o $@ $<

$B/lib/%.cu.o: lib/%.cu
	@mkdir -p $(@D)
	$(NVCC) $(NVFLAGS) -MMD -MP -MF $(@:.o=.d) -c -o $@ $<

$B/libp2p.a: $(LIB_OBJ) $(CU_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$B/cmd/%.o: cmd/%.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(P2P_CFLAGS) $(CFLAGS) -c -o $@ $<

$B/bin/%: $B/cmd/%.o $B/libp2p.a
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $< $B/libp2p.a $(P2P_LIBS)

$B/tests/%: tests/unit/%.c tests/unit/check.h $B/libp2p.a
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(P2P_CFLAGS) -Itests/unit $(CFLAGS) $(LDFLAGS) -o $@ $< $B/libp2p.a $(P2P_LIBS)

$B/bench/%: bench/%.c $B/libp2p.a
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(P2P_CFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $B/libp2p.a $(P2P_LIBS)

deps:
	@scripts/deps

# The whole suite: C unit tests, Bats suites, man page lint; TAP in, one count out.
check: deps
	@$(MAKE) --no-print-directory all
	@scripts/run-tests

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
	rm -rf $B

include experiment.mk

-include $(LIB_OBJ:.o=.d) $(CU_OBJ:.o=.d) $(PROGS:$B/bin/%=$B/cmd/%.d) $(UNITS:=.d)
