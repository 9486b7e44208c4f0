/*
 * Unit tests for what a backend's direct call is made of: the protocol
 * messages it sends and reads (common/pg_wire.hpp) and the pool key it
 * looks for (common/pool_key.hpp, shared with the worker).
 */
#include "common/pg_wire.hpp"
#include "common/pool_key.hpp"
#include "unit_test.hpp"

#include <cstdint>
#include <string>
#include <vector>

using namespace bgw;
using namespace bgw::pgwire;

namespace {

struct Buf {
    std::string s;
    void append(const char *p, size_t n) { s.append(p, n); }
};

std::string be32(uint32_t v)
{
    char b[4];
    put_u32(b, v);
    return std::string(b, 4);
}
std::string be16(uint16_t v) { return std::string{char(v >> 8), char(v)}; }
std::string msg(char type, const std::string &body) { return std::string(1, type) + be32(uint32_t(body.size() + 4)) + body; }

/* every message of a byte string, in order */
std::vector<Message> split(const std::string &bytes)
{
    std::vector<Message> out;
    size_t off = 0, used = 0;
    Message m;
    while (next_message(bytes.data() + off, bytes.size() - off, m, used) == 1) {
        out.push_back(m);
        off += used;
    }
    return out;
}

} // namespace

TEST(extended_query_sends_parse_bind_describe_execute_sync)
{
    Buf b;
    const char *values[2] = {"abc", nullptr};
    int lengths[2] = {3, 0};
    MessageWriter<Buf>(b).extended_query("SELECT $1, $2", 2, values, lengths, 1);
    std::vector<Message> m = split(b.s);
    REQUIRE(m.size() == 5);
    CHECK_EQ(std::string(1, m[0].type) + m[1].type + m[2].type + m[3].type + m[4].type, std::string("PBDES"));
    CHECK_EQ(std::string(m[0].body, m[0].len), std::string("\0SELECT $1, $2\0", 15) + be16(0));
    CHECK_EQ(std::string(m[1].body, m[1].len), std::string("\0\0", 2) + be16(0) + be16(2) + be32(3) + "abc" +
                                                   be32(0xffffffffu) + be16(1) + be16(1));
    CHECK_EQ(std::string(m[2].body, m[2].len), std::string("P\0", 2));
    CHECK_EQ(std::string(m[3].body, m[3].len), std::string("\0", 1) + be32(0));
    CHECK_EQ(m[4].len, 0);
    size_t total = 0;
    for (const Message &x : m)
        total += x.len + 5;
    CHECK_EQ(total, b.s.size());
}

TEST(next_message_waits_for_the_whole_message_and_rejects_bad_lengths)
{
    std::string z = msg('Z', "I");
    Message m;
    size_t used = 0;
    for (size_t n = 0; n < z.size(); n++)
        CHECK_EQ(next_message(z.data(), n, m, used), 0);
    CHECK_EQ(next_message(z.data(), z.size(), m, used), 1);
    CHECK_EQ(used, z.size());
    CHECK_EQ(m.type, 'Z');
    CHECK_EQ(std::string(m.body, m.len), std::string("I"));
    std::string bad = std::string("Z") + be32(3);
    CHECK_EQ(next_message(bad.data(), bad.size(), m, used), -1);
    std::string huge = std::string("D") + be32(0x7fffffffu);
    CHECK_EQ(next_message(huge.data(), huge.size(), m, used), -1);
}

TEST(row_description_gives_names_types_and_formats)
{
    std::string col = std::string("id\0", 3) + be32(16384) + be16(1) + be32(20) + be16(8) + be32(0xffffffffu) + be16(1);
    std::string col2 = std::string("name\0", 5) + be32(0) + be16(0) + be32(25) + be16(0xffff) + be32(0xffffffffu) +
                       be16(0);
    std::string body = be16(2) + col + col2;
    Message m{'T', body.data(), uint32_t(body.size())};
    RowDescription rd(m);
    uint16_t n = 0;
    REQUIRE(rd.count(n));
    CHECK_EQ(n, 2);
    const char *name;
    uint32_t type;
    int format;
    REQUIRE(rd.column(name, type, format));
    CHECK_EQ(std::string(name), std::string("id"));
    CHECK_EQ(type, 20);
    CHECK_EQ(format, 1);
    REQUIRE(rd.column(name, type, format));
    CHECK_EQ(std::string(name), std::string("name"));
    CHECK_EQ(type, 25);
    CHECK_EQ(format, 0);
    CHECK(rd.at_end());
    /* every truncation is refused, never read past */
    for (size_t cut = 0; cut < body.size(); cut++) {
        std::vector<char> part(body.begin(), body.begin() + long(cut));
        Message p{'T', part.data(), uint32_t(cut)};
        RowDescription r(p);
        bool ok = r.count(n);
        for (int i = 0; ok && i < n; i++)
            ok = r.column(name, type, format);
        CHECK(!ok || !r.at_end() || cut == body.size());
    }
}

TEST(data_row_gives_values_and_nulls)
{
    std::string body = be16(3) + be32(2) + "42" + be32(0xffffffffu) + be32(0);
    Message m{'D', body.data(), uint32_t(body.size())};
    DataRow row(m);
    uint16_t n = 0;
    REQUIRE(row.count(n));
    CHECK_EQ(n, 3);
    const char *data;
    int32_t len;
    REQUIRE(row.field(data, len));
    CHECK_EQ(std::string(data, size_t(len)), std::string("42"));
    REQUIRE(row.field(data, len));
    CHECK_EQ(len, -1);
    REQUIRE(row.field(data, len));
    CHECK_EQ(len, 0);
    CHECK(row.at_end());

    std::string over = be16(1) + be32(5) + "ab";
    Message o{'D', over.data(), uint32_t(over.size())};
    DataRow r2(o);
    REQUIRE(r2.count(n));
    CHECK(!r2.field(data, len));
    std::string negative = be16(1) + be32(0xfffffffeu);
    Message g{'D', negative.data(), uint32_t(negative.size())};
    DataRow r3(g);
    REQUIRE(r3.count(n));
    CHECK(!r3.field(data, len));
}

TEST(error_fields_are_read_to_their_terminator)
{
    std::string body = std::string("SERROR\0C42P01\0Mno such table\0", 29) + std::string(1, '\0');
    Message m{'E', body.data(), uint32_t(body.size())};
    std::string seen;
    CHECK(each_field(m, [&](char code, const char *v) { seen += std::string(1, code) + "=" + v + ";"; }));
    CHECK_EQ(seen, std::string("S=ERROR;C=42P01;M=no such table;"));
    Message unterminated{'E', body.data(), uint32_t(body.size() - 1)};
    CHECK(!each_field(unterminated, [](char, const char *) {}));
    std::string cut = "Mabc";
    Message c{'E', cut.data(), uint32_t(cut.size())};
    CHECK(!each_field(c, [](char, const char *) {}));
}

TEST(pool_key_is_one_rule)
{
    Buf b;
    append_pool_key(b, "dbname=a", 8, "u", 1, "pw", 2, "UTF8", 16384, true);
    CHECK_EQ(b.s, std::string("dbname=a\x1fu\x1fpw\x1fUTF8\x1f" "16384\x1fp"));
    Buf z;
    append_pool_key(z, "x", 1, "", 0, "", 0, "SQL_ASCII", 0, false);
    CHECK_EQ(z.s, std::string("x\x1f\x1f\x1fSQL_ASCII\x1f" "0"));
    Buf big;
    append_pool_key(big, "x", 1, "", 0, "", 0, "E", 4294967295u, false);
    CHECK_EQ(big.s, std::string("x\x1f\x1f\x1f" "E\x1f" "4294967295"));
}

TEST(named_statement_closes_the_old_one_and_binds_by_name)
{
    Buf b;
    const char *values[1] = {"7"};
    int lengths[1] = {1};
    MessageWriter<Buf>(b).statement("bgwd_2", "bgwd_1", "SELECT $1", 1, values, lengths, 0);
    std::vector<Message> m = split(b.s);
    REQUIRE(m.size() == 6);
    CHECK_EQ(std::string(1, m[0].type) + m[1].type + m[2].type + m[3].type + m[4].type + m[5].type,
             std::string("CPBDES"));
    CHECK_EQ(std::string(m[0].body, m[0].len), std::string("Sbgwd_1\0", 8));
    CHECK_EQ(std::string(m[1].body, m[1].len), std::string("bgwd_2\0SELECT $1\0", 17) + be16(0));
    CHECK_EQ(std::string(m[2].body, m[2].len),
             std::string("\0bgwd_2\0", 8) + be16(0) + be16(1) + be32(1) + "7" + be16(1) + be16(0));

    /* prepared already: Bind by name, no Parse */
    Buf p;
    MessageWriter<Buf>(p).statement("bgwd_2", nullptr, nullptr, 1, values, lengths, 1);
    std::vector<Message> q = split(p.s);
    REQUIRE(q.size() == 4);
    CHECK_EQ(std::string(1, q[0].type) + q[1].type + q[2].type + q[3].type, std::string("BDES"));
    CHECK_EQ(std::string(q[0].body, q[0].len),
             std::string("\0bgwd_2\0", 8) + be16(0) + be16(1) + be32(1) + "7" + be16(1) + be16(1));
}
