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
    std::deque<PGcancel *> pending;
};

void cancel_loop(CancelQueue *q)
{
    for (;;) {
        PGcancel *c;
        {
            std::unique_lock<std::mutex> lk(q->mu);
            q->cv.wait(lk, [q] { return !q->pending.empty(); });
            c = q->pending.front();
            q->pending.pop_front();
        }
        char errbuf[256];
        /* A failed cancel is not fatal: the worker's query/cancel timeouts
         * close the connection if the statement does not end. */
        (void) PQcancel(c, errbuf, sizeof(errbuf));
        PQfreeCancel(c);
    }
}

/* Never destroyed: the thread may still use it while the process exits. */
CancelQueue *start_thread()
{
    auto *q = new CancelQueue();
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* the new thread inherits "all blocked" */
    std::thread(cancel_loop, q).detach();
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    return q;
}

CancelQueue *queue_instance = nullptr;

} // namespace

bool send_cancel_async(PGconn *conn)
{
    PGcancel *c = PQgetCancel(conn);
    if (!c)
        return false;
    try {
        if (!queue_instance)
            queue_instance = start_thread();
        {
            std::lock_guard<std::mutex> lk(queue_instance->mu);
            queue_instance->pending.push_back(c);
        }
        queue_instance->cv.notify_one();
        return true;
    } catch (...) {
        PQfreeCancel(c);
        return false;
    }
}

} // namespace bgw
