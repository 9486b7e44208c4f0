/*
 * socket_set.cpp — see socket_set.h.
 */
#include "worker/socket_set.h"

#include <cerrno>

#ifdef __linux__
#include <sys/epoll.h>
#include <unistd.h>
#endif

namespace bgw {

SocketSet::~SocketSet()
{
#ifdef __linux__
    if (epfd_ >= 0)
        close(epfd_);
#endif
}

bool SocketSet::open()
{
#ifdef __linux__
    epfd_ = epoll_create1(EPOLL_CLOEXEC);
    return epfd_ >= 0;
#else
    return false;
#endif
}

#ifdef __linux__
namespace {

uint32_t epoll_events(int events)
{
    return ((events & 1) ? EPOLLIN : 0) | ((events & 2) ? EPOLLOUT : 0);
}

} // namespace
#endif

void SocketSet::remove_from_epoll(uint64_t id, Reg &r) noexcept
{
#ifdef __linux__
    if (r.sock < 0)
        return;
    auto it = owner_.find(r.sock);
    if (it != owner_.end() && it->second == id) {
        /* still ours: remove it (if libpq closed it meanwhile, the kernel
         * already did, and this fails harmlessly) */
        epoll_event ev{};
        (void) epoll_ctl(epfd_, EPOLL_CTL_DEL, r.sock, &ev);
        owner_.erase(it);
    }
#else
    (void) id;
#endif
    r.sock = -1;
    r.events = 0;
}

void SocketSet::watch(PoolSocket *s, uint64_t id, int sock, int events) noexcept
{
#ifdef __linux__
    try {
        Reg &r = regs_.try_emplace(id, Reg{s, -1, 0}).first->second;
        r.owner = s;
        if (events == 0) {
            remove_from_epoll(id, r);
            return;
        }
        if (r.sock != sock)
            remove_from_epoll(id, r);
        epoll_event ev{};
        ev.events = epoll_events(events);
        ev.data.u64 = id;
        int op = r.sock == sock ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
        int rc = epoll_ctl(epfd_, op, sock, &ev);
        if (rc != 0 && errno == EEXIST)
            rc = epoll_ctl(epfd_, EPOLL_CTL_MOD, sock, &ev);
        else if (rc != 0 && errno == ENOENT)
            rc = epoll_ctl(epfd_, EPOLL_CTL_ADD, sock, &ev);
        if (rc != 0) {
            broken_ = true;
            return;
        }
        r.sock = sock;
        r.events = events;
        owner_[sock] = id; /* a stale owner of this number lost its socket */
    } catch (...) {
        broken_ = true;
    }
#else
    (void) s, (void) id, (void) sock, (void) events;
#endif
}

void SocketSet::forget(PoolSocket *s, uint64_t id) noexcept
{
    (void) s;
    auto it = regs_.find(id);
    if (it == regs_.end())
        return;
    remove_from_epoll(id, it->second);
    regs_.erase(it);
}

void SocketSet::reset()
{
    for (auto &[id, r] : regs_)
        remove_from_epoll(id, r);
    regs_.clear();
    owner_.clear();
    broken_ = false;
}

int SocketSet::ready(ReadyEvent *o, int max) noexcept
{
#ifdef __linux__
    epoll_event evs[64];
    if (max > 64)
        max = 64;
    int n = epoll_wait(epfd_, evs, max, 0);
    for (int i = 0; i < n; i++) {
        uint32_t e = evs[i].events;
        o[i].events = ((e & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP)) ? 1 : 0) | ((e & EPOLLOUT) ? 2 : 0);
        o[i].id = evs[i].data.u64;
    }
    return n < 0 ? 0 : n;
#else
    (void) o, (void) max;
    return 0;
#endif
}

PoolSocket *SocketSet::lookup(uint64_t id, int *events_out) const
{
    auto it = regs_.find(id);
    if (it == regs_.end() || it->second.sock < 0)
        return nullptr;
    *events_out = it->second.events;
    return it->second.owner;
}

} // namespace bgw
