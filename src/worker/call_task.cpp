/*
 * call_task.cpp — see call_task.h. Every response a worker sends is
 * encoded here, through slot_protocol.hpp.
 */
#include "worker/call_task.h"
#include "shared/slot_protocol.hpp"

#include <cstring>

namespace bgw {

namespace {

constexpr size_t kLastErrorText = 256;

/* Rows of a target are gathered into one message up to this size: the
 * backend is woken once per message, not once per row. */
constexpr size_t kRowsMessageBytes = 32 * 1024;

/* What may wait in a call's outbox before its jobs stop reading: a little
 * more than one full rows message. */
constexpr size_t kOutboxBudget = 2 * kRowsMessageBytes;

wire::Span span_of(const char *s)
{
    wire::Span sp;
    sp.data = s ? s : "";
    sp.len = s ? uint32_t(strlen(s)) : 0;
    return sp;
}

/* An error or notice: the remote's own fields when there is a result,
 * else ours (sqlstate, message; libpq's reason as the detail). */
proto::ErrorFields error_fields(const PGresult *res, const char *sqlstate, const std::string &message,
                                const std::string &detail, std::string &trimmed)
{
    auto field = [res](int code) -> const char * { return res ? PQresultErrorField(res, code) : nullptr; };
    proto::ErrorFields f;
    memcpy(f.sqlstate, sqlstate && strlen(sqlstate) == 5 ? sqlstate : "XX000", 5);
    const char *sev = field(PG_DIAG_SEVERITY_NONLOCALIZED);
    f.severity = span_of(sev ? sev : "ERROR");
    const char *primary = field(PG_DIAG_MESSAGE_PRIMARY);
    if (primary) {
        f.message = span_of(primary);
    } else {
        trimmed = message;
        while (!trimmed.empty() && (trimmed.back() == '\n' || trimmed.back() == ' '))
            trimmed.pop_back();
        f.message = wire::Span{trimmed.data(), uint32_t(trimmed.size()), false};
    }
    const char *remote_detail = field(PG_DIAG_MESSAGE_DETAIL);
    f.detail = remote_detail ? span_of(remote_detail) : wire::Span{detail.data(), uint32_t(detail.size()), false};
    f.hint = span_of(field(PG_DIAG_MESSAGE_HINT));
    f.context = span_of(field(PG_DIAG_CONTEXT));
    return f;
}

} // namespace

void Call::close_rows()
{
    if (open_rows >= 0)
        proto::set_row_count(outbox.back().data(), open_rows_count);
    open_rows = -1;
}

void Call::post(std::string &&message)
{
    close_rows();
    outbox_bytes += message.size();
    outbox.push_back(std::move(message));
}

void Call::sent_front()
{
    outbox_bytes -= outbox.front().size();
    outbox.pop_front();
}

void Call::pack_front()
{
    if (front_partial || outbox.size() < 2)
        return;
    close_rows();
    size_t n = 0, total = 1, before = 0;
    for (const std::string &m : outbox) {
        if (n > 0 && total + 4 + m.size() > kRowsMessageBytes)
            break;
        total += 4 + m.size();
        before += m.size();
        n++;
    }
    if (n < 2)
        return;
    std::string b;
    b.reserve(total);
    proto::begin_batch(b, uint32_t(n));
    for (size_t i = 0; i < n; i++)
        proto::append_to_batch(b, outbox[i].data(), outbox[i].size());
    outbox.erase(outbox.begin(), outbox.begin() + long(n));
    outbox_bytes += b.size() - before;
    outbox.push_front(std::move(b));
}

void Call::fail(const char *message)
{
    std::string b, trimmed;
    proto::encode_error(b, proto::Kind::Error, 0, error_fields(nullptr, "XX000", message, std::string(), trimmed));
    post(std::move(b));
    phase = Phase::Finishing;
}

template <typename F>
void Task::guarded(proto::FaultPoint where, F &&fn) noexcept
{
    if (call->broken)
        return; /* being given up: nothing more is encoded */
    try {
        if (where == call->fault)
            throw std::bad_alloc(); /* bgw_proxy.debug_fault */
        fn();
    } catch (const std::bad_alloc &) {
        call->broken = kOutOfMemory;
    } catch (...) {
        call->broken = "internal error while handling a result";
    }
}

/* Every target is read as its results arrive: holding a connection unread
 * while waiting for another could deadlock calls against the pool limits.
 * The backend puts the rows back in target order. A broken call reads no
 * more. */
bool Task::can_accept() noexcept { return !call->broken && call->outbox_bytes < kOutboxBudget; }

void Task::on_describe(const PGresult *res) noexcept
{
    guarded(proto::FaultPoint::Describe, [&] {
        int n = PQnfields(res);
        std::vector<proto::Column> cols(static_cast<size_t>(n));
        for (int i = 0; i < n; i++) {
            cols[size_t(i)].name = span_of(PQfname(res, i));
            cols[size_t(i)].type = PQftype(res, i);
            cols[size_t(i)].format = uint8_t(PQfformat(res, i));
        }
        std::string b;
        proto::encode_describe(b, index, uint16_t(n), cols.data());
        tally.binary = n > 0 && PQfformat(res, 0) == 1;
        call->post(std::move(b));
        described = true;
    });
}

/* Rows go into the call's open rows message while it is this target's and
 * not full; its row count is written when it is closed (close_rows). */
void Task::on_row(const PGresult *row) noexcept
{
    guarded(proto::FaultPoint::Row, [&] {
        Call &c = *call;
        int n = PQnfields(row);
        if (c.open_rows != int(index) || c.outbox.back().size() >= kRowsMessageBytes) {
            std::string b;
            proto::begin_rows(b, index, uint16_t(n));
            c.post(std::move(b));
            c.open_rows = int(index);
            c.open_rows_count = 0;
        }
        std::string &m = c.outbox.back();
        size_t before = m.size();
        wire::Span fields[64];
        std::vector<wire::Span> many;
        wire::Span *f = fields;
        if (n > 64) {
            many.resize(size_t(n));
            f = many.data();
        }
        for (int i = 0; i < n; i++) {
            if (PQgetisnull(row, 0, i)) {
                f[i] = wire::Span{nullptr, 0, true};
            } else {
                f[i] = wire::Span{PQgetvalue(row, 0, i), uint32_t(PQgetlength(row, 0, i)), false};
                tally.bytes_received += f[i].len;
            }
        }
        proto::append_row(m, uint16_t(n), f);
        c.open_rows_count++;
        c.outbox_bytes += m.size() - before;
        tally.rows++;
    });
}

/* Called from inside libpq (its notice receiver): nothing may be thrown
 * through it, so a notice that cannot be encoded is dropped. */
void Task::on_notice(const PGresult *notice) noexcept
{
    try {
        const char *st = PQresultErrorField(notice, PG_DIAG_SQLSTATE);
        std::string b, trimmed;
        proto::encode_error(b, proto::Kind::Notice, index,
                            error_fields(notice, st ? st : "00000", PQresultErrorMessage(notice), std::string(),
                                         trimmed));
        call->post(std::move(b));
    } catch (...) {
    }
}

/* The job has ended, whatever happens to its message. */
void Task::on_error(const PGresult *res, const char *sqlstate, const std::string &message,
                    const std::string &detail) noexcept
{
    job = nullptr;
    if (route && call->router->failed(*route, described, res, sqlstate, message, detail))
        return; /* placed again on another node by step_call */
    finished = true;
    guarded(proto::FaultPoint::Error, [&] {
        std::string b, trimmed;
        proto::encode_error(b, proto::Kind::Error, index, error_fields(res, sqlstate, message, detail, trimmed));
        call->post(std::move(b));
        /* last_error: the remote's message, or ours with libpq's reason */
        const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : nullptr;
        char text[kLastErrorText];
        if (primary)
            snprintf(text, sizeof(text), "%s", primary);
        else if (!detail.empty())
            snprintf(text, sizeof(text), "%s: %s", message.c_str(), detail.c_str());
        else
            snprintf(text, sizeof(text), "%s", message.c_str());
        call->stats->job_ended(tally, JobOutcome::Failed, text);
    });
}

void Task::on_done(uint64_t rows) noexcept
{
    finished = true;
    job = nullptr;
    tally.rows = rows;
    guarded(proto::FaultPoint::Done, [&] {
        std::string b;
        proto::encode_target_done(b, index, rows);
        call->post(std::move(b));
        call->stats->job_ended(tally, JobOutcome::Done);
    });
}

} // namespace bgw
