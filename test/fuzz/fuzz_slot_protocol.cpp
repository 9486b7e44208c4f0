/*
 * fuzz_slot_protocol.cpp — libFuzzer target for the slot message codec
 * (shared/slot_protocol.hpp over shared/wire_codec.hpp).
 *
 * Every input is used three ways:
 *   1. as a request, decoded as the worker does (slot_calls.cpp);
 *   2. as a response, decoded as the backend does (call.cpp), every kind
 *      and batches of them;
 *   3. as the source of a request and a response built field by field.
 * Whatever a decoder accepts is encoded again, and must come back as the
 * same bytes: nothing a decoder accepts is lost or changed on the way, so
 * decode(encode(x)) == x for what 3 builds (the encodings are length
 * prefixed, hence one message has one encoding). A decoder must also never
 * read outside the message and never point a span outside it.
 *
 * Seed mode: with BGW_FUZZ_SEEDS=<dir> in the environment, the target
 * writes one well-formed message of each kind into dir and exits (see
 * make_corpus.sh), so the seeds come from the real encoders.
 */
#include "shared/slot_protocol.hpp"

#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <string>
#include <vector>

using namespace bgw::wire;
using namespace bgw::proto;

namespace {

void require(bool cond)
{
    if (!cond)
        abort();
}

/* A decoded span points into the message it came from. */
void require_inside(const Span &s, const char *data, size_t len)
{
    if (s.is_null)
        return;
    require(s.data >= data && s.len <= len && s.data - data <= ptrdiff_t(len - s.len));
}

/* Request: decodes as the worker does; on success, encodes it again. */
bool reencode_request(const char *data, size_t len, std::string &out)
{
    Request q;
    RequestStorage st;
    if (!decode_request(data, len, q, st))
        return false;
    require_inside(q.function, data, len);
    require_inside(q.cluster, data, len);
    require_inside(q.query, data, len);
    for (uint32_t t = 0; t < q.ntargets; t++) {
        const RequestTarget &tg = q.targets[t];
        for (const Span *s : {&tg.connstr, &tg.weights, &tg.user, &tg.password, &tg.encoding})
            require_inside(*s, data, len);
        for (uint32_t i = 0; i < tg.nparams; i++)
            require_inside(tg.params[i], data, len);
    }
    encode_request(out, q);
    return true;
}

/* Response: decodes as the backend does (call.cpp, deliver_message) and
 * appends what it read, encoded again, to out. False where the backend
 * would report a malformed message. */
bool reencode_response(const char *data, size_t len, bool in_batch, std::string &out)
{
    Reader r(data, len);
    Kind kind;
    uint16_t target;
    if (!decode_head(r, kind, target))
        return false;
    switch (kind) {
    case Kind::CallDone:
        encode_call_done(out);
        return true;
    case Kind::Batch: {
        uint32_t count;
        if (in_batch || !decode_batch_count(r, count))
            return false;
        begin_batch(out, count);
        for (uint32_t i = 0; i < count; i++) {
            Span m;
            std::string inner;
            if (!decode_batch_message(r, m) || !reencode_response(m.data, m.len, true, inner))
                return false;
            require_inside(m, data, len);
            append_to_batch(out, inner.data(), inner.size());
        }
        return r.at_end();
    }
    case Kind::Describe: {
        uint16_t n;
        if (!decode_describe_count(r, n))
            return false;
        std::vector<Column> columns(n);
        if (!decode_describe(r, n, columns.data()))
            return false;
        for (const Column &c : columns)
            require_inside(c.name, data, len);
        encode_describe(out, target, n, columns.data());
        return true;
    }
    case Kind::Rows: {
        uint16_t nfields;
        uint32_t nrows;
        if (!decode_rows_head(r, nfields, nrows))
            return false;
        size_t start = out.size();
        begin_rows(out, target, nfields);
        /* rows of no fields take no bytes: any count of them is well formed,
         * and reading them one by one would only spin */
        std::vector<Span> fields(nfields);
        for (uint32_t i = 0; nfields > 0 && i < nrows; i++) {
            if (!decode_row(r, nfields, fields.data()))
                return false;
            for (const Span &f : fields)
                require_inside(f, data, len);
            append_row(out, nfields, fields.data());
        }
        set_row_count(&out[start], nrows);
        return r.at_end();
    }
    case Kind::Error:
    case Kind::Notice: {
        ErrorFields f;
        if (!decode_error(r, f))
            return false;
        require(f.sqlstate[5] == '\0');
        encode_error(out, kind, target, f);
        return true;
    }
    case Kind::TargetDone: {
        uint64_t rows;
        if (!decode_target_done(r, rows))
            return false;
        encode_target_done(out, target, rows);
        return true;
    }
    }
    return false;
}

/* ---- messages built field by field from the fuzzer's bytes ------------ */

/* Values built from the input, kept alive while a message points at them
 * (a deque: adding one moves none of the others). */
struct Pool {
    std::deque<std::string> strings;
    Span span(FuzzedDataProvider &in, bool may_be_null)
    {
        if (may_be_null && in.ConsumeBool())
            return Span{nullptr, 0, true};
        strings.push_back(in.ConsumeRandomLengthString(64));
        const std::string &s = strings.back();
        return Span{s.data(), uint32_t(s.size()), false};
    }
};

std::string build_request(FuzzedDataProvider &in)
{
    Pool pool;
    Request q;
    q.flags = in.ConsumeIntegral<uint32_t>();
    q.connect_timeout_ms = in.ConsumeIntegral<uint32_t>();
    q.query_timeout_ms = in.ConsumeIntegral<uint32_t>();
    q.max_connections = in.ConsumeIntegral<uint32_t>();
    q.connection_lifetime_s = in.ConsumeIntegral<uint32_t>();
    q.pool_wait_timeout_ms = in.ConsumeIntegral<uint32_t>();
    q.function = pool.span(in, false);
    q.cluster = pool.span(in, false);
    q.config_version = in.ConsumeIntegral<int64_t>();
    q.query = pool.span(in, false);
    std::vector<RequestColumn> columns(in.ConsumeIntegralInRange<uint16_t>(0, 8));
    for (RequestColumn &c : columns) {
        c.name = pool.span(in, false);
        c.type = in.ConsumeIntegral<uint32_t>();
    }
    q.ncolumns = uint16_t(columns.size());
    q.columns = columns.data();
    /* at least one target: a request without one is malformed */
    std::vector<RequestTarget> targets(in.ConsumeIntegralInRange<uint32_t>(1, 8));
    std::vector<std::vector<Span>> params(targets.size());
    for (size_t t = 0; t < targets.size(); t++) {
        RequestTarget &tg = targets[t];
        tg.partition = in.ConsumeIntegral<uint32_t>();
        tg.connstr = pool.span(in, false);
        tg.weights = pool.span(in, false);
        tg.user = pool.span(in, false);
        tg.password = pool.span(in, false);
        tg.require_password = in.ConsumeBool();
        tg.encoding = pool.span(in, false);
        params[t].resize(in.ConsumeIntegralInRange<uint32_t>(0, 8));
        for (Span &p : params[t])
            p = pool.span(in, true);
        tg.nparams = uint32_t(params[t].size());
        tg.params = params[t].data();
    }
    q.ntargets = uint32_t(targets.size());
    q.targets = targets.data();
    std::string out;
    encode_request(out, q);
    return out;
}

/* One response of any kind but a batch. */
void build_response(FuzzedDataProvider &in, std::string &out)
{
    Pool pool;
    uint16_t target = in.ConsumeIntegral<uint16_t>();
    switch (in.ConsumeIntegralInRange(0, 5)) {
    case 0: {
        std::vector<Column> columns(in.ConsumeIntegralInRange<uint16_t>(0, 8));
        for (Column &c : columns) {
            c.name = pool.span(in, false);
            c.type = in.ConsumeIntegral<uint32_t>();
            c.format = in.ConsumeIntegral<uint8_t>();
        }
        encode_describe(out, target, uint16_t(columns.size()), columns.data());
        break;
    }
    case 1: {
        size_t start = out.size();
        uint16_t nfields = in.ConsumeIntegralInRange<uint16_t>(0, 8);
        uint32_t nrows = in.ConsumeIntegralInRange<uint32_t>(0, 8);
        begin_rows(out, target, nfields);
        std::vector<Span> fields(nfields);
        for (uint32_t i = 0; i < nrows; i++) {
            for (Span &f : fields)
                f = pool.span(in, true);
            append_row(out, nfields, fields.data());
        }
        set_row_count(&out[start], nrows);
        break;
    }
    case 2:
    case 3: {
        ErrorFields f;
        std::string sqlstate = in.ConsumeBytesAsString(5);
        sqlstate.resize(5, '0');
        memcpy(f.sqlstate, sqlstate.data(), 5);
        f.severity = pool.span(in, false);
        f.message = pool.span(in, false);
        f.detail = pool.span(in, false);
        f.hint = pool.span(in, false);
        f.context = pool.span(in, false);
        encode_error(out, in.ConsumeBool() ? Kind::Error : Kind::Notice, target, f);
        break;
    }
    case 4:
        encode_target_done(out, target, in.ConsumeIntegral<uint64_t>());
        break;
    default:
        encode_call_done(out);
        break;
    }
}

std::string build_batch(FuzzedDataProvider &in)
{
    uint32_t count = in.ConsumeIntegralInRange<uint32_t>(1, 6);
    std::string out;
    begin_batch(out, count);
    for (uint32_t i = 0; i < count; i++) {
        std::string message;
        build_response(in, message);
        append_to_batch(out, message.data(), message.size());
    }
    return out;
}

/* What an encoder made, the decoder takes back whole. */
void require_round_trip_request(const std::string &encoded)
{
    std::string again;
    require(reencode_request(encoded.data(), encoded.size(), again));
    require(again == encoded);
}

void require_round_trip_response(const std::string &encoded)
{
    std::string again;
    require(reencode_response(encoded.data(), encoded.size(), false, again));
    require(again == encoded);
}

/* ---- seed mode ---------------------------------------------------------- */

void write_seed(const char *dir, const char *name, const std::string &message)
{
    std::string path = std::string(dir) + "/" + name;
    FILE *f = fopen(path.c_str(), "wb");
    require(f != nullptr);
    require(fwrite(message.data(), 1, message.size(), f) == message.size());
    require(fclose(f) == 0);
}

Span text(const char *s) { return Span{s, uint32_t(strlen(s)), false}; }

void write_seeds(const char *dir)
{
    const Span kNull{nullptr, 0, true};
    const Span params[] = {text("42"), kNull};
    const RequestColumn req_columns[] = {{text("id"), 23}, {text("name"), 25}};
    RequestTarget tg;
    tg.partition = 3;
    tg.connstr = text("host=db1 port=5432 dbname=part3");
    tg.user = text("alice");
    tg.encoding = text("UTF8");
    tg.nparams = 2;
    tg.params = params;
    Request q;
    q.flags = kFlagPrepare;
    q.connect_timeout_ms = 10000;
    q.function = text("public.get_user(int)");
    q.cluster = text("userdb");
    q.query = text("SELECT * FROM public.get_user($1::int4, $2::text)");
    q.ncolumns = 2;
    q.columns = req_columns;
    q.ntargets = 1;
    q.targets = &tg;
    std::string request;
    encode_request(request, q);
    write_seed(dir, "request", request);

    std::vector<std::string> responses(6);
    const Column columns[] = {{text("id"), 23, 1}, {text("name"), 25, 0}};
    encode_describe(responses[0], 0, 2, columns);
    const Span row[] = {text("17"), kNull};
    begin_rows(responses[1], 0, 2);
    append_row(responses[1], 2, row);
    append_row(responses[1], 2, row);
    set_row_count(&responses[1][0], 2);
    ErrorFields f;
    memcpy(f.sqlstate, "42P01", 5);
    f.severity = text("ERROR");
    f.message = text("relation \"t\" does not exist");
    f.hint = text("a hint");
    encode_error(responses[2], Kind::Error, 1, f);
    memcpy(f.sqlstate, "01000", 5);
    f.severity = text("NOTICE");
    encode_error(responses[3], Kind::Notice, 0, f);
    encode_target_done(responses[4], 0, 2);
    encode_call_done(responses[5]);
    const char *names[] = {"describe", "rows", "error", "notice", "target_done", "call_done"};
    std::string batch;
    begin_batch(batch, uint32_t(responses.size()));
    for (size_t i = 0; i < responses.size(); i++) {
        write_seed(dir, names[i], responses[i]);
        append_to_batch(batch, responses[i].data(), responses[i].size());
    }
    write_seed(dir, "batch", batch);
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***)
{
    if (const char *dir = getenv("BGW_FUZZ_SEEDS")) {
        write_seeds(dir);
        exit(0);
    }
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *bytes = reinterpret_cast<const char *>(data);

    std::string again;
    if (reencode_request(bytes, size, again)) {
        /* the one byte that may change: require_password is read as a
         * bool, so any non-zero value comes back as 1 */
        require(again.size() == size);
        require_round_trip_request(again);
    }
    again.clear();
    if (reencode_response(bytes, size, false, again))
        require(again == std::string(bytes, size));

    FuzzedDataProvider in(data, size);
    require_round_trip_request(build_request(in));
    std::string response;
    if (in.ConsumeBool())
        build_response(in, response);
    else
        response = build_batch(in);
    require_round_trip_response(response);
    return 0;
}
