# bgw_proxy — PGXS build. C++17 sources in src/, linked with libpq and libstdc++.
#
#   make                 build bgw_proxy.so
#   make install         install it (as root)
#   make unittest        build and run the pure C++ unit tests (no server)
#   make installcheck    pg_regress against a running server (see test/run_all.sh)
#   make bench           the benchmark (test/bench.sh)
#   make test-all        every suite: unit, pg_regress, TAP (test/run_all.sh; as root)

MODULE_big = bgw_proxy
EXTENSION  = bgw_proxy bgw_proxy_plproxy
DATA       = bgw_proxy--1.0.sql bgw_proxy--1.0--1.1.sql bgw_proxy_plproxy--1.0.sql
PGFILEDESC = "bgw_proxy - remote function calls through a shared background-worker pool"

CXX_SRCS = $(wildcard src/*.cpp src/*/*.cpp)
OBJS     = $(CXX_SRCS:.cpp=.o)

REGRESS      = $(basename $(notdir $(wildcard sql/*.sql)))
REGRESS_OPTS = --inputdir=.

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
UNIT_SRCS  = src/backend/body_parser.cpp $(wildcard src/pool/*.cpp)

test/unit/%: test/unit/%.cpp $(UNIT_SRCS) $(wildcard src/*/*.hpp test/unit/*.hpp)
	$(CXX) -std=c++17 -O1 -g -Wall -Wextra -fsanitize=address,undefined -Isrc \
		-I$(shell $(PG_CONFIG) --includedir) $< $(UNIT_SRCS) -o $@ \
		-L$(shell $(PG_CONFIG) --libdir) -lpq -pthread

.PHONY: unittest bench test-all
unittest: $(UNIT_TESTS)
	@for t in $(UNIT_TESTS); do ./$$t || exit 1; done

bench:
	bash test/bench.sh

test-all:
	bash test/run_all.sh

EXTRA_CLEAN = $(UNIT_TESTS) results/ regression.diffs regression.out tmp_check/ log/
