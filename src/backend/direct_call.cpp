/*
 * direct_call.cpp — see direct_call.h; the lend table's protocol is in
 * shared/lend_table.h, the messages in common/pg_wire.hpp.
 *
 * The backend keeps, per lend table entry, its copy of the socket of the
 * connection the entry holds (and a wait set for it), for as long as the
 * entry's generation says it is the same connection: borrowing again costs
 * one compare-and-swap.
 *
 * A call borrows one connection per target (direct_call_run says how
 * several are had without two backends waiting for each other).
 *
 * A connection given back as idle has answered ReadyForQuery with no
 * transaction open and nothing left unread, as the worker left it. A
 * remote error is no reason to give it back otherwise: it is read to its
 * ReadyForQuery first, then raised. An error of our own, a cancel or an
 * exit in the middle gives it back BROKEN: with `drain` when the statement
 * went out whole and we know where the stream stands (its worker cancels
 * the statement, reads on from there and parks it again), else to be
 * cancelled and closed (a lost connection, a protocol error, query_timeout).
 */
#include "common/pg_wire.hpp"
#include "common/pool_key.hpp"
#include "common/socket_quiet.hpp"
#include "shared/binary_types.hpp"
#include "backend/direct_call.h"
#include "backend/string_info_buf.h"
#include "common/guc.h"
#include "shared/lend_table.h"
#include "shared/node_table.h"
#include "shared/pool_stats.h"
#include "shared/shmem.h"
#include "shared/workers.h"

#include "common/pg_headers.h"

#include <poll.h>
#include <string_view>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace bgw {

namespace {

/* This backend's copy of an entry's socket. */
struct CopiedSocket {
    uint64 generation;
    int fd;                      /* -1: none */
    WaitEventSet *wait;          /* latch, postmaster death, fd */
    int socket_pos;              /* fd's event in `wait` */
};
CopiedSocket *copies = nullptr; /* per lend table entry, in TopMemoryContext */

/* What one direct call did, for pg_stat_bgw_proxy. */
struct Tally {
    uint64 rows = 0;
    uint64 bytes_sent = 0;
    uint64 bytes_received = 0;
    bool binary = false;
    TimestampTz started = 0;
};

/* A connection borrowed for one target of the call under way, for the
 * error and exit paths too. */
struct Borrowed {
    Tally t;
    int target = 0;              /* its index in the call */
    bool ask_binary = false;     /* its results were asked for in binary */
    bool sending = false;        /* the statement started going out */
    bool sent = false;           /* the statement went out whole */
    uint64 statement = 0;        /* its hash */
    bool named = false;          /* run as a prepared statement of the connection */
    int parse_slot = -1;         /* LendEntry.prepared slot it is being prepared in */
    StringInfoData in;           /* what was read and not yet handled (palloc'd per call) */
    int entry = -1;
    uint64 word = 0;             /* the entry's word while we hold it (LENT) */
    int stat = -1;               /* the call's pg_stat_bgw_proxy entry */
    int fd = -1;                 /* our copy of its socket */
    bool cancel_known = false;   /* the remote backend's cancel key, from the entry */
    uint32 cancel_pid = 0, cancel_key = 0;
};
/* One per target of the call under way, in target order; held[i].entry
 * -1: none borrowed. A call with more targets goes through a worker. */
constexpr int kDirectTargets = 64;
Borrowed held[kDirectTargets];
int nheld = 0;

/* The statistics entry whose direct_waiting this backend counts itself
 * in while it waits for a connection (-1: not waiting), and our request
 * slot, where the wait shows for longest_wait (shmem.h). */
int waiting_in = -1;
RequestSlot *waiting_slot = nullptr;

void stop_waiting(void)
{
    if (waiting_in >= 0) {
        pg_atomic_fetch_sub_u32(&pool_stat(waiting_in)->direct_waiting, 1);
        pg_atomic_write_u32(&waiting_slot->direct_wait_stat, 0);
        ConditionVariableCancelSleep();
    }
    waiting_in = -1;
}

/* pidfd_getfd refused once (an old kernel, a sandbox): this backend goes
 * through the workers from then on. */
bool copying_refused = false;

void forget_copy(int entry)
{
    CopiedSocket &c = copies[entry];
    if (c.wait)
        FreeWaitEventSet(c.wait);
    c.wait = nullptr;
    if (c.fd >= 0) {
        close(c.fd);
        ReleaseExternalFD();
    }
    c.fd = -1;
}

void count_call(const Borrowed &b, const RemoteMessage *error, bool cancelled = false);

/* A remote statement to cancel: its session's socket and cancel key. */
struct CancelTarget {
    int fd;
    uint32 pid, key;
};

/*
 * CancelRequests to several remote sessions' statements at once, each sent
 * to the address its session's socket is connected to, and a second in
 * all to see them handled (the postmaster closes a request's connection
 * once it acted): a backend ending calls to frozen partitions waits one
 * second, not one per partition. Never raises; runs while a call is given
 * up or the backend exits, so the second is its only way out (no
 * CHECK_FOR_INTERRUPTS there).
 */
void send_cancels(const CancelTarget *t, int n)
{
    enum Step : uint8 { kEnded, kRetry, kConnecting, kSent };
    struct pollfd pfd[kDirectTargets]; /* fd -1 while not polled */
    int sock[kDirectTargets];
    Step step[kDirectTargets];
    sockaddr_storage peer[kDirectTargets];
    socklen_t peer_len[kDirectTargets];
    int pending = 0;
    n = Min(n, kDirectTargets);

    auto end = [&](int i) {
        close(sock[i]);
        pfd[i].fd = -1;
        step[i] = kEnded;
        pending--;
    };
    auto send_request = [&](int i) {
        char request[16];
        pgwire::put_u32(request, 16);
        pgwire::put_u32(request + 4, 80877102); /* the protocol's cancel request code */
        pgwire::put_u32(request + 8, t[i].pid);
        pgwire::put_u32(request + 12, t[i].key);
        /* a new connection's buffer takes it whole, or it failed */
        if (send(sock[i], request, sizeof(request), MSG_NOSIGNAL) != ssize_t(sizeof(request)))
            return end(i);
        step[i] = kSent;
        pfd[i] = {sock[i], POLLIN, 0};
    };
    auto connect_step = [&](int i) {
        if (connect(sock[i], reinterpret_cast<sockaddr *>(&peer[i]), peer_len[i]) == 0)
            return send_request(i);
        if (errno == EINPROGRESS) {
            step[i] = kConnecting;
            pfd[i] = {sock[i], POLLOUT, 0};
        } else if (errno == EAGAIN) {
            step[i] = kRetry; /* a Unix socket's full backlog: try again shortly */
            pfd[i].fd = -1;
        } else {
            end(i);
        }
    };

    for (int i = 0; i < n; i++) {
        pfd[i] = {-1, 0, 0};
        step[i] = kEnded;
        peer_len[i] = sizeof(peer[i]);
        if (getpeername(t[i].fd, reinterpret_cast<sockaddr *>(&peer[i]), &peer_len[i]) != 0)
            continue;
        sock[i] = socket(peer[i].ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (sock[i] < 0)
            continue;
        pending++;
        connect_step(i);
    }
    TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 1000);
    while (pending > 0) {
        long left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
        if (left <= 0)
            break;
        bool retrying = false;
        for (int i = 0; i < n; i++)
            retrying |= step[i] == kRetry;
        int r = poll(pfd, nfds_t(n), int(retrying ? Min(left, 10) : left));
        if (r < 0 && errno != EINTR)
            break;
        for (int i = 0; i < n; i++) {
            if (step[i] == kRetry) {
                connect_step(i);
                continue;
            }
            if (r <= 0 || pfd[i].fd < 0 || pfd[i].revents == 0)
                continue;
            int err = 0;
            socklen_t len = sizeof(err);
            if (step[i] == kConnecting &&
                getsockopt(sock[i], SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0)
                send_request(i);
            else
                end(i); /* closed by the postmaster (it acted), or the connect failed */
        }
    }
    for (int i = 0; i < n; i++)
        if (step[i] != kEnded)
            close(sock[i]);
}

/* A session's Terminate message, as libpq's PQfinish sends; never blocks. */
void send_terminate(int fd)
{
    static const char terminate[5] = {'X', 0, 0, 0, 4};
    (void) send(fd, terminate, sizeof(terminate), MSG_NOSIGNAL | MSG_DONTWAIT);
}

/*
 * Ending a remote session ourselves, when no worker will: the worker that
 * lent the connection is gone. The statement (if one may run) is cancelled
 * (send_cancels), the session gets a Terminate. Never raises.
 */
void end_remote_session(const Borrowed &b, int fd, bool statement_may_run)
{
    if (statement_may_run && b.cancel_known) {
        CancelTarget t = {fd, b.cancel_pid, b.cancel_key};
        send_cancels(&t, 1);
    }
    send_terminate(fd);
}

/* Give the borrowed connection back: idle (ready for the next query) or
 * broken. Wakes its worker if it waits for it, or to close a broken one.
 * Never raises an error. */
void give_back(Borrowed &b, bool idle)
{
    int entry = b.entry;
    if (entry < 0)
        return;
    b.entry = -1;
    LendEntry *e = lend_entry(entry);
    pg_atomic_write_u64(&e->returned_us, node_clock_us());
    uint64 key_hash = e->key_hash; /* ours to read until the CAS */
    uint64 expected = b.word;
    uint64 to = lend_word(lend_generation(expected), idle ? LEND_PARKED : LEND_BROKEN);
    bool ours = pg_atomic_compare_exchange_u64(&e->word, &expected, to);
    if (!ours && b.fd >= 0)
        end_remote_session(b, b.fd, !idle); /* its worker is gone: nobody else will */
    if (!ours || (!idle && !e->drain))
        forget_copy(entry); /* its worker restarted meanwhile, or it is to be closed */
    /* the longest waiting backend of its pool: to borrow it, or to think again */
    lend_channel_signal(key_hash);
    if (ours && (!idle || pg_atomic_read_u32(&e->want) != 0)) {
        int w = e->worker;
        pg_atomic_write_u32(&worker_state(w)->returns, 1);
        wake_worker(w);
    }
}

/* One of our socket copies per call, in turn, closed if its connection
 * is gone (the entry's generation moved on: lend_table.h). Otherwise a
 * copy lives until we borrow that entry again, and the socket of a
 * connection the worker closed stays open (CLOSE_WAIT) in every backend
 * that once borrowed it. */
void close_stale_copy(void)
{
    static int next = 0;
    if (next >= lend_table_capacity())
        next = 0;
    const CopiedSocket &c = copies[next];
    if (c.fd >= 0 && lend_generation(pg_atomic_read_u64(&lend_entry(next)->word)) != c.generation)
        forget_copy(next);
    next++;
}

/* Our copy of entry i's socket (and its wait set), made if needed; -1 if
 * it cannot be had. */
int socket_copy(int i, const LendEntry *e, uint64 generation)
{
    CopiedSocket &c = copies[i];
    if (c.fd >= 0 && c.generation == generation)
        return c.fd;
    forget_copy(i);
    if (!AcquireExternalFD())
        return -1; /* near max_files_per_process: through the worker */
    int pidfd = int(syscall(SYS_pidfd_open, e->pid, 0));
    int fd = pidfd >= 0 ? int(syscall(SYS_pidfd_getfd, pidfd, e->fd, 0)) : -1;
    int err = errno;
    if (pidfd >= 0)
        close(pidfd);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || uint64(st.st_ino) != e->ino) {
        if (fd >= 0)
            close(fd);
        ReleaseExternalFD();
        if (fd < 0 && (err == ENOSYS || err == EPERM || err == EACCES)) {
            copying_refused = true;
            ereport(DEBUG1, (errmsg("bgw_proxy: cannot copy a worker's socket: %s; calls go through the "
                                    "workers", strerror(err))));
        }
        return -1;
    }
    c.fd = fd;
    c.generation = generation;
    PG_TRY();
    {
        c.wait = CreateWaitEventSet(TopMemoryContext, 3);
        AddWaitEventToSet(c.wait, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, nullptr);
        AddWaitEventToSet(c.wait, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, nullptr, nullptr);
        c.socket_pos = AddWaitEventToSet(c.wait, WL_SOCKET_READABLE, fd, nullptr, nullptr);
    }
    PG_CATCH();
    {
        forget_copy(i);
        PG_RE_THROW();
    }
    PG_END_TRY();
    return fd;
}


/* Each entry a worker may have parked a connection in (below its region's
 * high-water mark, lend_table.h), our own worker's region first, so the
 * backends spread over the workers' connections; until f returns true. */
template <typename F>
void for_each_lendable(F f)
{
    int nworkers = proxy_shared->nworkers;
    int own = MyProcPid % nworkers;
    for (int k = 0; k < nworkers; k++) {
        int w = (own + k) % nworkers;
        int first = w * kLendPerWorker;
        int end = first + lend_region_used(w);
        for (int i = first; i < end; i++)
            if (f(i, lend_entry(i)))
                return;
    }
}

/* Borrow a parked connection of this key (hash: lend_key_hash) and
 * version: its entry (our socket copy in *fd), or -1. */
int borrow(Borrowed &b, const char *key, uint32 len, uint64 hash, int64 version, int *fd)
{
    int found = -1;
    for_each_lendable([&](int i, LendEntry *e) {
        uint64 w = pg_atomic_read_u64(&e->word);
        if (lend_state(w) != LEND_PARKED)
            return false;
        pg_read_barrier();
        if (e->key_hash != hash)
            return false;
        if (!pg_atomic_compare_exchange_u64(&e->word, &w, lend_word(lend_generation(w), LEND_LENT)))
            return false;
        b.entry = i;
        b.word = lend_word(lend_generation(w), LEND_LENT);
        /* ours: the fields are stable now */
        if (e->key_len != len || memcmp(e->key, key, len) != 0 || e->config_version != version) {
            give_back(b, true);
            return false;
        }
        b.cancel_known = e->cancel_known;
        b.cancel_pid = e->cancel_pid;
        b.cancel_key = e->cancel_key;
        b.fd = -1;
        *fd = socket_copy(i, e, lend_generation(w));
        b.fd = *fd;
        if (*fd < 0) {
            give_back(b, true);
            return copying_refused; /* then none will do */
        }
        if (!socket_quiet(*fd)) {
            e->drain = false;
            give_back(b, false); /* its worker closes it */
            return false;
        }
        found = i;
        return true;
    });
    return found;
}

/* Whether the pool has every connection it may have: lent to backends, or
 * held by the workers (live entries), up to the limit. Only when nothing
 * was parked, so not on the common path. */
bool pool_full(uint64 hash, int limit)
{
    int lent = 0, live = 0;
    for_each_lendable([&](int, LendEntry *e) {
        bool is_lent = lend_state(pg_atomic_read_u64(&e->word)) == LEND_LENT;
        bool is_live = pg_atomic_read_u32(&e->live) != 0;
        if (is_lent || is_live) {
            pg_read_barrier();
            if (e->key_hash == hash) {
                lent += is_lent;
                live += is_live;
            }
        }
        return false;
    });
    return lent >= limit || live >= limit;
}

/*
 * Borrow a connection of the pool, waiting for one when the pool has every
 * connection it may have (the limit: per worker, times the workers) and
 * none is parked: a backend that gives one back, or a worker that parks
 * one, signals its channel (lend_table.h), which wakes the longest waiter.
 * -1 when none is parked and the pool may still grow (a worker opens
 * one), or when we may not wait: the call goes through a worker. Waits
 * at most bgw_proxy.pool_wait_timeout, as a worker's queue does.
 */
int borrow_or_wait(const CallRequest *req, Borrowed &b, const char *key, uint32 len, uint64 hash, int64 version,
                   bool may_wait, int *fd)
{
    int limit = (req->max_connections > 0 ? req->max_connections : guc_max_pool_connections) *
                proxy_shared->nworkers;
    TimestampTz give_up = 0;
    ConditionVariable *channel = lend_channel(hash);
    for (;;) {
        int entry = borrow(b, key, len, hash, version, fd);
        if (entry >= 0 || copying_refused || !may_wait || !pool_full(hash, limit)) {
            stop_waiting();
            return entry;
        }
        if (waiting_in < 0) {
            TimestampTz now = GetCurrentTimestamp();
            if (guc_pool_wait_timeout_ms > 0)
                give_up = TimestampTzPlusMilliseconds(now, guc_pool_wait_timeout_ms);
            /* on the channel's list first, then look again: a connection
             * given back before we were on it signalled someone else.
             * Shown in pg_stat_bgw_proxy.calls_waiting and longest_wait
             * (taken off by stop_waiting, also on the error and exit
             * paths). */
            waiting_slot = request_slot(call_slot_index());
            lend_channel_note_waiter(hash);
            ConditionVariablePrepareToSleep(channel);
            pg_atomic_write_u64(&waiting_slot->direct_wait_since, uint64(now));
            pg_write_barrier();
            pg_atomic_write_u32(&waiting_slot->direct_wait_stat, uint32(b.stat + 1));
            waiting_in = b.stat;
            pg_atomic_fetch_add_u32(&pool_stat(waiting_in)->direct_waiting, 1);
            continue;
        }
        /* checks for interrupts; 1 s: a safety net (the channel's
         * signalling, lend_table.h, wakes the pool's waiter) */
        (void) ConditionVariableTimedSleep(channel, 1000, PG_WAIT_EXTENSION);
        if (give_up && GetCurrentTimestamp() >= give_up)
            ereport(ERROR, (errcode(ERRCODE_TOO_MANY_CONNECTIONS),
                            errmsg("timed out waiting for a pooled connection"),
                            errdetail("Every connection of this pool (bgw_proxy.max_pool_connections or the "
                                      "cluster's max_connections) stayed busy for bgw_proxy.pool_wait_timeout.")));
    }
}

/* Wait until the socket is readable (or writable), serving interrupts;
 * false when the query timeout passed. */
bool wait_socket(int entry, bool for_write, TimestampTz deadline)
{
    CopiedSocket &c = copies[entry];
    long timeout = -1;
    if (deadline) {
        long secs;
        int usecs;
        TimestampDifference(GetCurrentTimestamp(), deadline, &secs, &usecs);
        timeout = secs * 1000 + usecs / 1000;
        if (timeout <= 0 && GetCurrentTimestamp() >= deadline)
            return false;
    }
    if (for_write)
        ModifyWaitEvent(c.wait, c.socket_pos, WL_SOCKET_WRITEABLE, nullptr);
    WaitEvent ev;
    (void) WaitEventSetWait(c.wait, timeout, &ev, 1, PG_WAIT_EXTENSION);
    if (for_write)
        ModifyWaitEvent(c.wait, c.socket_pos, WL_SOCKET_READABLE, nullptr);
    ResetLatch(MyLatch);
    CHECK_FOR_INTERRUPTS();
    return true;
}

/* Our own error about the target, raised as a worker would relay it: the
 * same fields and context lines either way. */
[[noreturn]] void fail_target(const CallRequest *req, Borrowed &b, const char *sqlstate, const char *message,
                              const char *detail, bool reusable = false)
{
    RemoteMessage m;
    memset(&m, 0, sizeof(m));
    memcpy(m.sqlstate, sqlstate, 6);
    m.message = pstrdup(message);
    m.detail = detail ? pstrdup(detail) : nullptr;
    m.severity = pstrdup("ERROR");
    count_call(b, &m);
    give_back(b, reusable);
    call_raise_remote(req, b.target, false, m);
    pg_unreachable();
}

[[noreturn]] void lost_connection(const CallRequest *req, Borrowed &b, const char *why)
{
    fail_target(req, b, "08006", "lost connection to the remote server", why);
}

[[noreturn]] void timed_out(const CallRequest *req, Borrowed &b)
{
    fail_target(req, b, "57014", "canceling statement due to query_timeout expired",
                "bgw_proxy cancelled the remote statement and closed its connection.");
}

[[noreturn]] void violation(Borrowed &b, const char *what)
{
    give_back(b, false);
    ereport(ERROR, (errcode(ERRCODE_PROTOCOL_VIOLATION),
                    errmsg("bgw_proxy: unexpected %s from the remote server", what)));
}

/* Send all of buf; false if the connection failed before any of it went. */
void send_all(const CallRequest *req, Borrowed &b, const StringInfoData &buf, TimestampTz deadline)
{
    b.sending = true;
    int off = 0;
    while (off < buf.len) {
        ssize_t n = send(b.fd, buf.data + off, size_t(buf.len - off), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            off += int(n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!wait_socket(b.entry, true, deadline))
                timed_out(req, b);
            continue;
        }
        lost_connection(req, b, n < 0 ? strerror(errno) : "could not send data to the server");
    }
}

/* The fields of an ErrorResponse or NoticeResponse, palloc'd. */
bool remote_message(const pgwire::Message &msg, RemoteMessage &m)
{
    memset(&m, 0, sizeof(m));
    memcpy(m.sqlstate, "XX000", 6);
    return pgwire::each_field(msg, [&m](char code, const char *value) {
        char *v = *value ? pstrdup(value) : nullptr;
        switch (code) {
        case 'C':
            if (strlen(value) == 5)
                memcpy(m.sqlstate, value, 6);
            break;
        case 'V': m.severity = v; return;
        case 'M': m.message = v; return;
        case 'D': m.detail = v; return;
        case 'H': m.hint = v; return;
        case 'W': m.context = v; return;
        default: break;
        }
        if (v)
            pfree(v);
    });
}

/* Whether entry s is the statistics entry of this caller, partition and
 * remote user (the identity a worker claims it for, pool_stats_worker.cpp),
 * read without its lock by the changecount protocol (pool_stats.h). */
bool stat_is(PoolStat *s, Oid roleid, const char *cluster, uint32 partition, const char *user, uint64 connect_hash)
{
    uint32 before = pg_atomic_read_u32(&s->changecount);
    if (before & 1)
        return false;
    pg_read_barrier();
    bool same = s->used && s->dbid == MyDatabaseId && s->roleid == roleid && s->partition == partition &&
                s->connect_hash == connect_hash && strncmp(s->cluster, cluster, NAMEDATALEN) == 0 &&
                strncmp(s->remote_user, user, NAMEDATALEN) == 0;
    pg_read_barrier();
    return same && pg_atomic_read_u32(&s->changecount) == before;
}

/* The statistics entry a worker keeps for this target's pool, or -1
 * (none yet: the call then goes through a worker, which makes one). The
 * last one found for the partition is tried first. */
int stat_entry(const CallRequest *req, const CallTarget &tg)
{
    static int found[64]; /* by partition: the last one found (checked before use) */
    int &last = found[tg.partition % 64];
    const char *cluster = req->cluster_name ? req->cluster_name : "";
    const char *user = tg.user ? tg.user : "";
    /* as the worker computes it for a CONNECT function (0 for a cluster) */
    uint64 connect_hash = *cluster ? 0 : uint64(std::hash<std::string_view>()(std::string_view(tg.connstr))) | 1;
    Oid roleid = GetUserId();
    if (last >= 0 && last < proxy_shared->npool_stats &&
        stat_is(pool_stat(last), roleid, cluster, tg.partition, user, connect_hash))
        return last;
    for (int i = 0; i < proxy_shared->npool_stats; i++)
        if (stat_is(pool_stat(i), roleid, cluster, tg.partition, user, connect_hash))
            return last = i;
    return -1;
}

/*
 * Binary results, as a worker decides them (pool/connection.cpp): only
 * where every column the remote returns is of a binary-safe built-in type
 * and exactly the declared one. A worker learns that once per prepared
 * statement; a direct call's statement is unnamed, so a statement's first
 * call in a backend goes through a worker, whose answer says binary or not
 * (direct_call_learn), remembered per query and declared types. Each call's
 * own description is checked again before a binary row is decoded.
 */
uint64 statement_hash(const CallRequest *req)
{
    uint64 h = hash_bytes_extended(reinterpret_cast<const unsigned char *>(req->query), int(strlen(req->query)), 0);
    for (int i = 0; i < req->nresult_columns; i++) {
        h = hash_combine64(h, hash_bytes_extended(reinterpret_cast<const unsigned char *>(req->result_names[i]),
                                                  int(strlen(req->result_names[i])), req->result_types[i]));
    }
    return h | 1;
}

/* The columns are exactly the declared types, each binary-safe. */
bool columns_match(const CallRequest *req, int n, const proto::Column *cols)
{
    if (n == 0 || req->nresult_columns == 0)
        return false;
    bool scalar = req->nresult_columns == 1 && req->result_names[0][0] == '\0';
    for (int i = 0; i < n; i++) {
        Oid declared = 0;
        if (scalar)
            declared = n == 1 ? req->result_types[0] : 0;
        else
            for (int k = 0; k < req->nresult_columns; k++)
                if (cols[i].name.len == strlen(req->result_names[k]) &&
                    memcmp(cols[i].name.data, req->result_names[k], cols[i].name.len) == 0)
                    declared = req->result_types[k];
        if (!binary_safe_type(cols[i].type) || declared != cols[i].type)
            return false;
    }
    return true;
}

/* Binary may be asked for at all: as for a worker's prepared statement. */
bool binary_allowed(const CallRequest *req, const LendEntry *e)
{
    return guc_remote_prepare && !req->disable_binary && e->server_version >= 100000;
}


/* Count the call (before its connection is given back): an error, or a
 * call its caller gave up (cancel, an error of its own, exit). */
void count_call(const Borrowed &b, const RemoteMessage *error, bool cancelled)
{
    const Tally &t = b.t;
    if (b.target == 0) /* a call, served by its first target's worker */
        pg_atomic_fetch_add_u64(&worker_state(lend_entry(b.entry)->worker)->served, 1);
    if (b.stat < 0)
        return;
    PoolStat *s = pool_stat(b.stat);
    if (cancelled)
        pg_atomic_fetch_add_u64(&s->cancels, 1);
    long secs;
    int usecs;
    TimestampDifference(t.started, GetCurrentTimestamp(), &secs, &usecs);
    pg_atomic_fetch_add_u64(&s->calls, 1);
    pg_atomic_fetch_add_u64(&s->rows, t.rows);
    pg_atomic_fetch_add_u64(&s->bytes_sent, t.bytes_sent);
    pg_atomic_fetch_add_u64(&s->bytes_received, t.bytes_received);
    pg_atomic_fetch_add_u64(&s->time_us, uint64(secs) * 1000000 + uint64(usecs));
    if (t.binary)
        pg_atomic_fetch_add_u64(&s->binary_calls, 1);
    if (error) {
        pg_atomic_fetch_add_u64(&s->errors, 1);
        pool_stat_note_error(s, error->message ? error->message : "", GetCurrentTimestamp());
    }
}

/* A direct call's prepared statement: "bgwd_" and the statement's hash in
 * 16 hex digits (written by hand: this runs on every call). */
void statement_name(char (&buf)[32], uint64 statement)
{
    static const char digits[] = "0123456789abcdef";
    memcpy(buf, "bgwd_", 5);
    for (int i = 15; i >= 0; i--, statement >>= 4)
        buf[5 + i] = digits[statement & 15];
    buf[21] = '\0';
}

/* Send b's target its statement: prepared once per connection, as a
 * worker does (bgw_proxy.remote_prepare), when `named`, else unnamed. */
void send_statement(const CallRequest *req, Borrowed &b, TimestampTz deadline, bool named)
{
    const CallTarget &tg = req->targets[b.target];
    StringInfoBuf out;
    initStringInfo(&out.si);
    const char **values = (const char **) palloc0(sizeof(char *) * (tg.nparams + 1));
    int *lengths = (int *) palloc0(sizeof(int) * (tg.nparams + 1));
    uint64 bytes = strlen(req->query);
    for (int i = 0; i < tg.nparams; i++) {
        values[i] = tg.values[i];
        lengths[i] = values[i] ? int(strlen(values[i])) : 0;
        bytes += uint64(lengths[i]);
    }
    b.t.bytes_sent = bytes;
    LendEntry *e = lend_entry(b.entry);
    char name[32] = "", close_name[32];
    const char *close = nullptr, *parse = req->query;
    b.named = named;
    b.parse_slot = -1;
    if (named) {
        int slot = int(b.statement % kDirectPrepared);
        statement_name(name, b.statement);
        if (e->prepared[slot] == b.statement) {
            parse = nullptr;
        } else {
            if (e->prepared[slot] != 0) {
                statement_name(close_name, e->prepared[slot]);
                close = close_name;
                e->prepared[slot] = 0;
            }
            b.parse_slot = slot;
        }
    }
    pgwire::MessageWriter<StringInfoBuf>(out).statement(name, close, parse, tg.nparams, values, lengths,
                                                        b.ask_binary ? 1 : 0);
    send_all(req, b, out.si, deadline);
    b.sent = true;
    pfree(out.si.data);
    pfree(values);
    pfree(lengths);
}

/* Read and deliver b's target's answer until ReadyForQuery; the
 * connection is then given back, and a remote error raised. just_sent:
 * the statement went a moment ago, so its answer cannot be there yet: we
 * wait before the first read rather than try one that would fail. */
void receive(const CallRequest *req, const ResultSink *sink, Borrowed &b, TimestampTz deadline, bool just_sent)
{
    int entry = b.entry;
    int fd = b.fd;
    int target = b.target;
    uint64 statement = b.statement;
    bool binary = b.ask_binary;
    Tally &t = b.t;
    StringInfoData &in = b.in;
    initStringInfo(&in);
    enlargeStringInfo(&in, 8192);
    bool described = false, have_error = false, changed = false, resend = false;
    RemoteMessage error;
    wire::Span *fields = nullptr;
    int nfields = 0;
    proto::Column *columns = nullptr;

    for (;;) {
        /* every complete message in the buffer */
        pgwire::Message m;
        size_t used;
        int got;
        while ((got = pgwire::next_message(in.data + in.cursor, size_t(in.len - in.cursor), m, used)) == 1) {
            in.cursor += int(used);
            switch (m.type) {
            case '1': /* ParseComplete */
                if (b.parse_slot >= 0)
                    lend_entry(entry)->prepared[b.parse_slot] = statement;
                break;
            case '3': /* CloseComplete */
            case '2': /* BindComplete */
            case 'n': /* NoData */
            case 'C': /* CommandComplete */
            case 'I': /* EmptyQueryResponse */
            case 'S': /* ParameterStatus */
            case 'A': /* NotificationResponse */
                break;
            case 'T': {
                pgwire::RowDescription rd(m);
                uint16 n;
                if (described || !rd.count(n))
                    violation(b, "row description");
                columns = (proto::Column *) palloc0(sizeof(proto::Column) * (n + 1));
                for (int i = 0; i < n; i++) {
                    const char *name;
                    uint32 type;
                    int format;
                    if (!rd.column(name, type, format))
                        violation(b, "row description");
                    columns[i].name.data = name;
                    columns[i].name.len = uint32(strlen(name));
                    columns[i].type = type;
                    columns[i].format = uint8(format);
                }
                if (!rd.at_end())
                    violation(b, "row description");
                nfields = n;
                fields = (wire::Span *) palloc0(sizeof(wire::Span) * (n + 1));
                described = true;
                bool match = columns_match(req, n, columns);
                if (binary && !match) {
                    /* the remote's result changed since the verdict: rows
                     * in a binary form we cannot read are skipped */
                    changed = true;
                    lend_verdict_set(statement, false);
                    break;
                }
                t.binary = binary;
                sink->describe(sink->arg, target, n, columns);
                break;
            }
            case 'D': {
                pgwire::DataRow row(m);
                uint16 n;
                if (!described || !row.count(n) || n != nfields)
                    violation(b, "data row");
                t.rows++;
                if (changed)
                    break;
                for (int i = 0; i < n; i++) {
                    const char *data;
                    int32 len;
                    if (!row.field(data, len))
                        violation(b, "data row");
                    fields[i].data = data;
                    fields[i].len = len < 0 ? 0 : uint32(len);
                    fields[i].is_null = len < 0;
                    t.bytes_received += len < 0 ? 0 : uint64(len);
                }
                if (!row.at_end())
                    violation(b, "data row");
                sink->row(sink->arg, target, n, fields);
                break;
            }
            case 'E':
                if (have_error || !remote_message(m, error))
                    violation(b, "error message");
                have_error = true;
                if (b.named && !described &&
                    (strcmp(error.sqlstate, "26000") == 0 || strcmp(error.sqlstate, "42P05") == 0)) {
                    /* our statement is not there, or another is: a
                     * transaction-mode pooler hands out other sessions.
                     * Nothing ran; the statement goes again unnamed, and
                     * this connection's direct calls prepare no more. */
                    LendEntry *e = lend_entry(entry);
                    e->no_prepare = true;
                    memset(e->prepared, 0, sizeof(e->prepared));
                    resend = true;
                }
                break;
            case 'N': {
                RemoteMessage notice;
                if (!remote_message(m, notice))
                    violation(b, "notice");
                call_raise_remote(req, target, true, notice);
                break;
            }
            case 'Z':
                if (m.len != 1 || in.cursor != in.len)
                    violation(b, "ready for query");
                if (m.body[0] != 'I')
                    violation(b, "transaction state"); /* an open transaction cannot be shared */
                if (changed && !have_error)
                    fail_target(req, b, "0A000", "the remote result's columns changed since the last call",
                                "Its rows were not used; calling again asks for them in text.", true);
                if (resend) {
                    resend = have_error = false;
                    b.sent = false;
                    send_statement(req, b, deadline, false);
                    continue;
                }
                count_call(b, have_error ? &error : nullptr);
                give_back(b, true);
                if (have_error)
                    call_raise_remote(req, target, false, error);
                sink->target_done(sink->arg, target);
                pfree(in.data);
                in.data = nullptr;
                return;
            default:
                violation(b, "message");
            }
        }
        if (got < 0)
            violation(b, "message length");
        /* room for more: what was read is moved to the front */
        if (in.cursor > 0) {
            memmove(in.data, in.data + in.cursor, size_t(in.len - in.cursor));
            in.len -= in.cursor;
            in.cursor = 0;
        }
        if (in.maxlen - in.len < 8192)
            enlargeStringInfo(&in, 8192);
        if (just_sent) {
            just_sent = false;
            if (!wait_socket(entry, false, deadline))
                timed_out(req, b);
        }
        ssize_t n = recv(fd, in.data + in.len, size_t(in.maxlen - in.len - 1), MSG_DONTWAIT);
        if (n > 0) {
            in.len += int(n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!wait_socket(entry, false, deadline))
                timed_out(req, b);
            continue;
        }
        if (have_error) {
            /* the remote said why it ended the session (FATAL) */
            count_call(b, &error);
            give_back(b, false);
            call_raise_remote(req, target, false, error);
        }
        lost_connection(req, b, n < 0 ? strerror(errno) : "server closed the connection unexpectedly");
    }
}

} // namespace

bool direct_call_binary(const CallRequest *req, int ncolumns, const proto::Column *columns)
{
    bool binary = ncolumns > 0;
    for (int i = 0; i < ncolumns; i++)
        binary = binary && columns[i].format == 1;
    return binary && columns_match(req, ncolumns, columns);
}

void direct_call_learn(const CallRequest *req, bool binary) { lend_verdict_set(statement_hash(req), binary); }

bool direct_call_active(void) { return nheld > 0; }

namespace {

/* Where b's stream stands after what we read: the worker drains from
 * there (lend_table.h). True: it can be drained; *over: a ReadyForQuery
 * is among what we read and nothing follows it (the connection is idle). */
bool drain_point(const Borrowed &b, LendEntry *e, bool *over)
{
    *over = false;
    if (!b.sent)
        return false;
    /* nothing read yet (a later target of the call): from the start */
    const char *p = b.in.data ? b.in.data + b.in.cursor : nullptr;
    size_t avail = b.in.data ? size_t(b.in.len - b.in.cursor) : 0;
    for (;;) {
        if (avail < 5) {
            e->drain_skip = 0;
            e->drain_head_len = uint32(avail);
            if (avail > 0)
                memcpy(e->drain_head, p, avail);
            return true;
        }
        uint32 len = pgwire::get_u32(p + 1);
        if (len < 4)
            return false;
        if (avail < size_t(len) + 1) {
            e->drain_skip = size_t(len) + 1 - avail;
            e->drain_head_len = 0;
            return true;
        }
        if (p[0] == 'Z') {
            *over = avail == size_t(len) + 1 && len == 5 && p[5] == 'I';
            return false;
        }
        p += len + 1;
        avail -= len + 1;
    }
}

/* The connections borrowed for targets that sent nothing go back idle. */
void give_back_unsent(void)
{
    for (int i = 0; i < nheld; i++)
        if (!held[i].sending)
            give_back(held[i], true);
    nheld = 0;
}

} // namespace

void direct_call_abandon(void)
{
    if (!proxy_shared)
        return;
    stop_waiting();
    /* exiting (a terminated session, a server shutting down, when the
     * workers may be gone already): we end what we started, every
     * target's statement cancelled at once */
    CancelTarget ending[kDirectTargets];
    bool over[kDirectTargets];
    int nending = 0;
    for (int i = 0; i < nheld; i++) {
        Borrowed &b = held[i];
        over[i] = true;
        if (b.entry < 0 || !b.sending)
            continue;
        count_call(b, nullptr, true);
        LendEntry *e = lend_entry(b.entry);
        e->drain = drain_point(b, e, &over[i]);
        if (proc_exit_inprogress && !over[i] && b.fd >= 0) {
            if (b.cancel_known)
                ending[nending++] = {b.fd, b.cancel_pid, b.cancel_key};
            e->drain = false;
        }
    }
    send_cancels(ending, nending);
    for (int i = 0; i < nheld; i++) {
        Borrowed &b = held[i];
        if (b.entry < 0)
            continue;
        if (!b.sending) {
            give_back(b, true); /* nothing went out: as it was borrowed */
            continue;
        }
        if (proc_exit_inprogress && !over[i] && b.fd >= 0) {
            send_terminate(b.fd);
            b.fd = -1; /* done: give_back need not */
        }
        give_back(b, over[i]);
    }
    nheld = 0;
}

/*
 * A call with several targets (RUN ON ALL, SPLIT, RUN ON an array) runs
 * direct only if a connection of every target's pool can be had (else
 * those borrowed go back untouched and a worker runs the call). The
 * statement is sent to all of them, then their answers are read in
 * target order, each one's rows waiting in its socket meanwhile: results
 * come in partition order, in bounded memory. An error of one target ends
 * the call: the targets not read yet are given back to be drained.
 * partial_results (a failed target does not fail the call) is left to
 * the workers.
 */
bool direct_call_run(const CallRequest *req, const ResultSink *sink)
{
    int n = req->ntargets;
    if (!guc_direct_calls || copying_refused || guc_debug_fault != 0 || n < 1 || n > kDirectTargets ||
        (n > 1 && req->partial_results))
        return false;
    int stats[kDirectTargets];
    for (int i = 0; i < n; i++) {
        const CallTarget &tg = req->targets[i];
        if (strchr(tg.connstr, ',') != nullptr)
            return false; /* perhaps several hosts: nodes are the worker's */
        stats[i] = stat_entry(req, tg);
        if (stats[i] < 0)
            return false; /* the first call of this pool: its worker starts its statistics */
    }
    uint64 statement = statement_hash(req);
    int verdict = lend_verdict(statement);
    if (verdict < 0)
        return false; /* not known yet: a worker's answer tells whether this
                       * statement's results come in binary (direct_call_learn) */
    if (!copies) {
        copies = (CopiedSocket *) MemoryContextAllocZero(TopMemoryContext,
                                                         sizeof(CopiedSocket) * lend_table_capacity());
        for (int i = 0; i < lend_table_capacity(); i++)
            copies[i].fd = -1;
    }
    /* a CONNECT function's configuration is its string: in the key already */
    int64 version = req->cluster_name ? req->config_version : -1;

    /* the targets' pool keys; borrowed in the order of their hashes */
    char **keys = (char **) palloc(sizeof(char *) * n);
    uint32 *lens = (uint32 *) palloc(sizeof(uint32) * n);
    uint64 *hashes = (uint64 *) palloc(sizeof(uint64) * n);
    int *order = (int *) palloc(sizeof(int) * n);
    bool fits = true;
    for (int i = 0; i < n; i++) {
        const CallTarget &tg = req->targets[i];
        const char *user = tg.user ? tg.user : "";
        const char *password = tg.password ? tg.password : "";
        StringInfoBuf key;
        initStringInfo(&key.si);
        append_pool_key(key, tg.connstr, strlen(tg.connstr), user, strlen(user), password, strlen(password),
                        GetDatabaseEncodingName(), GetUserId(), tg.require_password);
        keys[i] = key.si.data;
        lens[i] = uint32(key.si.len);
        hashes[i] = lend_key_hash(keys[i], lens[i]);
        fits = fits && key.si.len <= kLendKeyLen;
        int k = i; /* insertion sort: a handful of targets */
        for (; k > 0 && hashes[order[k - 1]] > hashes[i]; k--)
            order[k] = order[k - 1];
        order[k] = i;
    }
    /* what the error and exit paths look at, from the moment one is borrowed */
    for (int i = 0; i < n; i++) {
        Borrowed &b = held[i];
        b.entry = -1;
        b.fd = -1;
        b.target = i;
        b.stat = stats[i];
        b.statement = statement;
        b.sending = b.sent = false;
        b.in.data = nullptr;
        b.t = Tally();
    }
    nheld = fits ? n : 0;
    /*
     * A backend holding connections waits only for a pool whose key hash
     * is above theirs: every backend waits in the same order, so none
     * waits for another that waits for it (the workers hold a connection
     * only while its statement runs). No waiting for a second connection
     * of a pool it holds one of: the call goes through a worker.
     */
    for (int k = 0; k < nheld; k++) {
        int i = order[k];
        bool may_wait = k == 0 || hashes[i] != hashes[order[k - 1]];
        int fd;
        if (borrow_or_wait(req, held[i], keys[i], lens[i], hashes[i], version, may_wait, &fd) < 0) {
            give_back_unsent();
            break;
        }
    }
    for (int i = 0; i < n; i++)
        pfree(keys[i]);
    pfree(keys);
    pfree(lens);
    pfree(hashes);
    pfree(order);
    if (nheld == 0)
        return false;

    TimestampTz started = GetCurrentTimestamp();
    TimestampTz deadline = req->query_timeout_ms > 0 ? TimestampTzPlusMilliseconds(started, req->query_timeout_ms)
                                                     : 0;
    for (int i = 0; i < n; i++) {
        Borrowed &b = held[i];
        LendEntry *e = lend_entry(b.entry);
        b.t.started = started;
        b.ask_binary = verdict == 1 && binary_allowed(req, e);
        pg_atomic_fetch_add_u64(&e->calls, 1);
        send_statement(req, b, deadline, guc_remote_prepare && !e->no_prepare);
    }
    /* the first target's answer is the one still on its way; the others
     * have had the time to arrive while it was read */
    for (int i = 0; i < n; i++)
        receive(req, sink, held[i], deadline, i == 0);
    nheld = 0;
    close_stale_copy();
    return true;
}

} // namespace bgw
