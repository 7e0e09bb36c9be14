# slimlm build. `make` builds the library and the CLI; `make test` runs the test suite;
# `make asan` the fast tests under ASan+UBSan; `make fuzz` the GGUF parser and model loader
# fuzzers (clang).
CC      ?= cc
BUILD   ?= build
OPT     ?= -O2
# SAN: sanitizer flags (the asan target sets them; compile and link)
CFLAGS  += -std=c11 $(OPT) -g -Wall -Wextra -pthread -fno-strict-aliasing $(SAN)
LDFLAGS += $(SAN)
CPPFLAGS += -D_GNU_SOURCE -Iinclude -Isrc
LDLIBS  += -lm -pthread -lmicrohttpd -lcjson -lzstd

LIB_SRC := $(sort $(wildcard src/core/*.c src/kernels/*.c src/model/*.c src/runtime/*.c src/eval/*.c src/compress/*.c src/train/*.c src/server/*.c))
# x86 SIMD kernels only on x86-64; elsewhere the portable kernels alone are built.
ifneq ($(shell uname -m),x86_64)
LIB_SRC := $(filter-out %_avx2.c %_avx512.c %_vbmi2.c,$(LIB_SRC))
endif
CLI_SRC := $(sort $(wildcard src/cli/*.c))
TEST_SRC := $(sort $(wildcard tests/test_*.c))

LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)

.PHONY: all test test-fast asan fuzz clean demo
all: $(BUILD)/slimlm $(TEST_BIN)

# Kernels for one instruction set live in files named *_avx2.c / *_avx512.c and are compiled
# for it; they run only after a cpuid check (src/kernels/qdot.c), so one binary runs anywhere.
ISA_AVX2   := -mavx2 -mfma -mf16c
ISA_AVX512 := -mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni -mavx512bf16
$(BUILD)/%_avx2.o: %_avx2.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(ISA_AVX2) -MMD -MP -c $< -o $@

$(BUILD)/%_avx512.o: %_avx512.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(ISA_AVX512) -MMD -MP -c $< -o $@

# AVX-512 VBMI/VBMI2 (byte permutes, expand/compress) on top of the AVX-512 set; installed only
# after their own cpuid check.
$(BUILD)/%_vbmi2.o: %_vbmi2.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(ISA_AVX512) -mavx512vbmi -mavx512vbmi2 -MMD -MP -c $< -o $@

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libslimlm.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/slimlm: $(CLI_OBJ) $(BUILD)/libslimlm.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libslimlm.a $(LDLIBS)

$(BUILD)/tests/%: tests/%.c tests/test.h $(BUILD)/libslimlm.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(BUILD)/libslimlm.a $(LDLIBS)

# Full suite: unit tests, oracle tests and end-to-end tests on the real model.
test: all
	BUILD=$(BUILD) tests/run.sh

# Fast tests only (no real-model end-to-end runs).
test-fast: all
	BUILD=$(BUILD) tests/run.sh --fast

# The fast tests and the end-to-end generation test under AddressSanitizer + UBSan.
asan:
	$(MAKE) BUILD=build-asan OPT=-O1 \
	  SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer" all
	BUILD=build-asan tests/run.sh --fast --asan

# libFuzzer targets (need clang): the GGUF parser, then the model loader; FUZZ_SECONDS bounds
# each run.
FUZZ_SECONDS ?= 60
fuzz: $(BUILD)/fuzz_gguf $(BUILD)/fuzz_model
	@mkdir -p $(BUILD)/fuzz-corpus $(BUILD)/fuzz-model-corpus
	$(BUILD)/fuzz_gguf -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -rss_limit_mb=2048 -malloc_limit_mb=1 \
	  $(BUILD)/fuzz-corpus tests/data/gguf-corpus
	$(BUILD)/fuzz_model -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -rss_limit_mb=2048 -malloc_limit_mb=64 \
	  $(BUILD)/fuzz-model-corpus tests/data/model-corpus

$(BUILD)/fuzz_gguf: tests/fuzz/fuzz_gguf.c src/core/gguf.c src/core/dtype.c src/core/gq.c src/core/quant_k.c src/core/sparse.c src/core/codebook.c src/core/cbt.c src/core/vsort.c src/core/status.c
	@mkdir -p $(dir $@)
	clang -std=c11 -g -O1 -D_GNU_SOURCE -Isrc -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -o $@ $^ -lm

# The model loader's fuzzer links the whole library built by clang with coverage and sanitizers
# in its own directory (FUZZ_BUILD), through the pattern rules above (ISA flags included).
FUZZ_BUILD ?= build-fuzz
FUZZ_SAN := -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
.PHONY: fuzz-lib
fuzz-lib:
	$(MAKE) BUILD=$(FUZZ_BUILD) CC=clang OPT=-O1 SAN="$(FUZZ_SAN)" $(FUZZ_BUILD)/libslimlm.a

$(BUILD)/fuzz_model: tests/fuzz/fuzz_model.c fuzz-lib
	@mkdir -p $(dir $@)
	clang -std=c11 -g -O1 -Wall -Wextra -D_GNU_SOURCE -Iinclude -Isrc -fsanitize=fuzzer,address,undefined \
	  -fno-sanitize-recover=undefined -fno-omit-frame-pointer -o $@ $< $(FUZZ_BUILD)/libslimlm.a $(LDLIBS)

# Attention kernels (naive vs tiled) and paged-KV waste: prints a table, --json FILE for JSON.
.PHONY: bench-attn
bench-attn: $(BUILD)/attn_bench
$(BUILD)/attn_bench: bench/attn_bench.c $(BUILD)/libslimlm.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(BUILD)/libslimlm.a $(LDLIBS)

# Group-format row dots and gemm per kernel set against q4_0/q4_1/q8_0: a table, --json FILE.
.PHONY: bench-gq
bench-gq: $(BUILD)/gq_bench
$(BUILD)/gq_bench: bench/gq_bench.c $(BUILD)/libslimlm.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(BUILD)/libslimlm.a $(LDLIBS)

# Sparse formats (2:4, unstructured) against dense q8_0/q4_0 across densities: a table, JSON.
.PHONY: bench-sp
bench-sp: $(BUILD)/sp_bench
$(BUILD)/sp_bench: bench/sp_bench.c $(BUILD)/libslimlm.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(BUILD)/libslimlm.a $(LDLIBS)

# Peak FP32 FLOP/s (register FMA loop, AVX2 / AVX-512, 1 and all threads) and the training
# sgemm's GFLOP/s on the training shapes with its share of that peak: a table, --json FILE.
.PHONY: bench-train
bench-train: $(BUILD)/train_bench
$(BUILD)/train_bench: bench/train_bench.c $(BUILD)/libslimlm.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(BUILD)/libslimlm.a $(LDLIBS)

demo: $(BUILD)/slimlm
	$(BUILD)/slimlm run -p "The capital of France is" -n 32

clean:
	rm -rf build build-*

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d)
