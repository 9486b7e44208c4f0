/*
 * Unit tests for wire (the message codec between backends and workers).
 *
 * The truncation tests copy each prefix of a valid message into a buffer of
 * exactly that size (heap, so AddressSanitizer sees any read past it) and
 * also place it against an inaccessible guard page (so an overread faults
 * even without a sanitizer).
 */
#include "wire.hpp"
#include "unit_test.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

using namespace bgw::wire;

namespace {

std::string span_str(const Span &s) { return s.data ? std::string(s.data, s.len) : std::string(); }

/* True when the span lies inside [base, base + len). */
bool inside(const Span &s, const std::string &buf)
{
    return s.data >= buf.data() && s.data + s.len <= buf.data() + buf.size();
}

/* A buffer other than std::string, to show Writer needs only append(). */
struct ByteVec {
    std::vector<unsigned char> v;
    void append(const char *p, size_t n) { v.insert(v.end(), p, p + n); }
};

/* ---- complete messages, as the product writes them ------------------- */

std::string make_request()
{
    std::string b;
    Writer<std::string> w(b);
    w.u32(kRequestMagic);
    w.u32(0x5);      /* flags */
    w.u32(10000);    /* connect timeout */
    w.u32(0);        /* query timeout */
    w.str("public.f(int)");
    w.str("SELECT $1::int, $2");
    w.u32(2);        /* ntargets */
    w.u32(0);        /* target 0 */
    w.str("host=a dbname=x");
    w.str("UTF8");
    w.u32(2);
    w.blob("42", 2);
    w.null_blob();
    w.u32(7);        /* target 1 */
    w.str("");
    w.str("LATIN1");
    w.u32(2);
    w.blob("", 0);
    w.blob("x\0y", 3);
    return b;
}

struct Param {
    bool is_null;
    std::string value;
};
struct Target {
    uint32_t partition = 0;
    std::string connstr, encoding;
    std::vector<Param> params;
};
struct Request {
    uint32_t flags = 0, connect_ms = 0, query_ms = 0;
    std::string function, query;
    std::vector<Target> targets;
};

/* Reads a whole request, false on anything malformed or left over. */
bool read_request(const void *data, size_t len, Request &out)
{
    Reader r(data, len);
    uint32_t magic, ntargets;
    Span fn, q;
    if (!r.u32(magic) || magic != kRequestMagic || !r.u32(out.flags) || !r.u32(out.connect_ms) ||
        !r.u32(out.query_ms) || !r.str(fn) || !r.str(q) || !r.u32(ntargets))
        return false;
    out.function = span_str(fn);
    out.query = span_str(q);
    for (uint32_t i = 0; i < ntargets; i++) {
        Target t;
        Span cs, enc;
        uint32_t nparams;
        if (!r.u32(t.partition) || !r.str(cs) || !r.str(enc) || !r.u32(nparams))
            return false;
        t.connstr = span_str(cs);
        t.encoding = span_str(enc);
        for (uint32_t j = 0; j < nparams; j++) {
            Span p;
            if (!r.blob(p))
                return false;
            t.params.push_back(Param{p.is_null, span_str(p)});
        }
        out.targets.push_back(t);
    }
    return r.at_end();
}

void write_fields(Writer<std::string> &w, const char *sqlstate, size_t sqlstate_len, const char *severity,
                  const char *message, const char *detail, const char *hint, const char *context)
{
    w.raw(sqlstate, sqlstate_len);
    w.str(severity);
    w.str(message);
    w.str(detail);
    w.str(hint);
    w.str(context);
}

/* The responses of one call, each a separate message. */
std::vector<std::string> make_responses()
{
    std::vector<std::string> msgs;
    auto add = [&msgs](auto fill) {
        std::string b;
        Writer<std::string> w(b);
        fill(w);
        msgs.push_back(b);
    };
    add([](Writer<std::string> &w) {
        w.u8(kRow);
        w.u16(1);
        w.u16(3);
        w.blob("17", 2);
        w.null_blob();
        w.blob("", 0);
    });
    add([](Writer<std::string> &w) {
        w.u8(kNotice);
        w.u16(0);
        write_fields(w, "01000", 5, "NOTICE", "hello", "", nullptr, "PL/pgSQL function g()");
    });
    add([](Writer<std::string> &w) {
        w.u8(kError);
        w.u16(65535);
        write_fields(w, "42P01", 5, "ERROR", "relation \"t\" does not exist", "some detail", "a hint", "");
    });
    add([](Writer<std::string> &w) {
        w.u8(kTargetDone);
        w.u16(1);
        w.u64(123456789012345ull);
    });
    add([](Writer<std::string> &w) { w.u8(kCallDone); });
    return msgs;
}

/* Reads one whole response message the way the backend does. */
bool read_response(const void *data, size_t len)
{
    Reader r(data, len);
    uint8_t kind;
    uint16_t target;
    if (!r.u8(kind))
        return false;
    if (kind == kCallDone)
        return r.at_end();
    if (!r.u16(target))
        return false;
    switch (kind) {
    case kRow: {
        uint16_t n;
        if (!r.u16(n))
            return false;
        for (uint16_t i = 0; i < n; i++) {
            Span s;
            if (!r.blob(s))
                return false;
        }
        break;
    }
    case kError:
    case kNotice: {
        ErrorFields f;
        if (!read_error_fields(r, f))
            return false;
        break;
    }
    case kTargetDone: {
        uint64_t rows;
        if (!r.u64(rows))
            return false;
        break;
    }
    default:
        return false;
    }
    return r.at_end();
}

/* Two pages, the second inaccessible: a copy placed to end at the boundary
 * faults on any read past its end. */
class GuardedBuffer {
public:
    GuardedBuffer()
    {
        page_ = size_t(sysconf(_SC_PAGESIZE));
        void *p = mmap(nullptr, 2 * page_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return;
        base_ = static_cast<char *>(p);
        if (mprotect(base_ + page_, page_, PROT_NONE) != 0) {
            munmap(base_, 2 * page_);
            base_ = nullptr;
        }
    }
    ~GuardedBuffer()
    {
        if (base_)
            munmap(base_, 2 * page_);
    }
    bool ok() const { return base_ != nullptr; }
    size_t max() const { return page_; }
    /* Copies data to end exactly at the guard page; returns its start. */
    const char *place(const char *data, size_t len)
    {
        char *at = base_ + page_ - len;
        memcpy(at, data, len);
        return at;
    }

private:
    char *base_ = nullptr;
    size_t page_ = 0;
};

/* For every proper prefix of msg, `read` must return false; for msg itself,
 * true. Returns the number of prefixes that were wrongly accepted. */
template <typename ReadFn>
size_t accepted_prefixes(const std::string &msg, ReadFn read, GuardedBuffer &guard, bool &whole_ok)
{
    size_t wrong = 0;
    for (size_t n = 0; n <= msg.size(); n++) {
        std::unique_ptr<char[]> exact(new char[n]); /* exactly n bytes, for ASan */
        memcpy(exact.get(), msg.data(), n);
        bool a = read(exact.get(), n);
        bool b = read(guard.place(msg.data(), n), n);
        if (n == msg.size())
            whole_ok = a && b;
        else if (a || b) {
            wrong++;
            std::printf("  prefix %zu of %zu accepted\n", n, msg.size());
        }
    }
    return wrong;
}

} // namespace

TEST(primitives_round_trip)
{
    std::string b;
    Writer<std::string> w(b);
    w.u8(0);
    w.u8(255);
    w.u16(0);
    w.u16(0xbeef);
    w.u16(0xffff);
    w.u32(0);
    w.u32(0xdeadbeefu);
    w.u32(0xffffffffu);
    w.u64(0);
    w.u64(0x0123456789abcdefull);
    w.u64(~uint64_t(0));
    w.str("hello");
    w.str("");
    w.str(nullptr); /* written as an empty string */
    w.str("a\0b", 3);
    w.blob("blob", 4);
    w.blob("\xff\xff\xff\xff", 4); /* bytes that look like the NULL marker */
    w.blob("", 0);
    w.null_blob();
    CHECK_EQ(b.size(), 2 + 3 * 2 + 3 * 4 + 3 * 8 + (4 + 5) + 4 + 4 + (4 + 3) + (4 + 4) + (4 + 4) + 4 + 4);

    Reader r(b.data(), b.size());
    uint8_t u8;
    uint16_t u16;
    uint32_t u32;
    uint64_t u64;
    Span s;
    REQUIRE(r.u8(u8));
    CHECK_EQ(int(u8), 0);
    REQUIRE(r.u8(u8));
    CHECK_EQ(int(u8), 255);
    REQUIRE(r.u16(u16));
    CHECK_EQ(u16, 0);
    REQUIRE(r.u16(u16));
    CHECK_EQ(u16, 0xbeef);
    REQUIRE(r.u16(u16));
    CHECK_EQ(u16, 0xffff);
    REQUIRE(r.u32(u32));
    CHECK_EQ(u32, 0u);
    REQUIRE(r.u32(u32));
    CHECK_EQ(u32, 0xdeadbeefu);
    REQUIRE(r.u32(u32));
    CHECK_EQ(u32, 0xffffffffu);
    REQUIRE(r.u64(u64));
    CHECK_EQ(u64, uint64_t(0));
    REQUIRE(r.u64(u64));
    CHECK_EQ(u64, uint64_t(0x0123456789abcdefull));
    REQUIRE(r.u64(u64));
    CHECK_EQ(u64, ~uint64_t(0));
    REQUIRE(r.str(s));
    CHECK_EQ(span_str(s), std::string("hello"));
    CHECK(!s.is_null);
    CHECK(inside(s, b)); /* points into the message, no copy */
    REQUIRE(r.str(s));
    CHECK_EQ(s.len, 0u);
    CHECK(!s.is_null);
    REQUIRE(r.str(s));
    CHECK_EQ(s.len, 0u);
    CHECK(!s.is_null);
    REQUIRE(r.str(s));
    CHECK_EQ(span_str(s), std::string("a\0b", 3));
    REQUIRE(r.blob(s));
    CHECK_EQ(span_str(s), std::string("blob"));
    CHECK(!s.is_null);
    CHECK(inside(s, b));
    REQUIRE(r.blob(s));
    CHECK_EQ(span_str(s), std::string("\xff\xff\xff\xff"));
    CHECK(!s.is_null);
    CHECK(!r.at_end());
    REQUIRE(r.blob(s));
    CHECK_EQ(s.len, 0u);
    CHECK(!s.is_null);
    CHECK(!r.at_end());
    REQUIRE(r.blob(s));
    CHECK(s.is_null);
    CHECK(s.data == nullptr);
    CHECK_EQ(s.len, 0u);
    CHECK(r.at_end());

    /* nothing more can be read at the end */
    CHECK(!r.u8(u8));
    CHECK(!r.u16(u16));
    CHECK(!r.u32(u32));
    CHECK(!r.u64(u64));
    CHECK(!r.str(s));
    CHECK(!r.blob(s));
    CHECK(r.at_end());
}

TEST(integers_are_host_order_and_sized)
{
    std::string b;
    Writer<std::string> w(b);
    w.u16(0x1234);
    w.u32(0x89abcdefu);
    w.u64(0x0102030405060708ull);
    w.str("xy");
    REQUIRE(b.size() == 2 + 4 + 8 + 4 + 2);
    uint16_t a;
    uint32_t c;
    uint64_t d;
    uint32_t len;
    memcpy(&a, b.data(), 2);
    memcpy(&c, b.data() + 2, 4);
    memcpy(&d, b.data() + 6, 8);
    memcpy(&len, b.data() + 14, 4);
    CHECK_EQ(a, 0x1234);
    CHECK_EQ(c, 0x89abcdefu);
    CHECK_EQ(d, uint64_t(0x0102030405060708ull));
    CHECK_EQ(len, 2u);
    CHECK_EQ(b.substr(18), std::string("xy"));
}

TEST(writer_accepts_any_appendable_buffer)
{
    ByteVec v;
    Writer<ByteVec> w(v);
    w.u8(kRow);
    w.str("abc");
    w.null_blob();
    REQUIRE(v.v.size() == 1 + 4 + 3 + 4);
    Reader r(v.v.data(), v.v.size());
    uint8_t k;
    Span s;
    CHECK(r.u8(k) && k == uint8_t(kRow));
    CHECK(r.str(s) && span_str(s) == "abc");
    CHECK(r.blob(s) && s.is_null);
    CHECK(r.at_end());
}

TEST(empty_reader)
{
    Reader r(nullptr, 0);
    CHECK(r.at_end());
    uint8_t u8;
    Span s;
    CHECK(!r.u8(u8));
    CHECK(!r.str(s));
    CHECK(!r.blob(s));
    CHECK(r.at_end());
}

TEST(null_blob_and_empty_blob_differ)
{
    std::string null_b, empty_b;
    Writer<std::string> wn(null_b), we(empty_b);
    wn.null_blob();
    we.blob("", 0);
    CHECK(null_b != empty_b);
    CHECK_EQ(null_b.size(), 4u);
    CHECK_EQ(empty_b.size(), 4u);
    uint32_t marker;
    memcpy(&marker, null_b.data(), 4);
    CHECK_EQ(marker, kNullLength);

    Span s;
    s.is_null = true; /* the reader must set it, not leave it */
    Reader re(empty_b.data(), empty_b.size());
    REQUIRE(re.blob(s));
    CHECK(!s.is_null);
    CHECK_EQ(s.len, 0u);
    CHECK(re.at_end());

    s = Span{"junk", 4, false};
    Reader rn(null_b.data(), null_b.size());
    REQUIRE(rn.blob(s));
    CHECK(s.is_null);
    CHECK(s.data == nullptr);
    CHECK_EQ(s.len, 0u);
    CHECK(rn.at_end());
}

TEST(str_rejects_null_marker)
{
    std::string b;
    Writer<std::string> w(b);
    w.null_blob();
    Reader r(b.data(), b.size());
    Span s{"untouched", 9, false};
    CHECK(!r.str(s));
    CHECK_EQ(span_str(s), std::string("untouched"));

    /* ... even when enough bytes follow for a length of 0xffffffff to look
     * plausible to a careless reader, and as the first of several fields */
    std::string b2;
    Writer<std::string> w2(b2);
    w2.null_blob();
    w2.str("after");
    Reader r2(b2.data(), b2.size());
    CHECK(!r2.str(s));

    /* whereas blob reads the same bytes as NULL */
    Reader r3(b2.data(), b2.size());
    CHECK(r3.blob(s) && s.is_null);
    CHECK(r3.str(s) && span_str(s) == "after");
    CHECK(r3.at_end());
}

TEST(str_rejects_null_marker_even_when_that_many_bytes_follow)
{
    /* In a message shorter than 4 GiB a length of 0xffffffff is too long
     * anyway; only a longer one shows that the marker itself is refused.
     * Reserve 4 GiB + a page of address space (inaccessible, costs no
     * memory) and make just the first page readable: the reader looks at the
     * length only and never touches the bytes it would span. */
    const size_t page = size_t(sysconf(_SC_PAGESIZE));
    const size_t total = size_t(1) << 32 | page;
    void *p = mmap(nullptr, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        std::printf("  note: cannot reserve 4 GiB of address space; skipped\n");
        return;
    }
    char *base = static_cast<char *>(p);
    if (mprotect(base, page, PROT_READ | PROT_WRITE) == 0) {
        memcpy(base, &kNullLength, 4);
        const char *untouched = "untouched";
        Span s{untouched, 9, false};
        Reader r(base, total);
        CHECK(!r.str(s));
        CHECK(s.data == untouched); /* no span_str(): s may span the reservation */
        CHECK_EQ(s.len, 9u);
        Reader rb(base, total);
        CHECK(rb.blob(s) && s.is_null); /* the same bytes are a NULL blob */
    } else
        CHECK(!"mprotect failed");
    munmap(p, total);
}

TEST(oversized_lengths_are_rejected)
{
    for (uint32_t len : {1u, 5u, 0x7fffffffu, 0xfffffffeu}) {
        std::string b;
        Writer<std::string> w(b);
        w.u32(len);
        w.raw("abcd", 4); /* 4 bytes follow; len > 4 is too long, len 1 is fine */
        Reader rs(b.data(), b.size()), rb(b.data(), b.size());
        Span s;
        bool fits = len <= 4;
        CHECK_EQ(rs.str(s), fits);
        CHECK_EQ(rb.blob(s), fits);
    }
}

TEST(request_round_trip)
{
    std::string msg = make_request();
    Request q;
    REQUIRE(read_request(msg.data(), msg.size(), q));
    CHECK_EQ(q.flags, 5u);
    CHECK_EQ(q.connect_ms, 10000u);
    CHECK_EQ(q.query_ms, 0u);
    CHECK_EQ(q.function, std::string("public.f(int)"));
    CHECK_EQ(q.query, std::string("SELECT $1::int, $2"));
    REQUIRE(q.targets.size() == 2);
    CHECK_EQ(q.targets[0].partition, 0u);
    CHECK_EQ(q.targets[0].connstr, std::string("host=a dbname=x"));
    CHECK_EQ(q.targets[0].encoding, std::string("UTF8"));
    REQUIRE(q.targets[0].params.size() == 2);
    CHECK(!q.targets[0].params[0].is_null);
    CHECK_EQ(q.targets[0].params[0].value, std::string("42"));
    CHECK(q.targets[0].params[1].is_null);
    CHECK_EQ(q.targets[1].partition, 7u);
    CHECK_EQ(q.targets[1].connstr, std::string(""));
    CHECK_EQ(q.targets[1].encoding, std::string("LATIN1"));
    REQUIRE(q.targets[1].params.size() == 2);
    CHECK(!q.targets[1].params[0].is_null);
    CHECK_EQ(q.targets[1].params[0].value, std::string(""));
    CHECK_EQ(q.targets[1].params[1].value, std::string("x\0y", 3));

    /* trailing garbage is noticed by at_end() */
    Request q2;
    CHECK(!read_request((msg + "!").data(), msg.size() + 1, q2));
}

TEST(every_truncated_request_is_rejected)
{
    GuardedBuffer guard;
    REQUIRE(guard.ok());
    std::string msg = make_request();
    REQUIRE(msg.size() <= guard.max());
    bool whole_ok = false;
    size_t wrong = accepted_prefixes(
        msg, [](const char *p, size_t n) { Request q; return read_request(p, n, q); }, guard, whole_ok);
    CHECK(whole_ok);
    CHECK_EQ(wrong, 0u);
}

TEST(every_truncated_response_is_rejected)
{
    GuardedBuffer guard;
    REQUIRE(guard.ok());
    std::vector<std::string> msgs = make_responses();
    REQUIRE(msgs.size() == 5);
    for (const std::string &msg : msgs) {
        REQUIRE(msg.size() <= guard.max());
        bool whole_ok = false;
        size_t wrong = accepted_prefixes(msg, read_response, guard, whole_ok);
        CHECK(whole_ok);
        CHECK_EQ(wrong, 0u);
    }
}

TEST(truncated_primitives_are_rejected)
{
    /* each primitive on its own, cut at every length */
    GuardedBuffer guard;
    REQUIRE(guard.ok());
    auto one = [](auto fill) {
        std::string b;
        Writer<std::string> w(b);
        fill(w);
        return b;
    };
    struct Case {
        std::string msg;
        bool (*read)(const char *, size_t);
    };
    const Case cases[] = {
        {one([](Writer<std::string> &w) { w.u8(1); }),
         [](const char *p, size_t n) { Reader r(p, n); uint8_t v; return r.u8(v); }},
        {one([](Writer<std::string> &w) { w.u16(1); }),
         [](const char *p, size_t n) { Reader r(p, n); uint16_t v; return r.u16(v); }},
        {one([](Writer<std::string> &w) { w.u32(1); }),
         [](const char *p, size_t n) { Reader r(p, n); uint32_t v; return r.u32(v); }},
        {one([](Writer<std::string> &w) { w.u64(1); }),
         [](const char *p, size_t n) { Reader r(p, n); uint64_t v; return r.u64(v); }},
        {one([](Writer<std::string> &w) { w.str("abcdef"); }),
         [](const char *p, size_t n) { Reader r(p, n); Span s; return r.str(s); }},
        {one([](Writer<std::string> &w) { w.blob("abcdef", 6); }),
         [](const char *p, size_t n) { Reader r(p, n); Span s; return r.blob(s); }},
        {one([](Writer<std::string> &w) { w.null_blob(); }),
         [](const char *p, size_t n) { Reader r(p, n); Span s; return r.blob(s); }},
    };
    for (const Case &c : cases) {
        bool whole_ok = false;
        CHECK_EQ(accepted_prefixes(c.msg, c.read, guard, whole_ok), 0u);
        CHECK(whole_ok);
    }
}

TEST(error_fields_round_trip)
{
    std::string b;
    Writer<std::string> w(b);
    w.u8(kError);
    w.u16(3);
    write_fields(w, "42P01", 5, "ERROR", "relation \"t\" does not exist", "the detail", nullptr,
                 "SQL statement \"SELECT 1\"");
    Reader r(b.data(), b.size());
    uint8_t kind;
    uint16_t target;
    REQUIRE(r.u8(kind) && r.u16(target));
    CHECK_EQ(int(kind), int(kError));
    CHECK_EQ(target, 3);
    ErrorFields f;
    REQUIRE(read_error_fields(r, f));
    CHECK_EQ(std::string(f.sqlstate), std::string("42P01")); /* NUL-terminated */
    CHECK_EQ(int(f.sqlstate[5]), 0);
    CHECK_EQ(span_str(f.severity), std::string("ERROR"));
    CHECK_EQ(span_str(f.message), std::string("relation \"t\" does not exist"));
    CHECK_EQ(span_str(f.detail), std::string("the detail"));
    CHECK_EQ(f.hint.len, 0u);
    CHECK(!f.hint.is_null);
    CHECK_EQ(span_str(f.context), std::string("SQL statement \"SELECT 1\""));
    CHECK(inside(f.message, b));
    CHECK(r.at_end());
}

TEST(short_sqlstate_is_rejected)
{
    /* fewer than five bytes in all */
    for (size_t n = 0; n < 5; n++) {
        Reader r("42P01", n);
        ErrorFields f;
        CHECK(!read_error_fields(r, f));
    }
    /* a writer that sent a 3-byte sqlstate followed by the fields: the
     * reader takes two length bytes as sqlstate and the misaligned length
     * that follows is absurd, so the message is rejected */
    for (size_t n = 0; n < 5; n++) {
        std::string b;
        Writer<std::string> w(b);
        write_fields(w, "42P01", n, "ERROR", "msg", "detail", "hint", "context");
        Reader r(b.data(), b.size());
        ErrorFields f;
        bool ok = read_error_fields(r, f) && r.at_end();
        CHECK(!ok);
    }
    /* fields missing after a good sqlstate */
    Reader r("42P01", 5);
    ErrorFields f;
    CHECK(!read_error_fields(r, f));
}
