/*
 * helper_threads.cpp — see helper_threads.hpp.
 */
#include "pool/helper_threads.hpp"

#include <condition_variable>
#include <csignal>
#include <deque>
#include <mutex>
#include <pthread.h>
#include <thread>

namespace bgw {

namespace {

struct TaskQueue {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::function<void()>> pending;
    int threads = 0;
    int idle = 0;
};

void helper_loop(TaskQueue *q)
{
    for (;;) {
        std::function<void()> task;
        {
            std::unique_lock<std::mutex> lk(q->mu);
            q->idle++;
            q->cv.wait(lk, [q] { return !q->pending.empty(); });
            q->idle--;
            task = std::move(q->pending.front());
            q->pending.pop_front();
        }
        try {
            task();
        } catch (...) {
            /* tasks must not throw; if one does, it must not abort the worker */
        }
    }
}

/* With every signal blocked while it is created, the thread inherits a
 * mask that keeps all signals for the worker's main thread. */
bool start_thread(TaskQueue *q)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    bool ok = true;
    try {
        std::thread(helper_loop, q).detach();
    } catch (...) {
        ok = false;
    }
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    return ok;
}

/* Never destroyed: threads may still use them while the process exits. */
TaskQueue *lanes[2] = {nullptr, nullptr};

} // namespace

bool run_on_helper_thread(HelperLane lane, std::function<void()> task)
{
    try {
        TaskQueue *&slot = lanes[lane == HelperLane::Cancel ? 0 : 1];
        if (!slot)
            slot = new TaskQueue();
        TaskQueue *q = slot;
        bool need_thread;
        {
            std::lock_guard<std::mutex> lk(q->mu);
            if (q->pending.size() >= kMaxPendingTasks)
                return false;
            q->pending.push_back(std::move(task));
            need_thread = q->idle < int(q->pending.size()) && q->threads < kMaxHelperThreads;
            if (need_thread)
                q->threads++;
        }
        if (need_thread && !start_thread(q)) {
            std::lock_guard<std::mutex> lk(q->mu);
            q->threads--;
            if (q->threads == 0) {
                /* nobody would ever run it */
                q->pending.clear();
                return false;
            }
        }
        q->cv.notify_one();
        return true;
    } catch (...) {
        return false;
    }
}

} // namespace bgw
