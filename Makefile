# Hardening targets (issue 9): fuzzing, sanitizers, leak checks, allocation
# counters. The normal build and tests are scripts/test.sh; nothing here is
# needed for them. What each target runs, and the figures, are in
# docs/hardening.md.
#
#   make fuzz            libFuzzer (ASan+UBSan) on the C reply parsers and the
#                        request builder's build->parse round trips, FUZZ_TIME s each
#   make fuzz-ci         the same, 20 s per target
#   make fuzz-coverage   llvm-cov line/branch coverage of the parsers by the corpus
#   make capture         re-record the seed corpus from the sandbox kernel
#   make asan            extension with ASan+UBSan, unit tests (host)
#   make ubsan-kernel    extension with UBSan, kernel tests in the sandbox
#   make valgrind        memcheck over the core kernel tests in the sandbox
#   make alloc-check     -DIPVS_DEBUG_ALLOC build, kernel tests, allocs == frees
#   make ctest           the C-level sockopt exerciser (csrc/test_sockopt.c) in the sandbox
#   make test-hooks      -DIPVS_TEST_HOOKS build, the kernel tests that need its hooks (CI)
#
# Sanitizer/debug builds are made in private copies under build/hardening/
# (never in place), so they do not disturb the checkout's own extension.
# Needs: clang with libFuzzer (Debian: apt-get install clang libclang-rt-14-dev)
# for the fuzz targets; gcc for the rest; valgrind for `valgrind`;
# user-mode-linux (see ipvs/sandbox.py) for the kernel runs.

SHELL       := /bin/bash
PYTHON      ?= python3
# the build requirements of pyproject.toml (Cython pinned there): the
# private in-place builds below need them in $(PY)'s environment
BUILD_REQS = $(shell $(PY) -c "import tomllib, shlex; print(' '.join(shlex.quote(r) for r in tomllib.load(open('pyproject.toml', 'rb'))['build-system']['requires']))")
PY          := $(shell $(PYTHON) -c 'import sys; print(sys.executable)')
CLANG       ?= clang
FUZZ_TIME   ?= 60
FUZZ_RUNS   ?= -1
OUT         := fuzz/out
HB          := build/hardening
ROOT        := $(CURDIR)
CSRC_LIB    := $(filter-out csrc/test_%,$(wildcard csrc/*.c))
FUZZ_CFLAGS := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
               -Wall -Wextra -std=gnu11 -Icsrc
SANDBOX     := $(PY) -m ipvs.sandbox
KTESTS      ?= tests/kernel
VG_TESTS    ?= tests/kernel/test_core.py tests/kernel/test_bulk.py

ASAN_CFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined \
               -fno-omit-frame-pointer -O1 -g
UBSAN_CFLAGS := -fsanitize=undefined -fno-sanitize-recover=undefined -O1 -g

.PHONY: fuzz fuzz-ci fuzz-coverage fuzz-build capture asan ubsan-kernel valgrind alloc-check ctest test-hooks clean-hardening

# A private copy of the work tree in $(1) (sources only; the extension is
# rebuilt there).
define private_copy
	rm -rf $(1) && mkdir -p $(1)
	tar -C $(ROOT) --exclude=./.git --exclude=./.venv --exclude=./build \
	    --exclude=./fuzz/out --exclude='*.so' --exclude=./ipvs/_libipvs.c \
	    --exclude=.pytest_cache --exclude=.hypothesis -cf - . | tar -C $(1) -xf -
endef

# ---------------------------------------------------------------- fuzzing
$(OUT)/fuzz_nlparse: fuzz/fuzz_nlparse.c csrc/nlparse.c csrc/nlparse.h csrc/uapi.h csrc/libipvs.h
	@mkdir -p $(OUT)
	$(CLANG) $(FUZZ_CFLAGS) fuzz/fuzz_nlparse.c csrc/nlparse.c -o $@

$(OUT)/fuzz_soparse: fuzz/fuzz_soparse.c csrc/soparse.c csrc/soparse.h csrc/sockopt_uapi.h csrc/libipvs.h
	@mkdir -p $(OUT)
	$(CLANG) $(FUZZ_CFLAGS) fuzz/fuzz_soparse.c csrc/soparse.c -o $@

# build -> parse round trips: every request the builder makes parses back
$(OUT)/fuzz_nlbuild: fuzz/fuzz_nlbuild.c csrc/nlbuild.c csrc/nlbuild.h csrc/nlparse.c csrc/nlparse.h csrc/uapi.h csrc/libipvs.h
	@mkdir -p $(OUT)
	$(CLANG) $(FUZZ_CFLAGS) fuzz/fuzz_nlbuild.c csrc/nlbuild.c csrc/nlparse.c -o $@

FUZZ_TARGETS := nlparse soparse nlbuild
# the C files the round-trip target covers (fuzz-coverage)
FUZZ_SRC_nlbuild := csrc/nlbuild.c csrc/nlparse.c

fuzz-build: $(addprefix $(OUT)/fuzz_,$(FUZZ_TARGETS))

# New inputs go to $(OUT)/work-TARGET (the committed corpus is only read);
# a crash leaves $(OUT)/crash-TARGET-* and fails the target.
fuzz: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
	    mkdir -p $(OUT)/work-$$t || exit 1; \
	    echo "==> fuzz_$$t: $(FUZZ_TIME) s"; \
	    ASAN_OPTIONS=abort_on_error=1:detect_leaks=1 \
	    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	    $(OUT)/fuzz_$$t -max_total_time=$(FUZZ_TIME) -runs=$(FUZZ_RUNS) \
	        -print_final_stats=1 -artifact_prefix=$(OUT)/crash-$$t- \
	        $(OUT)/work-$$t fuzz/corpus/$$t > $(OUT)/fuzz_$$t.log 2>&1; rc=$$?; \
	    grep -E '^#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|stat::average_exec_per_sec' \
	        $(OUT)/fuzz_$$t.log; \
	    if [ $$rc -ne 0 ]; then tail -60 $(OUT)/fuzz_$$t.log; \
	        echo "!!! fuzz_$$t failed (rc $$rc), see $(OUT)/fuzz_$$t.log"; exit 1; fi; \
	done

fuzz-ci:
	$(MAKE) fuzz FUZZ_TIME=20

# Line/branch coverage of the parsers by the committed corpus plus whatever
# `make fuzz` found ($(OUT)/work-*): llvm-cov report.
fuzz-coverage:
	@mkdir -p $(OUT)/cov
	@for t in $(FUZZ_TARGETS); do \
	    case $$t in nlbuild) src="$(FUZZ_SRC_nlbuild)";; *) src=csrc/$$t.c;; esac; \
	    $(CLANG) -g -O0 -fsanitize=fuzzer -fprofile-instr-generate -fcoverage-mapping \
	        -std=gnu11 -Icsrc fuzz/fuzz_$$t.c $$src -o $(OUT)/cov/fuzz_$$t || exit 1; \
	    mkdir -p $(OUT)/work-$$t; \
	    LLVM_PROFILE_FILE=$(OUT)/cov/$$t.profraw $(OUT)/cov/fuzz_$$t -runs=0 \
	        fuzz/corpus/$$t $(OUT)/work-$$t > $(OUT)/cov/$$t.log 2>&1 || exit 1; \
	    llvm-profdata merge -sparse $(OUT)/cov/$$t.profraw -o $(OUT)/cov/$$t.profdata || exit 1; \
	    llvm-cov report $(OUT)/cov/fuzz_$$t -instr-profile=$(OUT)/cov/$$t.profdata csrc/$$t.c; \
	done

# Record real replies from the sandbox kernel (a throw-away namespace "c").
CAPTURE_DIR ?= $(OUT)/captured
$(OUT)/capture: fuzz/capture.c $(CSRC_LIB) $(wildcard csrc/*.h)
	@mkdir -p $(OUT)
	$(CLANG) -g -O1 -Wall -Wextra -std=gnu11 -DIPVS_CAPTURE -Icsrc -pthread \
	    fuzz/capture.c $(CSRC_LIB) -o $@

capture: $(OUT)/capture
	rm -rf $(CAPTURE_DIR)
	$(SANDBOX) -- sh -c 'ip netns add c && ip -n c link set lo up && \
	    ip netns exec c $(OUT)/capture $(CAPTURE_DIR)'
	@echo "recorded under $(CAPTURE_DIR); to refresh the seeds: make capture CAPTURE_DIR=fuzz/corpus"

# ------------------------------------------------------------- sanitizers
# ASan cannot run inside User-Mode Linux (its shadow memory clashes with
# UML's address layout), so the ASan build runs the unit tests on the host.
# Python is not instrumented: the runtime is preloaded, leaks not checked.
# The unit tests that boot the sandbox are deselected: linux.uml would
# inherit the preloaded ASan runtime and die.
ASAN_DESELECT := \
    --deselect tests/unit/test_sandbox_unit.py::test_boot_runs_command_with_cwd_env_and_status \
    --deselect tests/unit/test_sandbox_unit.py::test_timeout_kills_the_kernel \
    --deselect tests/unit/test_sandbox_io.py::test_stdin_passes_through_and_order_is_kept_in_one_file \
    --deselect tests/unit/test_sandbox_io.py::test_restore_from_a_pipe
asan:
	$(call private_copy,$(HB)/asan)
	cd $(HB)/asan && IPVS_CFLAGS="$(ASAN_CFLAGS)" IPVS_LDFLAGS="-fsanitize=address,undefined" \
	    $(PY) setup.py build_ext --inplace -q
	cd $(HB)/asan && ldd ipvs/_libipvs*.so | grep -q libasan \
	    || { echo "!!! extension not linked with libasan"; exit 1; }
	cd $(HB)/asan && LD_PRELOAD=$$(gcc -print-file-name=libasan.so) \
	    ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:strict_string_checks=1 \
	    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	    $(PY) -c 'import ipvs._libipvs as m, os; assert m.__file__.startswith(os.getcwd()), m.__file__'
	cd $(HB)/asan && LD_PRELOAD=$$(gcc -print-file-name=libasan.so) \
	    ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:strict_string_checks=1 \
	    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	    $(PY) -m pytest -q -p no:cacheprovider tests/unit $(ASAN_DESELECT) 2>&1 | tee asan.log; \
	    rc=$${PIPESTATUS[0]}; \
	    if grep -qE 'ERROR: AddressSanitizer|runtime error:' asan.log; then exit 1; fi; exit $$rc

ubsan-kernel:
	$(call private_copy,$(HB)/ubsan)
	cd $(HB)/ubsan && IPVS_CFLAGS="$(UBSAN_CFLAGS)" IPVS_LDFLAGS="-fsanitize=undefined" \
	    $(PY) setup.py build_ext --inplace -q
	cd $(HB)/ubsan && ldd ipvs/_libipvs*.so | grep -q libubsan \
	    || { echo "!!! extension not linked with libubsan"; exit 1; }
	cd $(HB)/ubsan && IPVS_REQUIRE_KERNEL=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	    $(SANDBOX) -- $(PY) -m pytest -q -p no:cacheprovider $(KTESTS) 2>&1 | tee ubsan.log; \
	    rc=$${PIPESTATUS[0]}; \
	    if grep -q 'runtime error:' ubsan.log; then exit 1; fi; exit $$rc

# memcheck over the core kernel tests inside the sandbox; CPython is run with
# PYTHONMALLOC=malloc and its own noise suppressed (fuzz/valgrind-python.supp);
# fuzz/vg_check.py fails on any invalid access/uninitialised use, and on any
# "definitely lost" block allocated from the extension.
valgrind:
	$(call private_copy,$(HB)/valgrind)
	cd $(HB)/valgrind && IPVS_CFLAGS="-O1 -g" $(PY) setup.py build_ext --inplace -q
	cd $(HB)/valgrind && IPVS_REQUIRE_KERNEL=1 PYTHONMALLOC=malloc \
	    $(SANDBOX) --timeout 3000 -- valgrind --tool=memcheck --leak-check=full \
	        --show-leak-kinds=definite --errors-for-leak-kinds=definite \
	        --num-callers=30 --suppressions=$(ROOT)/fuzz/valgrind-python.supp \
	        --log-file=$(ROOT)/$(HB)/valgrind/vg.%p.log \
	        $(PY) -m pytest -q -p no:cacheprovider $(VG_TESTS)
	$(PY) fuzz/vg_check.py $(HB)/valgrind/vg.*.log

alloc-check:
	$(call private_copy,$(HB)/alloc)
	$(PY) -m pip install -q $(BUILD_REQS)
	cd $(HB)/alloc && IPVS_CFLAGS="-DIPVS_DEBUG_ALLOC" $(PY) setup.py build_ext --inplace -q
	cd $(HB)/alloc && $(PY) -c 'import ipvs._libipvs as m; assert m.debug_alloc_counts() is not None'
	cd $(HB)/alloc && IPVS_REQUIRE_KERNEL=1 IPVS_REQUIRE_ALLOC_COUNTERS=1 \
	    $(SANDBOX) -- $(PY) -m pytest -q -p no:cacheprovider $(KTESTS)

# The test build: run-time switches for tests exist only with -DIPVS_TEST_HOOKS
# (today IPVS_TEST_NETLINK_FAMILY, csrc/nlio.c), never in a release wheel.
# (Test entry points are another thing: the private module ipvs._libipvs_test,
# which every in-place build here makes, see setup.py.)
# The tests that need them run here; in the normal build they skip after
# asserting that this target runs them (tests/kernel/test_fallback.py).
test-hooks:
	$(call private_copy,$(HB)/hooks)
	$(PY) -m pip install -q $(BUILD_REQS)
	cd $(HB)/hooks && IPVS_CFLAGS="-DIPVS_TEST_HOOKS" $(PY) setup.py build_ext --inplace -q
	cd $(HB)/hooks && $(PY) -c 'import ipvs._libipvs as m, os; assert m.TEST_BUILD and m.__file__.startswith(os.getcwd()), m.__file__'
	cd $(HB)/hooks && IPVS_REQUIRE_KERNEL=1 IPVS_REQUIRE_TEST_BUILD=1 \
	    $(SANDBOX) -- $(PY) -m pytest -q -p no:cacheprovider tests/kernel/test_fallback.py

clean-hardening:
	rm -rf $(OUT) $(HB)

# csrc/test_sockopt.c against the real kernel, below Python: every sockopt
# request and reply, errno cases, growth between count and read.
ctest:
	mkdir -p build/ctest
	gcc -Wall -Wextra -Werror -O2 -pthread -Icsrc csrc/libipvs.c csrc/sockopt.c \
	    csrc/soparse.c csrc/handle.c csrc/alloc.c csrc/test_sockopt.c csrc/test_sockopt_util.c \
	    -o build/ctest/test_sockopt
	PYTHONPATH=$(CURDIR) $(PYTHON) -m ipvs.sandbox -- sh -c \
	    'ip netns add ctest && ip -n ctest link set lo up && ip netns exec ctest build/ctest/test_sockopt'
