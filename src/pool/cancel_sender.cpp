/*
 * cancel_sender.cpp — see cancel_sender.hpp.
 */
#include "pool/cancel_sender.hpp"
#include "pool/helper_threads.hpp"

#include <arpa/inet.h>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <vector>

namespace bgw {

namespace {

constexpr uint32_t kCancelRequestCode = 80877102; /* protocol: 1234 << 16 | 5678 */

/* Where and what to send: the address the connection was made to, the
 * remote backend's pid and secret key. */
struct CancelTarget {
    sockaddr_storage addr;
    socklen_t len;
    uint32_t pid;
    uint32_t key;
};

/* The head of libpq's PGcancel (struct pg_cancel, libpq-int.h): the same
 * from libpq 9.x through 17 (18 makes the key variable-length). */
struct PgCancelHead {
    struct {
        sockaddr_storage addr;
        socklen_t len;
    } raddr; /* padded as libpq's own SockAddr is */
    int be_pid;
    int be_key;
};

bool same_address(const sockaddr_storage &a, socklen_t alen, const sockaddr_storage &b, socklen_t blen)
{
    if (a.ss_family != b.ss_family)
        return false;
    switch (a.ss_family) {
    case AF_INET: {
        auto &x = reinterpret_cast<const sockaddr_in &>(a);
        auto &y = reinterpret_cast<const sockaddr_in &>(b);
        return x.sin_port == y.sin_port && x.sin_addr.s_addr == y.sin_addr.s_addr;
    }
    case AF_INET6: {
        auto &x = reinterpret_cast<const sockaddr_in6 &>(a);
        auto &y = reinterpret_cast<const sockaddr_in6 &>(b);
        return x.sin6_port == y.sin6_port && memcmp(&x.sin6_addr, &y.sin6_addr, sizeof x.sin6_addr) == 0;
    }
    case AF_UNIX: {
        /* the peer's length is exact (the path and its NUL, or an abstract
         * name); libpq's may count the whole sockaddr_un */
        auto &x = reinterpret_cast<const sockaddr_un &>(a);
        auto &y = reinterpret_cast<const sockaddr_un &>(b);
        size_t path = offsetof(sockaddr_un, sun_path);
        if (blen <= path || alen < blen)
            return false;
        return memcmp(x.sun_path, y.sun_path, blen - path) == 0;
    }
    default:
        return false;
    }
}

/* Read the target from the PGcancel libpq made, and believe it only if it
 * agrees with what the API says: the libpq version has this layout, the
 * pid is PQbackendPID's and the address is the connected socket's peer. */
bool read_target(PGconn *conn, CancelTarget &t)
{
    int v = PQlibVersion();
    if (v < 100000 || v >= 180000)
        return false;
    PGcancel *c = PQgetCancel(conn);
    if (!c)
        return false;
    PgCancelHead head;
    memcpy(&head, c, sizeof head);
    PQfreeCancel(c);
    sockaddr_storage peer{};
    socklen_t peer_len = sizeof peer;
    if (head.raddr.len == 0 || head.raddr.len > sizeof head.raddr.addr || head.be_pid != PQbackendPID(conn) ||
        getpeername(PQsocket(conn), reinterpret_cast<sockaddr *>(&peer), &peer_len) != 0 ||
        !same_address(head.raddr.addr, head.raddr.len, peer, peer_len))
        return false;
    t.addr = head.raddr.addr;
    t.len = head.raddr.len;
    t.pid = uint32_t(head.be_pid);
    t.key = uint32_t(head.be_key);
    return true;
}

} // namespace

bool cancel_key_of(PGconn *conn, uint32_t &pid, uint32_t &key) noexcept
{
    CancelTarget t;
    if (!read_target(conn, t))
        return false;
    pid = t.pid;
    key = t.key;
    return true;
}

namespace {

void put32(unsigned char *p, uint32_t v)
{
    v = htonl(v);
    memcpy(p, &v, 4);
}

/* Where there is no target to read: the blocking PQcancel on a helper
 * thread, without a deadline. */
CancelTicket cancel_on_helper_thread(PGconn *conn)
{
    PGcancel *c = PQgetCancel(conn);
    if (!c)
        return nullptr;
    try {
        auto ticket = std::make_shared<std::atomic<CancelOutcome>>(CancelOutcome::Pending);
        bool queued = run_on_helper_thread(HelperLane::Cancel, [c, ticket] {
            char errbuf[256];
            bool sent = PQcancel(c, errbuf, sizeof(errbuf)) == 1;
            PQfreeCancel(c);
            ticket->store(sent ? CancelOutcome::Delivered : CancelOutcome::NotSent, std::memory_order_release);
        });
        if (queued)
            return ticket;
    } catch (...) {
    }
    PQfreeCancel(c);
    return nullptr;
}

} // namespace

/* One request: connect, send the packet, wait for the postmaster to close. */
class CancelRequest final : public PoolSocket {
public:
    CancelRequest() : PoolSocket(Kind::Cancel) {}
    ~CancelRequest() override
    {
        if (fd >= 0)
            ::close(fd);
    }
    int events() const { return phase == Phase::Closing ? 1 : 2; }

    enum class Phase { Connecting, Sending, Closing };
    Phase phase = Phase::Connecting;
    int fd = -1;
    uint64_t id = 0;
    unsigned char packet[16];
    size_t sent = 0;
    Clock::time_point deadline;
    CancelTicket ticket;
    bool ended = false;
    bool watched = false;
};

CancelSender::CancelSender() = default;

CancelSender::~CancelSender()
{
    for (auto &r : requests_)
        if (!r->ended)
            end(*r, CancelOutcome::Unknown);
}

void CancelSender::set_watcher(SocketWatcher *w) noexcept
{
    for (auto &r : requests_) {
        if (!r->watched)
            continue;
        if (watcher_)
            watcher_->forget(r.get(), r->id);
        if (w)
            w->watch(r.get(), r->id, r->fd, r->events());
    }
    watcher_ = w;
}

CancelTicket CancelSender::send(PGconn *conn, uint64_t id, Clock::time_point deadline) noexcept
{
    CancelTarget t;
    if (!read_target(conn, t))
        return cancel_on_helper_thread(conn);
    try {
        auto r = std::make_unique<CancelRequest>();
        r->ticket = std::make_shared<std::atomic<CancelOutcome>>(CancelOutcome::Pending);
        r->id = id;
        r->deadline = deadline;
        put32(r->packet, sizeof r->packet);
        put32(r->packet + 4, kCancelRequestCode);
        put32(r->packet + 8, t.pid);
        put32(r->packet + 12, t.key);
        requests_.push_back(nullptr); /* room first: nothing below throws */
        r->fd = ::socket(t.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (r->fd < 0) {
            requests_.pop_back();
            return nullptr;
        }
        CancelTicket ticket = r->ticket;
        CancelRequest &req = *r;
        requests_.back() = std::move(r);
        if (::connect(req.fd, reinterpret_cast<const sockaddr *>(&t.addr), t.len) == 0) {
            req.phase = CancelRequest::Phase::Sending;
        } else if (errno != EINPROGRESS) {
            end(req, CancelOutcome::NotSent); /* refused, unreachable, backlog full */
            return ticket;
        }
        req.watched = true;
        if (watcher_)
            watcher_->watch(&req, req.id, req.fd, req.events());
        return ticket;
    } catch (...) {
        if (!requests_.empty() && !requests_.back())
            requests_.pop_back();
        return nullptr;
    }
}

void CancelSender::end(CancelRequest &r, CancelOutcome outcome) noexcept
{
    if (r.ended)
        return;
    r.ended = true;
    if (r.watched && watcher_)
        watcher_->forget(&r, r.id);
    r.watched = false;
    if (r.fd >= 0)
        ::close(r.fd);
    r.fd = -1;
    r.ticket->store(outcome, std::memory_order_release);
}

void CancelSender::on_io(PoolSocket &s) noexcept
{
    auto &r = static_cast<CancelRequest &>(s);
    if (r.ended)
        return;
    if (r.phase == CancelRequest::Phase::Connecting) {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(r.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
            end(r, CancelOutcome::NotSent);
            return;
        }
        r.phase = CancelRequest::Phase::Sending;
    }
    if (r.phase == CancelRequest::Phase::Sending) {
        while (r.sent < sizeof r.packet) {
            ssize_t n = ::send(r.fd, r.packet + r.sent, sizeof r.packet - r.sent, MSG_NOSIGNAL);
            if (n > 0) {
                r.sent += size_t(n);
                continue;
            }
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return; /* still writable-wanted */
            /* nothing, or part of a packet, reached the postmaster: a
             * partial packet is not a request */
            end(r, CancelOutcome::NotSent);
            return;
        }
        r.phase = CancelRequest::Phase::Closing;
        if (watcher_)
            watcher_->watch(&r, r.id, r.fd, r.events());
        return;
    }
    /* Closing: the postmaster hangs up once it has passed the request on */
    char buf[64];
    for (;;) {
        ssize_t n = ::recv(r.fd, buf, sizeof buf, 0);
        if (n > 0)
            continue;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        end(r, CancelOutcome::Delivered);
        return;
    }
}

void CancelSender::on_timer(Clock::time_point now) noexcept
{
    for (auto it = requests_.begin(); it != requests_.end();) {
        CancelRequest &r = **it;
        if (!r.ended && r.deadline <= now)
            end(r, r.phase == CancelRequest::Phase::Closing ? CancelOutcome::Unknown : CancelOutcome::NotSent);
        if (r.ended)
            it = requests_.erase(it);
        else
            ++it;
    }
}

Clock::time_point CancelSender::next_deadline() const
{
    Clock::time_point t = Clock::time_point::max();
    for (const auto &r : requests_)
        t = std::min(t, r->ended ? Clock::now() : r->deadline); /* ended: destroy it (on_timer) */
    return t;
}

void CancelSender::for_each_socket(const std::function<void(int, int, PoolSocket *, uint64_t)> &fn) const
{
    for (const auto &r : requests_)
        if (!r->ended)
            fn(r->fd, r->events(), r.get(), r->id);
}

void CancelSender::finish(Clock::time_point until) noexcept
{
    std::vector<pollfd> fds;
    std::vector<CancelRequest *> reqs;
    for (;;) {
        /* past `until`, every request still on its way ends now */
        Clock::time_point now = Clock::now();
        on_timer(now >= until ? Clock::time_point::max() : now);
        if (requests_.empty())
            return;
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - now).count() + 1;
        try {
            fds.clear();
            reqs.clear();
            for (auto &r : requests_) {
                fds.push_back(pollfd{r->fd, short(r->events() == 1 ? POLLIN : POLLOUT), 0});
                reqs.push_back(r.get());
            }
        } catch (...) {
            left = 0; /* no memory to wait with: give up on them */
        }
        if (left <= 0) {
            on_timer(Clock::time_point::max());
            return;
        }
        int n = ::poll(fds.data(), fds.size(), int(std::min<long long>(left, 100)));
        for (size_t i = 0; n > 0 && i < fds.size(); i++)
            if (fds[i].revents)
                on_io(*reqs[i]);
    }
}

} // namespace bgw
