/*
 * cancel_sender.cpp — see cancel_sender.hpp.
 */
#include "cancel_sender.hpp"

#include <condition_variable>
#include <csignal>
#include <deque>
#include <mutex>
#include <pthread.h>
#include <thread>

namespace bgw {

namespace {

struct CancelQueue {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::pair<PGcancel *, CancelDone>> pending;
};

void cancel_loop(CancelQueue *q)
{
    for (;;) {
        std::pair<PGcancel *, CancelDone> item;
        {
            std::unique_lock<std::mutex> lk(q->mu);
            q->cv.wait(lk, [q] { return !q->pending.empty(); });
            item = q->pending.front();
            q->pending.pop_front();
        }
        char errbuf[256];
        /* A failed cancel is not fatal: the worker's query/cancel timeouts
         * close the connection if the statement does not end. */
        (void) PQcancel(item.first, errbuf, sizeof(errbuf));
        PQfreeCancel(item.first);
        item.second->store(true, std::memory_order_release);
    }
}

/* Never destroyed: the thread may still use it while the process exits. */
CancelQueue *start_thread()
{
    auto *q = new CancelQueue();
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* the new thread inherits "all blocked" */
    try {
        std::thread(cancel_loop, q).detach();
    } catch (...) {
        pthread_sigmask(SIG_SETMASK, &old, nullptr); /* never leave the worker deaf */
        throw;
    }
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    return q;
}

CancelQueue *queue_instance = nullptr;

} // namespace

CancelDone send_cancel_async(PGconn *conn)
{
    PGcancel *c = PQgetCancel(conn);
    if (!c)
        return nullptr;
    try {
        auto done = std::make_shared<std::atomic<bool>>(false);
        if (!queue_instance)
            queue_instance = start_thread();
        {
            std::lock_guard<std::mutex> lk(queue_instance->mu);
            queue_instance->pending.emplace_back(c, done);
        }
        queue_instance->cv.notify_one();
        return done;
    } catch (...) {
        PQfreeCancel(c);
        return nullptr;
    }
}

} // namespace bgw
