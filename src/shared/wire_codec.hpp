/*
 * wire_codec.hpp — the primitives every bgw_proxy message is made of:
 *
 *   u8 / u16 / u32 / u64   fixed-size integers, host order (both ends are
 *                          processes of the same server)
 *   str                    u32 length + bytes
 *   blob                   i32 length (-1 = NULL) + bytes
 *
 * The writer appends to any buffer with append(const char *, size_t); the
 * reader never allocates and reports malformed input by returning false, so
 * it is safe in backend code where PostgreSQL errors may longjmp.
 *
 * The messages themselves are in slot_protocol.hpp; the shared cluster cache
 * (backend/cluster.cpp) stores its entries with these primitives too.
 *
 * Pure C++: no PostgreSQL header.
 */
#pragma once

#include "common/pure_cxx.h"

#include <cstdint>
#include <cstring>

namespace bgw::wire {

constexpr uint32_t kNullLength = 0xffffffffu;

/* A string or blob seen by the reader: points into the message. */
struct Span {
    const char *data = nullptr;
    uint32_t len = 0;
    bool is_null = false;
};

template <typename Buf>
class Writer {
public:
    explicit Writer(Buf &buf) : buf_(buf) {}
    void u8(uint8_t v) { raw(&v, 1); }
    void u16(uint16_t v) { raw(&v, sizeof v); }
    void u32(uint32_t v) { raw(&v, sizeof v); }
    void u64(uint64_t v) { raw(&v, sizeof v); }
    void str(const char *s, size_t len) { u32(uint32_t(len)); raw(s, len); }
    void str(const char *s) { str(s ? s : "", s ? strlen(s) : 0); }
    void blob(const char *s, size_t len) { u32(uint32_t(len)); raw(s, len); }
    void null_blob() { u32(kNullLength); }
    void str(const Span &s) { str(s.data ? s.data : "", s.data ? s.len : 0); }
    void blob(const Span &s)
    {
        if (s.is_null)
            null_blob();
        else
            blob(s.data ? s.data : "", s.data ? s.len : 0);
    }
    void raw(const void *p, size_t len) { buf_.append(static_cast<const char *>(p), len); }

private:
    Buf &buf_;
};

class Reader {
public:
    Reader(const void *data, size_t len) : p_(static_cast<const char *>(data)), end_(p_ + len) {}

    bool u8(uint8_t &v) { return fixed(&v, sizeof v); }
    bool u16(uint16_t &v) { return fixed(&v, sizeof v); }
    bool u32(uint32_t &v) { return fixed(&v, sizeof v); }
    bool u64(uint64_t &v) { return fixed(&v, sizeof v); }
    bool fixed(void *out, size_t n)
    {
        if (size_t(end_ - p_) < n)
            return false;
        memcpy(out, p_, n);
        p_ += n;
        return true;
    }
    bool str(Span &s)
    {
        uint32_t len;
        if (!u32(len) || len == kNullLength || size_t(end_ - p_) < len)
            return false;
        s = Span{p_, len, false};
        p_ += len;
        return true;
    }
    bool blob(Span &s)
    {
        uint32_t len;
        if (!u32(len))
            return false;
        if (len == kNullLength) {
            s = Span{nullptr, 0, true};
            return true;
        }
        if (size_t(end_ - p_) < len)
            return false;
        s = Span{p_, len, false};
        p_ += len;
        return true;
    }
    bool at_end() const { return p_ == end_; }

private:
    const char *p_;
    const char *end_;
};

} // namespace bgw::wire
