/*
 * unit_test.hpp — a minimal unit-test harness for the pure C++ modules.
 *
 *   TEST(name) { CHECK(cond); CHECK_EQ(actual, expected); REQUIRE(cond); }
 *
 * Each test binary is one .cpp including this header; it provides main()
 * (define UNIT_TEST_NO_MAIN to suppress it). main() runs every test, or only
 * those whose name contains argv[1], prints each failed check, and ends with
 * exactly one line "N passed, M failed" (counting tests). Exit status is 0
 * only when nothing failed. A check that fails does not stop its test, so one
 * run shows every broken expectation; REQUIRE also returns from the test, to
 * guard what follows (e.g. indexing a vector whose size was wrong).
 */
#pragma once

#include <cstdio>
#include <cstring>
#include <exception>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace unit {

struct Case {
    const char *name;
    void (*fn)();
};

inline std::vector<Case> &registry()
{
    static std::vector<Case> cases; /* function-local: safe from init-order issues */
    return cases;
}

struct Register {
    Register(const char *name, void (*fn)()) { registry().push_back(Case{name, fn}); }
};

struct State {
    const char *test = "";
    bool failed = false;
};
inline State &state()
{
    static State s;
    return s;
}

inline void fail(const char *file, int line, const std::string &what)
{
    state().failed = true;
    std::printf("FAIL %s (%s:%d): %s\n", state().test, file, line, what.c_str());
}

/* Printing values in failure messages: strings quoted with escapes, enums as
 * numbers, anything streamable as itself, the rest as "?". */
template <typename T, typename = void>
struct Streamable : std::false_type {};
template <typename T>
struct Streamable<T, std::void_t<decltype(std::declval<std::ostream &>() << std::declval<const T &>())>>
    : std::true_type {};

inline std::string show(const std::string &s)
{
    std::string out = "\"";
    for (char c : s) {
        if (c == '\n')
            out += "\\n";
        else if (c == '\t')
            out += "\\t";
        else if (c == '"' || c == '\\')
            out += std::string("\\") + c;
        else if (static_cast<unsigned char>(c) < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned char>(c));
            out += buf;
        } else
            out += c;
    }
    return out + "\"";
}
inline std::string show(const char *s) { return s ? show(std::string(s)) : "(null)"; }
inline std::string show(bool b) { return b ? "true" : "false"; }

template <typename T>
std::string show(const T &v)
{
    std::ostringstream os;
    if constexpr (std::is_enum_v<T>)
        os << static_cast<long long>(v);
    else if constexpr (Streamable<T>::value)
        os << v;
    else
        os << "?";
    return os.str();
}

/* a == b, but integers of different signedness compare by value (and
 * without -Wsign-compare noise), so CHECK_EQ(v.size(), 2) just works. */
template <typename A, typename B>
bool equal(const A &a, const B &b)
{
    if constexpr (std::is_integral_v<A> && std::is_integral_v<B> && !std::is_same_v<A, bool> &&
                  !std::is_same_v<B, bool> && std::is_signed_v<A> != std::is_signed_v<B>) {
        if constexpr (std::is_signed_v<A>)
            return a >= 0 && static_cast<unsigned long long>(a) == static_cast<unsigned long long>(b);
        else
            return b >= 0 && static_cast<unsigned long long>(a) == static_cast<unsigned long long>(b);
    } else {
        return a == b;
    }
}

inline int run_all(const char *filter)
{
    int passed = 0, failed = 0;
    for (const Case &c : registry()) {
        if (filter && !std::strstr(c.name, filter))
            continue;
        state().test = c.name;
        state().failed = false;
        try {
            c.fn();
        } catch (const std::exception &e) {
            fail(__FILE__, __LINE__, std::string("exception: ") + e.what());
        } catch (...) {
            fail(__FILE__, __LINE__, "unknown exception");
        }
        (state().failed ? failed : passed)++;
    }
    std::printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 && passed > 0 ? 0 : 1; /* running nothing is a failure too */
}

} // namespace unit

#define UNIT_CAT2(a, b) a##b
#define UNIT_CAT(a, b) UNIT_CAT2(a, b)

#define TEST(name)                                                              \
    static void name();                                                         \
    static const unit::Register UNIT_CAT(unit_reg_, name)(#name, &name);        \
    static void name()

#define CHECK(cond)                                                             \
    do {                                                                        \
        if (!(cond))                                                            \
            unit::fail(__FILE__, __LINE__, "CHECK(" #cond ")");                 \
    } while (0)

#define REQUIRE(cond)                                                           \
    do {                                                                        \
        if (!(cond)) {                                                          \
            unit::fail(__FILE__, __LINE__, "REQUIRE(" #cond ")");               \
            return;                                                             \
        }                                                                       \
    } while (0)

#define CHECK_EQ(actual, expected)                                              \
    do {                                                                        \
        const auto &unit_a_ = (actual);                                         \
        const auto &unit_e_ = (expected);                                       \
        if (!unit::equal(unit_a_, unit_e_))                                              \
            unit::fail(__FILE__, __LINE__,                                      \
                       "CHECK_EQ(" #actual ", " #expected "): got " +           \
                           unit::show(unit_a_) + ", expected " +                \
                           unit::show(unit_e_));                                \
    } while (0)

#ifndef UNIT_TEST_NO_MAIN
int main(int argc, char **argv)
{
    return unit::run_all(argc > 1 ? argv[1] : nullptr);
}
#endif
