/*
 * Unit tests for the slot protocol (shared/slot_protocol.hpp) and the wire
 * primitives under it (shared/wire_codec.hpp): the real encoders and
 * decoders that backends and workers use.
 *
 * The truncation tests copy each prefix of a valid message into a buffer of
 * exactly that size (heap, so AddressSanitizer sees any read past it) and
 * also place it against an inaccessible guard page (so an overread faults
 * even without a sanitizer).
 */
#include "shared/slot_protocol.hpp"
#include "unit_test.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

using namespace bgw::wire;
using namespace bgw::proto;

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

Span sp(const char *s) { return Span{s, uint32_t(strlen(s)), false}; }
Span sp(const char *s, size_t n) { return Span{s, uint32_t(n), false}; }
const Span kNull{nullptr, 0, true};

/* ---- complete messages, made by the real encoders --------------------- */

std::string make_request()
{
    static const Span params0[] = {sp("42"), kNull};
    static const Span params1[] = {sp(""), sp("x\0y", 3)};
    static const RequestColumn columns[] = {{sp("a"), 23}, {sp("b"), 25}};
    RequestTarget targets[2];
    targets[0].partition = 0;
    targets[0].connstr = sp("host=a dbname=x");
    targets[0].user = sp("alice");
    targets[0].password = sp("secret");
    targets[0].require_password = true;
    targets[0].encoding = sp("UTF8");
    targets[0].nparams = 2;
    targets[0].params = params0;
    targets[1].partition = 7;
    targets[1].connstr = sp("");
    targets[1].encoding = sp("LATIN1");
    targets[1].nparams = 2;
    targets[1].params = params1;
    Request q;
    q.flags = kFlagPrepare | kFlagNoBinary;
    q.connect_timeout_ms = 10000;
    q.query_timeout_ms = 0;
    q.max_connections = 4;
    q.connection_lifetime_s = 3600;
    q.pool_wait_timeout_ms = 30000;
    q.function = sp("public.f(int)");
    q.cluster = sp("userdb");
    q.config_version = -1;
    q.query = sp("SELECT $1::int, $2");
    q.ncolumns = 2;
    q.columns = columns;
    q.ntargets = 2;
    q.targets = targets;
    std::string b;
    encode_request(b, q);
    return b;
}

bool read_request(const void *data, size_t len)
{
    Request q;
    RequestStorage st;
    return decode_request(data, len, q, st);
}

ErrorFields fields(const char *sqlstate, const char *severity, const char *message, const char *detail,
                   const char *hint, const char *context)
{
    ErrorFields f;
    memcpy(f.sqlstate, sqlstate, 5);
    f.severity = sp(severity);
    f.message = sp(message);
    f.detail = sp(detail);
    f.hint = sp(hint);
    f.context = sp(context);
    return f;
}

std::string make_rows(uint16_t target, const std::vector<std::vector<Span>> &rows)
{
    std::string b;
    uint16_t n = uint16_t(rows.empty() ? 0 : rows[0].size());
    begin_rows(b, target, n);
    for (const auto &r : rows)
        append_row(b, n, r.data());
    set_row_count(&b[0], uint32_t(rows.size()));
    return b;
}

/* The responses of one call, each a separate message. */
std::vector<std::string> make_responses()
{
    std::vector<std::string> msgs;
    std::string b;
    const Column cols[] = {{sp("id"), 23, 1}, {sp("name"), 25, 0}, {sp(""), 17, 1}};
    encode_describe(b, 1, 3, cols);
    msgs.push_back(b);
    msgs.push_back(make_rows(1, {{sp("17"), kNull, sp("")}, {sp("18"), sp("x"), kNull}}));
    b.clear();
    encode_error(b, Kind::Notice, 0, fields("01000", "NOTICE", "hello", "", "", "PL/pgSQL function g()"));
    msgs.push_back(b);
    b.clear();
    encode_error(b, Kind::Error, 65535,
                 fields("42P01", "ERROR", "relation \"t\" does not exist", "some detail", "a hint", ""));
    msgs.push_back(b);
    b.clear();
    encode_target_done(b, 1, 123456789012345ull);
    msgs.push_back(b);
    b.clear();
    encode_call_done(b);
    msgs.push_back(b);
    return msgs;
}

bool read_response(const void *data, size_t len, bool in_batch = false);

/* Reads every message of a batch. */
bool read_batch(Reader &r)
{
    uint32_t count;
    if (!decode_batch_count(r, count))
        return false;
    for (uint32_t i = 0; i < count; i++) {
        Span m;
        if (!decode_batch_message(r, m) || !read_response(m.data, m.len, true))
            return false;
    }
    return r.at_end();
}

/* Reads one whole response message the way the backend does (call.cpp). */
bool read_response(const void *data, size_t len, bool in_batch)
{
    Reader r(data, len);
    Kind kind;
    uint16_t target;
    if (!decode_head(r, kind, target))
        return false;
    switch (kind) {
    case Kind::CallDone:
        return true;
    case Kind::Batch:
        return !in_batch && read_batch(r);
    case Kind::Describe: {
        uint16_t n;
        if (!decode_describe_count(r, n))
            return false;
        std::vector<Column> cols(n);
        return decode_describe(r, n, cols.data());
    }
    case Kind::Rows: {
        uint16_t n;
        uint32_t nrows;
        if (!decode_rows_head(r, n, nrows))
            return false;
        std::vector<Span> f(n);
        for (uint32_t i = 0; i < nrows; i++)
            if (!decode_row(r, n, f.data()))
                return false;
        return r.at_end();
    }
    case Kind::Error:
    case Kind::Notice: {
        ErrorFields f;
        return decode_error(r, f);
    }
    case Kind::TargetDone: {
        uint64_t rows;
        return decode_target_done(r, rows);
    }
    }
    return false;
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
    w.u8(uint8_t(Kind::Rows));
    w.str("abc");
    w.null_blob();
    REQUIRE(v.v.size() == 1 + 4 + 3 + 4);
    Reader r(v.v.data(), v.v.size());
    uint8_t k;
    Span s;
    CHECK(r.u8(k) && k == uint8_t(Kind::Rows));
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
    RequestStorage st;
    REQUIRE(decode_request(msg.data(), msg.size(), q, st));
    CHECK_EQ(q.flags, kFlagPrepare | kFlagNoBinary);
    CHECK_EQ(q.connect_timeout_ms, 10000u);
    CHECK_EQ(q.query_timeout_ms, 0u);
    CHECK_EQ(q.max_connections, 4u);
    CHECK_EQ(q.connection_lifetime_s, 3600u);
    CHECK_EQ(q.pool_wait_timeout_ms, 30000u);
    CHECK_EQ(span_str(q.function), std::string("public.f(int)"));
    CHECK_EQ(span_str(q.cluster), std::string("userdb"));
    CHECK_EQ(q.config_version, int64_t(-1));
    CHECK_EQ(span_str(q.query), std::string("SELECT $1::int, $2"));
    REQUIRE(q.ncolumns == 2);
    CHECK_EQ(span_str(q.columns[0].name), std::string("a"));
    CHECK_EQ(q.columns[0].type, 23u);
    CHECK_EQ(span_str(q.columns[1].name), std::string("b"));
    CHECK_EQ(q.columns[1].type, 25u);
    REQUIRE(q.ntargets == 2);
    const RequestTarget &t0 = q.targets[0], &t1 = q.targets[1];
    CHECK_EQ(t0.partition, 0u);
    CHECK_EQ(span_str(t0.connstr), std::string("host=a dbname=x"));
    CHECK_EQ(span_str(t0.user), std::string("alice"));
    CHECK_EQ(span_str(t0.password), std::string("secret"));
    CHECK(t0.require_password);
    CHECK_EQ(span_str(t0.encoding), std::string("UTF8"));
    REQUIRE(t0.nparams == 2);
    CHECK(!t0.params[0].is_null);
    CHECK_EQ(span_str(t0.params[0]), std::string("42"));
    CHECK(t0.params[1].is_null);
    CHECK_EQ(t1.partition, 7u);
    CHECK_EQ(span_str(t1.connstr), std::string(""));
    CHECK_EQ(span_str(t1.user), std::string(""));
    CHECK(!t1.require_password);
    CHECK_EQ(span_str(t1.encoding), std::string("LATIN1"));
    REQUIRE(t1.nparams == 2);
    CHECK(!t1.params[0].is_null);
    CHECK_EQ(span_str(t1.params[0]), std::string(""));
    CHECK_EQ(span_str(t1.params[1]), std::string("x\0y", 3));
    CHECK(inside(t1.params[1], msg));

    /* a config version survives the u64 round trip with its sign */
    std::string m2 = msg;
    int64_t v = 123;
    /* after the header (7 u32; read_from u8, max_replica_lag u64, 3 health-check u32),
     * function and cluster */
    size_t at = 7 * 4 + 1 + 8 + 3 * 4 + 4 + 13 + 4 + 6;
    memcpy(&m2[at], &v, sizeof v);
    REQUIRE(decode_request(m2.data(), m2.size(), q, st));
    CHECK_EQ(q.config_version, int64_t(123));
}

TEST(corrupt_requests_are_rejected)
{
    std::string msg = make_request();
    /* trailing garbage */
    CHECK(!read_request((msg + "!").data(), msg.size() + 1));
    /* another magic (an older protocol) */
    std::string m = msg;
    m[0] ^= 1;
    CHECK(!read_request(m.data(), m.size()));
    /* no target, or more than a u16 can name */
    for (uint32_t n : {0u, kMaxTargets + 1}) {
        Request q;
        q.ntargets = n;
        q.function = q.cluster = q.query = sp("");
        std::string b;
        Writer<std::string> w(b);
        w.u32(kRequestMagic);
        for (int i = 0; i < 6; i++)
            w.u32(0);
        w.str("f");
        w.str("");
        w.u64(0);
        w.str("q");
        w.u16(0);
        w.u32(n);
        CHECK(!read_request(b.data(), b.size()));
    }
}

TEST(every_truncated_request_is_rejected)
{
    GuardedBuffer guard;
    REQUIRE(guard.ok());
    std::string msg = make_request();
    REQUIRE(msg.size() <= guard.max());
    bool whole_ok = false;
    size_t wrong = accepted_prefixes(
        msg, [](const char *p, size_t n) { return read_request(p, n); }, guard, whole_ok);
    CHECK(whole_ok);
    CHECK_EQ(wrong, 0u);
}

TEST(every_truncated_response_is_rejected)
{
    GuardedBuffer guard;
    REQUIRE(guard.ok());
    std::vector<std::string> msgs = make_responses();
    REQUIRE(msgs.size() == 6);
    for (const std::string &msg : msgs) {
        REQUIRE(msg.size() <= guard.max());
        bool whole_ok = false;
        size_t wrong = accepted_prefixes(msg, [](const char *p, size_t n) { return read_response(p, n); }, guard, whole_ok);
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
    encode_error(b, Kind::Error, 3,
                 fields("42P01", "ERROR", "relation \"t\" does not exist", "the detail", "", "SQL statement \"SELECT 1\""));
    Reader r(b.data(), b.size());
    Kind kind;
    uint16_t target;
    REQUIRE(decode_head(r, kind, target));
    CHECK_EQ(int(kind), int(Kind::Error));
    CHECK_EQ(target, 3);
    ErrorFields f;
    REQUIRE(decode_error(r, f));
    CHECK_EQ(std::string(f.sqlstate), std::string("42P01")); /* NUL-terminated */
    CHECK_EQ(int(f.sqlstate[5]), 0);
    CHECK_EQ(span_str(f.severity), std::string("ERROR"));
    CHECK_EQ(span_str(f.message), std::string("relation \"t\" does not exist"));
    CHECK_EQ(span_str(f.detail), std::string("the detail"));
    CHECK_EQ(f.hint.len, 0u);
    CHECK(!f.hint.is_null);
    CHECK_EQ(span_str(f.context), std::string("SQL statement \"SELECT 1\""));
    CHECK(inside(f.message, b));
}

TEST(short_sqlstate_is_rejected)
{
    /* fewer than five bytes in all */
    for (size_t n = 0; n < 5; n++) {
        Reader r("42P01", n);
        ErrorFields f;
        CHECK(!decode_error(r, f));
    }
    /* a writer that sent a 3-byte sqlstate followed by the fields: the
     * reader takes two length bytes as sqlstate and the misaligned length
     * that follows is absurd, so the message is rejected */
    for (size_t n = 0; n < 5; n++) {
        std::string b;
        Writer<std::string> w(b);
        w.raw("42P01", n);
        for (const char *s : {"ERROR", "msg", "detail", "hint", "context"})
            w.str(s);
        Reader r(b.data(), b.size());
        ErrorFields f;
        CHECK(!decode_error(r, f));
    }
}

TEST(rows_round_trip_in_one_message)
{
    std::string b = make_rows(2, {{sp("1"), kNull}, {sp(""), sp("a\0b", 3)}, {kNull, kNull}});
    Reader r(b.data(), b.size());
    Kind kind;
    uint16_t target, n;
    uint32_t nrows;
    REQUIRE(decode_head(r, kind, target) && kind == Kind::Rows && target == 2);
    REQUIRE(decode_rows_head(r, n, nrows));
    CHECK_EQ(n, 2);
    CHECK_EQ(nrows, 3u);
    Span f[2];
    REQUIRE(decode_row(r, n, f));
    CHECK_EQ(span_str(f[0]), std::string("1"));
    CHECK(f[1].is_null);
    REQUIRE(decode_row(r, n, f));
    CHECK(!f[0].is_null);
    CHECK_EQ(f[0].len, 0u);
    CHECK_EQ(span_str(f[1]), std::string("a\0b", 3));
    REQUIRE(decode_row(r, n, f));
    CHECK(f[0].is_null && f[1].is_null);
    CHECK(r.at_end());
}

TEST(corrupt_responses_are_rejected)
{
    std::vector<std::string> msgs = make_responses();
    /* an unknown kind */
    std::string m = msgs[0];
    m[0] = 'X';
    CHECK(!read_response(m.data(), m.size()));
    /* bytes left over after any message */
    for (const std::string &msg : msgs) {
        std::string longer = msg + '\0';
        CHECK(!read_response(longer.data(), longer.size()));
    }
    /* a row count larger than the rows sent, or smaller */
    std::string rows = make_rows(0, {{sp("a")}, {sp("b")}});
    set_row_count(&rows[0], 3);
    CHECK(!read_response(rows.data(), rows.size()));
    set_row_count(&rows[0], 1);
    CHECK(!read_response(rows.data(), rows.size()));
    set_row_count(&rows[0], 2);
    CHECK(read_response(rows.data(), rows.size()));
    /* every single-byte corruption of every message decodes or is refused,
     * never read past its end (ASan and the guard page watch) */
    GuardedBuffer guard;
    REQUIRE(guard.ok());
    size_t decoded = 0, refused = 0;
    for (const std::string &msg : msgs)
        for (size_t i = 0; i < msg.size(); i++)
            for (int bit = 0; bit < 8; bit++) {
                std::string c = msg;
                c[i] = char(c[i] ^ (1 << bit));
                const char *at = guard.place(c.data(), c.size());
                (read_response(at, c.size()) ? decoded : refused)++;
            }
    CHECK(refused > 0);
    CHECK(decoded > 0); /* flipping a payload byte leaves a valid message */
    std::string req = make_request();
    for (size_t i = 0; i < req.size(); i++) {
        std::string c = req;
        c[i] = char(~c[i]);
        (void) read_request(guard.place(c.data(), c.size()), c.size());
    }
}

/* What a worker has ready at once travels as one batch message. */
std::string make_batch(const std::vector<std::string> &msgs)
{
    std::string b;
    begin_batch(b, uint32_t(msgs.size()));
    for (const std::string &m : msgs)
        append_to_batch(b, m.data(), m.size());
    return b;
}

TEST(batch_round_trip)
{
    std::vector<std::string> msgs = make_responses();
    std::string b = make_batch(msgs);
    Reader r(b.data(), b.size());
    Kind kind;
    uint16_t target;
    REQUIRE(decode_head(r, kind, target) && kind == Kind::Batch);
    uint32_t count;
    REQUIRE(decode_batch_count(r, count));
    CHECK_EQ(size_t(count), msgs.size());
    for (size_t i = 0; i < msgs.size(); i++) {
        Span m;
        REQUIRE(decode_batch_message(r, m));
        CHECK_EQ(span_str(m), msgs[i]);
        CHECK(inside(m, b));
    }
    CHECK(r.at_end());
    CHECK(read_response(b.data(), b.size()));
}

TEST(corrupt_batches_are_rejected)
{
    std::vector<std::string> msgs = make_responses();
    /* a batch inside a batch, an empty message, an empty batch */
    std::string inner = make_batch({msgs[0]});
    CHECK(!read_response(make_batch({msgs[1], inner}).data(), make_batch({msgs[1], inner}).size()));
    std::string empty_msg = make_batch({msgs[0], std::string()});
    CHECK(!read_response(empty_msg.data(), empty_msg.size()));
    std::string empty = make_batch({});
    CHECK(!read_response(empty.data(), empty.size()));
    /* a corrupt message inside is refused like one on its own */
    std::string rows = make_rows(0, {{sp("a")}, {sp("b")}});
    set_row_count(&rows[0], 3);
    std::string bad = make_batch({msgs[0], rows});
    CHECK(!read_response(bad.data(), bad.size()));
    /* every truncation of a batch is refused */
    GuardedBuffer guard;
    REQUIRE(guard.ok());
    std::string whole = make_batch(msgs);
    REQUIRE(whole.size() <= guard.max());
    bool whole_ok = false;
    CHECK_EQ(accepted_prefixes(whole, [](const char *p, size_t n) { return read_response(p, n); }, guard, whole_ok),
             0u);
    CHECK(whole_ok);
}
