/*
 * pg_wire.hpp — the few messages of the PostgreSQL frontend/backend protocol
 * (version 3) a backend needs to run one statement on a borrowed pooled
 * connection itself (backend/direct_call.cpp): the extended-query messages
 * it sends, and a reader for what the server answers.
 *
 * Sent, in one write: Parse (unnamed statement), Bind (unnamed portal, text
 * parameters, one result format for every column), Describe (the portal),
 * Execute (every row), Sync. The server answers ParseComplete,
 * BindComplete, RowDescription or NoData, DataRow..., CommandComplete, and
 * ReadyForQuery; an ErrorResponse replaces what is left before
 * ReadyForQuery. NoticeResponse, ParameterStatus and NotificationResponse
 * may come at any time.
 *
 * The reader never allocates and never throws (backend code where a
 * PostgreSQL error may longjmp): it points into the caller's buffer and
 * returns false on anything malformed.
 *
 * Pure C++: no PostgreSQL header.
 */
#pragma once

#include "common/pure_cxx.h"

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace bgw::pgwire {

/* A message larger than this is treated as a protocol violation (libpq's
 * own limit for everything but rows is 30000; rows may be large). */
constexpr uint32_t kMaxMessage = 0x3fffffff;

inline void put_u32(char *p, uint32_t v)
{
    p[0] = char(v >> 24);
    p[1] = char(v >> 16);
    p[2] = char(v >> 8);
    p[3] = char(v);
}
inline uint32_t get_u32(const char *p)
{
    const auto *u = reinterpret_cast<const unsigned char *>(p);
    return uint32_t(u[0]) << 24 | uint32_t(u[1]) << 16 | uint32_t(u[2]) << 8 | uint32_t(u[3]);
}
inline uint16_t get_u16(const char *p)
{
    const auto *u = reinterpret_cast<const unsigned char *>(p);
    return uint16_t(uint16_t(u[0]) << 8 | u[1]);
}

/* Appends to any buffer with append(const char *, size_t). */
template <typename Buf>
class MessageWriter {
public:
    explicit MessageWriter(Buf &b) : buf_(b) {}
    /* Parse + Bind + Describe portal + Execute + Sync of `query` with
     * `n` parameters in text (values[i] null: SQL NULL), every result
     * column in `result_format` (0 text, 1 binary). */
    void extended_query(const char *query, int n, const char *const *values, const int *lengths,
                        int result_format)
    {
        statement("", nullptr, query, n, values, lengths, result_format);
    }

    /* The same on statement `name` ("" the unnamed one): first Close
     * `close` (a named statement to drop; null: none), then Parse `query`
     * as `name` (null: it is prepared already), Bind... Sync. */
    void statement(const char *name, const char *close, const char *query, int n, const char *const *values,
                   const int *lengths, int result_format)
    {
        size_t nlen = strlen(name);
        if (close) {
            size_t clen = strlen(close);
            begin('C', 1 + clen + 1);
            byte('S');
            raw(close, clen + 1);
        }
        if (query) {
            size_t qlen = strlen(query);
            begin('P', nlen + 1 + qlen + 1 + 2);
            raw(name, nlen + 1);
            raw(query, qlen + 1);
            u16(0);  /* no parameter types: the query's casts decide */
        }

        size_t bind = 1 + nlen + 1 + 2 + 2 + 2 + 2;
        for (int i = 0; i < n; i++)
            bind += 4 + (values[i] ? size_t(lengths[i]) : 0);
        begin('B', bind);
        byte(0); /* unnamed portal */
        raw(name, nlen + 1);
        u16(0);  /* every parameter in text */
        u16(uint16_t(n));
        for (int i = 0; i < n; i++) {
            if (!values[i]) {
                u32(0xffffffffu);
            } else {
                u32(uint32_t(lengths[i]));
                raw(values[i], size_t(lengths[i]));
            }
        }
        u16(1);
        u16(uint16_t(result_format));

        begin('D', 2);
        byte('P');
        byte(0);
        begin('E', 1 + 4);
        byte(0);
        u32(0); /* every row */
        begin('S', 0);
    }

private:
    void begin(char type, size_t body)
    {
        byte(uint8_t(type));
        u32(uint32_t(body + 4));
    }
    void byte(uint8_t v) { raw(&v, 1); }
    void u16(uint16_t v)
    {
        char b[2] = {char(v >> 8), char(v)};
        raw(b, 2);
    }
    void u32(uint32_t v)
    {
        char b[4];
        put_u32(b, v);
        raw(b, 4);
    }
    void raw(const void *p, size_t n) { buf_.append(static_cast<const char *>(p), n); }
    Buf &buf_;
};

/* One message in a buffer of received bytes. */
struct Message {
    char type = 0;
    const char *body = nullptr;
    uint32_t len = 0;          /* of the body */
};

/* The next complete message at buf[0, avail): its size in *used. 0: not
 * all of it is there yet; -1: malformed (a length that cannot be). */
inline int next_message(const char *buf, size_t avail, Message &m, size_t &used)
{
    if (avail < 5)
        return 0;
    uint32_t len = get_u32(buf + 1);
    if (len < 4 || len > kMaxMessage)
        return -1;
    if (avail < size_t(len) + 1)
        return 0;
    m.type = buf[0];
    m.body = buf + 5;
    m.len = len - 4;
    used = size_t(len) + 1;
    return 1;
}

/* A message read from the front: a count (u16), then items. */
class ItemReader {
public:
    explicit ItemReader(const Message &m) : p_(m.body), end_(m.body + m.len) {}
    /* the item count; false if malformed */
    bool count(uint16_t &n)
    {
        if (end_ - p_ < 2)
            return false;
        n = get_u16(p_);
        p_ += 2;
        return true;
    }
    bool at_end() const { return p_ == end_; }

protected:
    const char *p_, *end_;
};

/* A RowDescription, column by column. */
class RowDescription : public ItemReader {
public:
    using ItemReader::ItemReader;
    /* name points into the message (NUL-terminated there) */
    bool column(const char *&name, uint32_t &type, int &format)
    {
        const void *nul = memchr(p_, 0, size_t(end_ - p_));
        if (!nul)
            return false;
        name = p_;
        p_ = static_cast<const char *>(nul) + 1;
        if (end_ - p_ < 18)
            return false;
        type = get_u32(p_ + 6);
        format = int(get_u16(p_ + 16));
        p_ += 18;
        return true;
    }
};

/* A DataRow, field by field: len -1 is NULL. */
class DataRow : public ItemReader {
public:
    using ItemReader::ItemReader;
    bool field(const char *&data, int32_t &len)
    {
        if (end_ - p_ < 4)
            return false;
        len = int32_t(get_u32(p_));
        p_ += 4;
        data = p_;
        if (len == -1)
            return true;
        if (len < 0 || end_ - p_ < len)
            return false;
        p_ += len;
        return true;
    }
};

/* An ErrorResponse or NoticeResponse: (code, NUL-terminated value) pairs
 * ending in a zero byte. Calls fn(code, value) for each; false if
 * malformed. */
template <typename F>
bool each_field(const Message &m, F &&fn)
{
    const char *p = m.body, *end = m.body + m.len;
    while (p < end) {
        char code = *p++;
        if (code == 0)
            return p == end;
        const void *nul = memchr(p, 0, size_t(end - p));
        if (!nul)
            return false;
        fn(code, p);
        p = static_cast<const char *>(nul) + 1;
    }
    return false; /* no terminator */
}

} // namespace bgw::pgwire
