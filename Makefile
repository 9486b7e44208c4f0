# bgw_proxy — PGXS build. C++17 sources in src/, linked with libpq and libstdc++.
#
#   make                  build bgw_proxy.so
#   make install          install it (as root)
#   make unittest         the pure C++ unit tests and the include rules (no server)
#   make installcheck     pg_regress against a running server that preloads
#                         bgw_proxy (settings: test/regress.conf)
#   make check-regress    pg_regress on a temporary instance of its own
#   make prove-installcheck  the TAP tests (test/t/; each starts its own servers;
#                         run as a user that may run PostgreSQL, not root)
#   make fuzz             each libFuzzer target (test/fuzz/) for FUZZ_SECONDS
#                         (20) over a copy of its seed corpus; needs clang
#   make bench            the benchmark (test/bench.sh)
#   make test-all         all of the above but bench, as README says (as root)

MODULE_big = bgw_proxy
EXTENSION  = bgw_proxy bgw_proxy_plproxy
DATA       = bgw_proxy--1.0.sql bgw_proxy--1.0--1.1.sql bgw_proxy--1.1--1.2.sql bgw_proxy--1.2--1.3.sql \
             bgw_proxy_plproxy--1.0.sql
PGFILEDESC = "bgw_proxy - remote function calls through a shared background-worker pool"

CXX_SRCS = $(wildcard src/*.cpp src/*/*.cpp)
OBJS     = $(CXX_SRCS:.cpp=.o)

# In this order: 00_setup creates the remote databases, 07_cluster the
# partitions and configuration functions that later files use.
REGRESS = 00_setup 01_types 02_errors 03_pooling 04_cancel 05_encoding 06_prepare \
          07_cluster 08_validator 09_sqlmed 10_lifecycle 11_plproxy_dropin 12_shapes \
          13_cluster_cache 14_monitoring 15_retire 16_binary 17_operations 18_replicas
REGRESS_OPTS = --inputdir=.

# TAP tests, run by PGXS's own prove_installcheck (prove-installcheck below)
PROVE_TESTS = test/t/*.pl

PG_CONFIG ?= pg_config
PG_CPPFLAGS = -I$(shell $(PG_CONFIG) --includedir) -Isrc
SHLIB_LINK  = -L$(shell $(PG_CONFIG) --libdir) -lpq -lstdc++ -pthread

# PostgreSQL here is built --with-llvm, so PGXS would also compile every
# source to LLVM bitcode with clang for JIT inlining. A network proxy gains
# nothing from inlining into JIT-compiled expressions, and the bitcode step
# would need its own C++17 flags for Boost: switch it off.
override with_llvm = no

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# After PGXS: its CXXFLAGS come first, ours add the C++ standard and drop the
# C-only warnings PGXS passes.
override CXXFLAGS := $(filter-out -Wmissing-prototypes -Wdeclaration-after-statement,$(CXXFLAGS)) \
	-std=c++17 -fPIC -Wall -Wno-missing-field-initializers -Wno-register

$(OBJS): $(wildcard src/*/*.h src/*/*.hpp)

UNIT_TESTS = $(patsubst test/unit/%.cpp,test/unit/%,$(wildcard test/unit/test_*.cpp))
UNIT_SRCS  = src/backend/body_parser.cpp src/common/conninfo.cpp $(wildcard src/pool/*.cpp)

test/unit/%: test/unit/%.cpp $(UNIT_SRCS) $(wildcard src/*/*.hpp test/unit/*.hpp)
	$(CXX) -std=c++17 -O1 -g -Wall -Wextra -fsanitize=address,undefined -Isrc \
		-I$(shell $(PG_CONFIG) --includedir) $< $(UNIT_SRCS) -o $@ \
		-L$(shell $(PG_CONFIG) --libdir) -lpq -pthread

# libFuzzer targets of the pure parsers and codecs, under ASan and UBSan.
# UBSan must not recover, or a finding would be printed and then forgotten.
FUZZ_CXX     ?= clang++
FUZZ_SECONDS ?= 20
FUZZ_TARGETS  = $(patsubst test/fuzz/%.cpp,test/fuzz/%,$(wildcard test/fuzz/fuzz_*.cpp))

test/fuzz/fuzz_body_parser: src/backend/body_parser.cpp
test/fuzz/fuzz_conninfo: src/common/conninfo.cpp

test/fuzz/fuzz_%: test/fuzz/fuzz_%.cpp $(wildcard src/*/*.hpp)
	$(FUZZ_CXX) -std=c++17 -O1 -g -Wall -Wextra -fsanitize=fuzzer,address,undefined \
		-fno-sanitize-recover=undefined -Isrc -I$(shell $(PG_CONFIG) --includedir) \
		$< $(filter %.cpp,$(filter-out $<,$^)) -o $@ -L$(shell $(PG_CONFIG) --libdir) -lpq

.PHONY: unittest check-regress prove-installcheck bench test-all fuzz
unittest: $(UNIT_TESTS)
	@for t in $(UNIT_TESTS); do ./$$t || exit 1; done
	@perl test/lint/check_includes.pl src

check-regress:
	bash test/regress_check.sh

prove-installcheck:
	$(prove_installcheck)

fuzz: $(FUZZ_TARGETS)
	bash test/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

bench:
	bash test/bench.sh

test-all:
	bash test/run_all.sh

EXTRA_CLEAN = $(UNIT_TESTS) $(FUZZ_TARGETS) results/ regression.diffs regression.out tmp_check/ log/
