/*
 * slot_protocol.hpp — the messages that travel through a request slot's two
 * shm_mq rings (shmem.h), each encoded and decoded here and nowhere else.
 *
 *   request (backend -> worker), one per call:
 *     u32 kRequestMagic, u32 flags, u32 connect_timeout_ms, u32 query_timeout_ms,
 *     u32 max_connections (per pool, 0: the GUC), u32 connection_lifetime_s (0: none),
 *     u32 pool_wait_timeout_ms (0: none),
 *     u8 read_from (ReadFrom), u64 max_replica_lag (bytes, 0: off),
 *     u32 health_check_interval_ms, u32 health_check_timeout_ms, u32 health_check_retries,
 *     str function (for error context), str cluster (empty: CONNECT),
 *     u64 config_version (a function-defined cluster's version, else -1),
 *     str query, u16 ncolumns, then per declared result column: str name (empty for a
 *     scalar), u32 type OID; u32 ntargets, then per target:
 *       u32 partition, str connstr, str weights (read weights of its nodes, "3,1"; empty: 1 each),
 *       str user, str password, u8 require_password, str encoding,
 *       u32 nparams, then per param: blob   (empty user/password: not given)
 *
 *   responses (worker -> backend):
 *     'T' u16 target, u16 ncolumns, then per column:      a target's columns, before its rows
 *         str name, u32 remote type OID, u8 format (0 text, 1 binary)
 *     'D' u16 target, u16 nfields, u32 nrows, then nrows   rows, in those formats
 *         rows of nfields blobs each
 *     'E' u16 target, fields (below)                      remote or connect error
 *     'N' u16 target, fields                              a remote notice
 *     'C' u16 target, u64 rows                            one target finished
 *     'Z'                                                 the whole call finished
 *     'B' u32 count, then count times (u32 length, message)  several of the above, in order
 *         (no 'B' inside): one send, so one wake-up of the backend, for
 *         what a worker has ready at once
 *   fields: char[5] sqlstate, str severity, str message, str detail, str hint, str context
 *
 * Decoders never allocate (the caller gives the arrays) and return false on
 * anything malformed: truncated, an unknown kind, bytes left over. Decoded
 * strings point into the message.
 *
 * Pure C++: no PostgreSQL header.
 */
#pragma once

#include "common/pure_cxx.h"
#include "shared/wire_codec.hpp"

#include <cstdint>
#include <cstring>
#include <vector>

namespace bgw::proto {

using wire::Reader;
using wire::Span;
using wire::Writer;

constexpr uint32_t kRequestMagic = 0x42475033; /* "BGP3" */

/* request flags */
constexpr uint32_t kFlagPrepare = 1;  /* run as a prepared statement of the connection */
constexpr uint32_t kFlagNoBinary = 2; /* results in text only (cluster option disable_binary) */
constexpr uint32_t kFlagRead = 4;     /* a read (STABLE / IMMUTABLE LANGUAGE bgw_proxy function):
                                       * any healthy node of a partition may serve it, and it
                                       * may be retried on another (worker/node_router.h) */
/* Which nodes of a multi-host partition serve reads (cluster option read_from). */
enum class ReadFrom : uint8_t { Any = 0, Standby = 1, Primary = 2 };
/* bits 8-11: a fault the worker injects into this call (bgw_proxy.debug_fault;
 * for tests of failure isolation): a FaultPoint */
constexpr int kFaultShift = 8;
constexpr uint32_t kFaultMask = 0xFu << kFaultShift;
enum class FaultPoint : uint8_t { None = 0, Describe = 1, Row = 2, Done = 3, Error = 4 };
inline FaultPoint fault_of(uint32_t flags) { return FaultPoint((flags & kFaultMask) >> kFaultShift); }

constexpr uint32_t kMaxTargets = 65535; /* a response names its target in a u16 */

/* ------------------------------------------------------------ request */

struct RequestColumn {
    Span name;                   /* empty: the function's single, scalar result */
    uint32_t type = 0;           /* as declared locally */
};

struct RequestTarget {
    uint32_t partition = 0;
    Span connstr;
    Span user;                   /* empty: as the connection string says */
    Span password;               /* empty: none */
    bool require_password = false;
    Span encoding;               /* client_encoding for a new connection */
    Span weights;                /* "3,1": read weight of each node (host) of connstr; empty: 1 each */
    uint32_t nparams = 0;
    const Span *params = nullptr; /* text form; is_null for SQL NULL */
};

struct Request {
    uint32_t flags = 0;
    uint32_t connect_timeout_ms = 0;
    uint32_t query_timeout_ms = 0;
    uint32_t max_connections = 0;
    uint32_t connection_lifetime_s = 0;
    uint32_t pool_wait_timeout_ms = 0;
    ReadFrom read_from = ReadFrom::Any;
    uint64_t max_replica_lag = 0;        /* bytes of WAL received and not replayed; 0: off */
    uint32_t health_check_interval_ms = 0;
    uint32_t health_check_timeout_ms = 0;
    uint32_t health_check_retries = 0;
    Span function;
    Span cluster;
    int64_t config_version = -1;
    Span query;
    uint16_t ncolumns = 0;
    const RequestColumn *columns = nullptr;
    uint32_t ntargets = 0;
    const RequestTarget *targets = nullptr;
};

template <typename Buf>
void encode_request(Buf &buf, const Request &q)
{
    Writer<Buf> w(buf);
    w.u32(kRequestMagic);
    w.u32(q.flags);
    w.u32(q.connect_timeout_ms);
    w.u32(q.query_timeout_ms);
    w.u32(q.max_connections);
    w.u32(q.connection_lifetime_s);
    w.u32(q.pool_wait_timeout_ms);
    w.u8(uint8_t(q.read_from));
    w.u64(q.max_replica_lag);
    w.u32(q.health_check_interval_ms);
    w.u32(q.health_check_timeout_ms);
    w.u32(q.health_check_retries);
    w.str(q.function);
    w.str(q.cluster);
    w.u64(uint64_t(q.config_version));
    w.str(q.query);
    w.u16(q.ncolumns);
    for (uint16_t i = 0; i < q.ncolumns; i++) {
        w.str(q.columns[i].name);
        w.u32(q.columns[i].type);
    }
    w.u32(q.ntargets);
    for (uint32_t t = 0; t < q.ntargets; t++) {
        const RequestTarget &tg = q.targets[t];
        w.u32(tg.partition);
        w.str(tg.connstr);
        w.str(tg.weights);
        w.str(tg.user);
        w.str(tg.password);
        w.u8(tg.require_password ? 1 : 0);
        w.str(tg.encoding);
        w.u32(tg.nparams);
        for (uint32_t i = 0; i < tg.nparams; i++)
            w.blob(tg.params[i]);
    }
}

/* Where a decoded request's arrays live (the worker's side: C++ code). */
struct RequestStorage {
    std::vector<RequestColumn> columns;
    std::vector<RequestTarget> targets;
    std::vector<Span> params;
};

/* A request with no target, or more than kMaxTargets, is malformed. */
inline bool decode_request(const void *data, size_t len, Request &q, RequestStorage &st)
{
    Reader r(data, len);
    uint32_t magic;
    uint64_t version;
    uint8_t read_from;
    if (!r.u32(magic) || magic != kRequestMagic || !r.u32(q.flags) || !r.u32(q.connect_timeout_ms) ||
        !r.u32(q.query_timeout_ms) || !r.u32(q.max_connections) || !r.u32(q.connection_lifetime_s) ||
        !r.u32(q.pool_wait_timeout_ms) || !r.u8(read_from) || read_from > uint8_t(ReadFrom::Primary) ||
        !r.u64(q.max_replica_lag) || !r.u32(q.health_check_interval_ms) || !r.u32(q.health_check_timeout_ms) ||
        !r.u32(q.health_check_retries) || !r.str(q.function) || !r.str(q.cluster) || !r.u64(version) ||
        !r.str(q.query) || !r.u16(q.ncolumns))
        return false;
    q.config_version = int64_t(version);
    q.read_from = ReadFrom(read_from);
    st.columns.clear();
    st.targets.clear();
    st.params.clear();
    for (uint16_t i = 0; i < q.ncolumns; i++) {
        RequestColumn c;
        if (!r.str(c.name) || !r.u32(c.type))
            return false;
        st.columns.push_back(c);
    }
    if (!r.u32(q.ntargets) || q.ntargets == 0 || q.ntargets > kMaxTargets || q.ntargets > len)
        return false;
    std::vector<size_t> first_param;
    for (uint32_t t = 0; t < q.ntargets; t++) {
        RequestTarget tg;
        uint8_t require_password;
        if (!r.u32(tg.partition) || !r.str(tg.connstr) || !r.str(tg.weights) || !r.str(tg.user) || !r.str(tg.password) ||
            !r.u8(require_password) || !r.str(tg.encoding) || !r.u32(tg.nparams) || tg.nparams > len)
            return false;
        tg.require_password = require_password != 0;
        first_param.push_back(st.params.size());
        for (uint32_t i = 0; i < tg.nparams; i++) {
            Span p;
            if (!r.blob(p))
                return false;
            st.params.push_back(p);
        }
        st.targets.push_back(tg);
    }
    if (!r.at_end())
        return false;
    /* params is complete: now its addresses are stable */
    for (uint32_t t = 0; t < q.ntargets; t++)
        st.targets[t].params = st.params.data() + first_param[t];
    q.columns = st.columns.data();
    q.targets = st.targets.data();
    return true;
}

/* ---------------------------------------------------------- responses */

enum class Kind : uint8_t {
    Describe = 'T',
    Rows = 'D',
    Error = 'E',
    Notice = 'N',
    TargetDone = 'C',
    CallDone = 'Z',
    Batch = 'B',
};

struct Column {
    Span name;
    uint32_t type = 0;           /* the remote's type OID */
    uint8_t format = 0;          /* 0 text, 1 binary */
};

struct ErrorFields {
    char sqlstate[6] = {0};      /* five characters and a terminator */
    Span severity, message, detail, hint, context;
};

/* The first bytes of every response but CallDone. */
template <typename Buf>
Writer<Buf> begin_response(Buf &buf, Kind kind, uint16_t target)
{
    Writer<Buf> w(buf);
    w.u8(uint8_t(kind));
    w.u16(target);
    return w;
}

template <typename Buf>
void encode_describe(Buf &buf, uint16_t target, uint16_t ncolumns, const Column *columns)
{
    Writer<Buf> w = begin_response(buf, Kind::Describe, target);
    w.u16(ncolumns);
    for (uint16_t i = 0; i < ncolumns; i++) {
        w.str(columns[i].name);
        w.u32(columns[i].type);
        w.u8(columns[i].format);
    }
}

/* A rows message: begin it, append rows of exactly nfields, then write
 * their number into the message with set_row_count(). */
constexpr size_t kRowCountOffset = 5; /* after kind, target, nfields */

template <typename Buf>
void begin_rows(Buf &buf, uint16_t target, uint16_t nfields)
{
    Writer<Buf> w = begin_response(buf, Kind::Rows, target);
    w.u16(nfields);
    w.u32(0);
}

template <typename Buf>
void append_row(Buf &buf, uint16_t nfields, const Span *fields)
{
    Writer<Buf> w(buf);
    for (uint16_t i = 0; i < nfields; i++)
        w.blob(fields[i]);
}

/* message: the start of a message made by begin_rows */
inline void set_row_count(char *message, uint32_t nrows)
{
    memcpy(message + kRowCountOffset, &nrows, sizeof nrows);
}

/* kind is Error or Notice; the sqlstate must be five characters. */
template <typename Buf>
void encode_error(Buf &buf, Kind kind, uint16_t target, const ErrorFields &f)
{
    Writer<Buf> w = begin_response(buf, kind, target);
    w.raw(f.sqlstate, 5);
    w.str(f.severity);
    w.str(f.message);
    w.str(f.detail);
    w.str(f.hint);
    w.str(f.context);
}

template <typename Buf>
void encode_target_done(Buf &buf, uint16_t target, uint64_t rows)
{
    Writer<Buf> w = begin_response(buf, Kind::TargetDone, target);
    w.u64(rows);
}

template <typename Buf>
void encode_call_done(Buf &buf)
{
    Writer<Buf> w(buf);
    w.u8(uint8_t(Kind::CallDone));
}

/* A batch: begin it with the number of messages, then append exactly that
 * many whole messages (not batches). */
template <typename Buf>
void begin_batch(Buf &buf, uint32_t count)
{
    Writer<Buf> w(buf);
    w.u8(uint8_t(Kind::Batch));
    w.u32(count);
}

template <typename Buf>
void append_to_batch(Buf &buf, const char *message, size_t len)
{
    Writer<Buf> w(buf);
    w.u32(uint32_t(len));
    w.raw(message, len);
}

/* After decode_head said Batch: how many messages follow (at least one). */
inline bool decode_batch_count(Reader &r, uint32_t &count) { return r.u32(count) && count > 0; }

/* The next message of a batch: a whole, non-empty message, not a batch.
 * After the last of `count`, the reader must be at_end(). */
inline bool decode_batch_message(Reader &r, Span &message)
{
    return r.str(message) && message.len > 0 && uint8_t(message.data[0]) != uint8_t(Kind::Batch);
}

/* The first bytes of every response: its kind and (but for CallDone and
 * Batch) its target. The reader is left at the message's body. */
inline bool decode_head(Reader &r, Kind &kind, uint16_t &target)
{
    uint8_t k;
    if (!r.u8(k))
        return false;
    kind = Kind(k);
    target = 0;
    switch (kind) {
    case Kind::CallDone:
        return r.at_end();
    case Kind::Batch:
        return true;
    case Kind::Describe:
    case Kind::Rows:
    case Kind::Error:
    case Kind::Notice:
    case Kind::TargetDone:
        return r.u16(target);
    }
    return false;
}

inline bool decode_describe_count(Reader &r, uint16_t &ncolumns) { return r.u16(ncolumns); }

inline bool decode_describe(Reader &r, uint16_t ncolumns, Column *out)
{
    for (uint16_t i = 0; i < ncolumns; i++)
        if (!r.str(out[i].name) || !r.u32(out[i].type) || !r.u8(out[i].format))
            return false;
    return r.at_end();
}

inline bool decode_rows_head(Reader &r, uint16_t &nfields, uint32_t &nrows) { return r.u16(nfields) && r.u32(nrows); }

/* One row of a rows message into fields[nfields]. After the last of nrows
 * rows, the reader must be at_end(). */
inline bool decode_row(Reader &r, uint16_t nfields, Span *fields)
{
    for (uint16_t i = 0; i < nfields; i++)
        if (!r.blob(fields[i]))
            return false;
    return true;
}

inline bool decode_error(Reader &r, ErrorFields &f)
{
    return r.fixed(f.sqlstate, 5) && r.str(f.severity) && r.str(f.message) && r.str(f.detail) &&
           r.str(f.hint) && r.str(f.context) && r.at_end();
}

inline bool decode_target_done(Reader &r, uint64_t &rows) { return r.u64(rows) && r.at_end(); }

} // namespace bgw::proto
