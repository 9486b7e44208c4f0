/*
 * fuzz_pg_wire.cpp — libFuzzer target for the protocol reader a direct
 * call uses on what a remote server sends (common/pg_wire.hpp).
 *
 * The input is read as a stream of server messages, as the backend does
 * (backend/direct_call.cpp): every complete message is taken apart by the
 * reader of its kind (row description, data row, error or notice fields).
 * Whatever a reader accepts must lie inside the message: no pointer or
 * length it hands out may reach outside the input. The input's last bytes
 * also drive the writer: a statement built from them must split back into
 * exactly the messages it was made of.
 */
#include "common/pg_wire.hpp"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

using namespace bgw::pgwire;

namespace {

void require(bool cond)
{
    if (!cond)
        abort();
}

struct Buf {
    std::string s;
    void append(const char *p, size_t n) { s.append(p, n); }
};

void read_stream(const char *data, size_t size)
{
    const char *end = data + size;
    size_t off = 0, used = 0;
    Message m;
    int got;
    while ((got = next_message(data + off, size - off, m, used)) == 1) {
        require(used >= 5 && off + used <= size && m.body >= data && m.body + m.len <= end);
        off += used;
        if (m.type == 'T') {
            RowDescription rd(m);
            uint16_t n;
            if (!rd.count(n))
                continue;
            for (int i = 0; i < n; i++) {
                const char *name;
                uint32_t type;
                int format;
                if (!rd.column(name, type, format))
                    break;
                require(name >= m.body && name + strlen(name) < m.body + m.len);
            }
        } else if (m.type == 'D') {
            DataRow row(m);
            uint16_t n;
            if (!row.count(n))
                continue;
            for (int i = 0; i < n; i++) {
                const char *v;
                int32_t len;
                if (!row.field(v, len))
                    break;
                require(len >= -1);
                if (len >= 0)
                    require(v >= m.body && v + len <= m.body + m.len);
            }
        } else if (m.type == 'E' || m.type == 'N') {
            (void) each_field(m, [&](char, const char *v) { require(v >= m.body && v + strlen(v) < end); });
        }
    }
    require(got == 0 || got == -1);
}

void round_trip(const uint8_t *data, size_t size)
{
    if (size < 4)
        return;
    int n = data[0] % 4;
    bool named = data[1] & 1, parse = data[1] & 2, close = data[1] & 4;
    std::string text(reinterpret_cast<const char *>(data + 2), size - 2);
    std::string query = text.substr(0, text.find('\0'));
    std::vector<std::string> vals(size_t(n), text);
    std::vector<const char *> values(static_cast<size_t>(n), nullptr);
    std::vector<int> lengths(static_cast<size_t>(n), 0);
    for (int i = 0; i < n; i++) {
        values[size_t(i)] = (data[1] >> (3 + i)) & 1 ? nullptr : vals[size_t(i)].data();
        lengths[size_t(i)] = int(vals[size_t(i)].size());
    }
    Buf b;
    MessageWriter<Buf>(b).statement(named ? "bgwd_1" : "", close ? "bgwd_0" : nullptr,
                                    parse ? query.c_str() : nullptr, n, values.data(), lengths.data(), data[2] & 1);
    size_t off = 0, used = 0, count = 0;
    Message m;
    while (next_message(b.s.data() + off, b.s.size() - off, m, used) == 1) {
        off += used;
        count++;
    }
    require(off == b.s.size());
    require(count == 4 + (parse ? 1 : 0) + (close ? 1 : 0));
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    read_stream(reinterpret_cast<const char *>(data), size);
    round_trip(data, size);
    return 0;
}
