/*
 * wire.hpp — the byte format of the messages that travel through a slot's
 * two shm_mq rings. One format, one codec, used by both sides:
 *
 *   request (backend -> worker), one message per call:
 *     u32 kRequestMagic, u32 flags, u32 connect_timeout_ms, u32 query_timeout_ms,
 *     u32 max_connections (per pool, 0: the GUC), u32 connection_lifetime_s (0: none),
 *     u32 pool_wait_timeout_ms (0: none),
 *     str function (for error context), str cluster (empty: CONNECT),
 *     i64 config_version (a function-defined cluster's version, else -1),
 *     str query, u16 ncolumns, then per declared result column: str name (empty for a
 *     scalar), u32 type OID; u32 ntargets, then per target:
 *       u32 partition, str connstr, str user, str password, u8 require_password, str encoding,
 *       u32 nparams, then per param: blob   (empty user/password: not given)
 *
 *   response (worker -> backend), one message each:
 *     'T' u16 target, u16 nfields, then per field:             the columns, before the rows:
 *         str name, u32 remote type OID, u8 format (0 text, 1 binary)
 *     'D' u16 target, u16 nfields, then nfields blobs         a row, in those formats
 *     'E' u16 target, fields (below)                           remote or connect error
 *     'N' u16 target, fields                                   a remote notice
 *     'C' u16 target, u64 rows                                 one target finished
 *     'Z'                                                      the whole call finished
 *   fields: char[5] sqlstate, str severity, str message, str detail, str hint, str context
 *
 * str is u32 length + bytes; blob is i32 length (-1 = NULL) + bytes. Integers
 * are host order: both ends are processes of the same server.
 *
 * The writer appends to any buffer with append(const char *, size_t); the
 * reader never allocates and reports malformed input by returning false, so
 * it is safe in backend code where PostgreSQL errors may longjmp.
 *
 * Pure C++: no PostgreSQL header.
 */
#pragma once

#include "pure_cxx.h"

#include <cstdint>
#include <cstring>

namespace bgw::wire {

constexpr uint32_t kRequestMagic = 0x42475031; /* "BGP1" */
constexpr uint32_t kNullLength = 0xffffffffu;

/* request flags */
constexpr uint32_t kFlagPrepare = 1;  /* run as a prepared statement of the connection */
constexpr uint32_t kFlagNoBinary = 2; /* results in text only (cluster option disable_binary) */

/* Result types that may travel in binary: built-in (the same OID on every
 * server), a binary form without embedded OIDs or text in the client
 * encoding (text-like types gain nothing and would need encoding care),
 * and no value range added since PostgreSQL 10 that an older receiver
 * would misread (interval gained infinities in 17: not listed). Arrays of
 * them carry their element OID, which is built-in too. Both sides check
 * it: the worker before asking for binary, the backend before decoding. */
inline bool binary_safe_type(uint32_t type)
{
    switch (type) {
    case 16:   /* bool */
    case 17:   /* bytea */
    case 20:   /* int8 */
    case 21:   /* int2 */
    case 23:   /* int4 */
    case 26:   /* oid */
    case 700:  /* float4 */
    case 701:  /* float8 */
    case 1082: /* date */
    case 1083: /* time */
    case 1114: /* timestamp */
    case 1184: /* timestamptz */
    case 1700: /* numeric */
    case 2950: /* uuid */
    case 1000: /* bool[] */
    case 1001: /* bytea[] */
    case 1005: /* int2[] */
    case 1007: /* int4[] */
    case 1016: /* int8[] */
    case 1021: /* float4[] */
    case 1022: /* float8[] */
    case 1028: /* oid[] */
    case 1115: /* timestamp[] */
    case 1182: /* date[] */
    case 1183: /* time[] */
    case 1185: /* timestamptz[] */
    case 1231: /* numeric[] */
    case 2951: /* uuid[] */
        return true;
    default:
        return false;
    }
}

enum : char {
    kDescribe = 'T',
    kRow = 'D',
    kError = 'E',
    kNotice = 'N',
    kTargetDone = 'C',
    kCallDone = 'Z',
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
    void raw(const void *p, size_t len) { buf_.append(static_cast<const char *>(p), len); }

private:
    Buf &buf_;
};

/* A string or blob seen by the reader: points into the message. */
struct Span {
    const char *data = nullptr;
    uint32_t len = 0;
    bool is_null = false;
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

/* The fields of an error or notice, as read by the receiving side. */
struct ErrorFields {
    char sqlstate[6] = {0};
    Span severity, message, detail, hint, context;
};

inline bool read_error_fields(Reader &r, ErrorFields &f)
{
    return r.fixed(f.sqlstate, 5) && r.str(f.severity) && r.str(f.message) && r.str(f.detail) &&
           r.str(f.hint) && r.str(f.context);
}

} // namespace bgw::wire
