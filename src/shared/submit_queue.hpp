/*
 * submit_queue.hpp — the submission queue between backends and one worker.
 *
 * A Boost.Lockfree multi-producer/multi-consumer queue with a compile-time
 * capacity: its nodes live inside the object (a fixed-size freelist addressed
 * by 16-bit indices, not pointers) and it never touches the heap, so it can
 * be placement-new'd into the shared segment once, by the postmaster, and
 * used by every process. Producers are backends; the only consumer is the
 * worker that owns the queue. Entries are 64-bit tickets (slot index and the
 * slot's generation), so a stale ticket is recognised and dropped.
 *
 * Pure C++: no PostgreSQL header, unit-tested in test/unit.
 */
#pragma once

#include "common/pure_cxx.h"

#include <boost/lockfree/queue.hpp>
#include <cstdint>
#include <new>

namespace bgw {

/* Tickets a queue can hold. A full queue is backpressure: push() fails and
 * the backend waits and retries; it never blocks the worker. */
constexpr std::size_t kSubmitQueueCapacity = 1024;

struct Ticket {
    uint32_t slot;
    uint32_t generation;

    static uint64_t pack(Ticket t) { return (uint64_t(t.generation) << 32) | t.slot; }
    static Ticket unpack(uint64_t v) { return Ticket{uint32_t(v & 0xffffffffu), uint32_t(v >> 32)}; }
};

class SubmitQueue {
public:
    SubmitQueue() = default;
    SubmitQueue(const SubmitQueue &) = delete;
    SubmitQueue &operator=(const SubmitQueue &) = delete;

    /* Construct in place in raw (shared) memory of at least sizeof(SubmitQueue). */
    static SubmitQueue *create_at(void *where) { return new (where) SubmitQueue(); }

    /* True when push/pop never take a lock (checked once at startup). */
    bool is_lock_free() const { return q_.is_lock_free(); }

    /* Producer side. False when the queue is full. */
    bool push(Ticket t) { return q_.bounded_push(Ticket::pack(t)); }

    /* Consumer side. False when the queue is empty. */
    bool pop(Ticket &out)
    {
        uint64_t v;
        if (!q_.pop(v))
            return false;
        out = Ticket::unpack(v);
        return true;
    }

    bool empty() const { return q_.empty(); }

private:
    boost::lockfree::queue<uint64_t, boost::lockfree::capacity<kSubmitQueueCapacity>> q_;
};

} // namespace bgw
