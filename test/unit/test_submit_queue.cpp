/*
 * Unit tests for submit_queue (the lock-free submission queue in shared memory).
 *
 * The cross-process test places the queue, with create_at(), in an anonymous
 * MAP_SHARED mapping and has forked children push concurrently while the
 * parent pops: that is how backends and a worker use it in the product.
 */
#include "shared/submit_queue.hpp"
#include "unit_test.hpp"

#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <sched.h>
#include <thread>
#include <vector>

using namespace bgw;

namespace {

using Clock = std::chrono::steady_clock;

/* Raw memory from mmap, filled with garbage so that create_at() must really
 * initialise everything; shared between processes across fork(). */
class SharedMem {
public:
    explicit SharedMem(size_t size) : size_(size)
    {
        void *p = mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        mem_ = p == MAP_FAILED ? nullptr : p;
        if (mem_)
            memset(mem_, 0xa5, size_);
    }
    ~SharedMem()
    {
        if (mem_)
            munmap(mem_, size_);
    }
    SharedMem(const SharedMem &) = delete;
    SharedMem &operator=(const SharedMem &) = delete;
    void *get() const { return mem_; }
    char *bytes() const { return static_cast<char *>(mem_); }

private:
    void *mem_ = nullptr;
    size_t size_;
};

/* A queue constructed in place in its own shared mapping, destroyed at the end. */
class QueueHolder {
public:
    QueueHolder() : mem_(sizeof(SubmitQueue)), q_(mem_.get() ? SubmitQueue::create_at(mem_.get()) : nullptr) {}
    ~QueueHolder()
    {
        if (q_)
            q_->~SubmitQueue();
    }
    SubmitQueue *get() const { return q_; }

private:
    SharedMem mem_;
    SubmitQueue *q_;
};

/* Number of tickets pushed before push() first fails (bounded by a guard). */
size_t fill(SubmitQueue &q, uint32_t generation = 7)
{
    size_t n = 0;
    while (n < 16 * kSubmitQueueCapacity && q.push(Ticket{uint32_t(n), generation}))
        n++;
    return n;
}

/* Waits for a child for at most `seconds`; kills it on timeout. Returns the
 * wait status, or -1 when it had to be killed. */
int wait_child(pid_t pid, double seconds)
{
    auto deadline = Clock::now() + std::chrono::duration<double>(seconds);
    int status = 0;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return status;
        if (r < 0)
            return -1;
        if (Clock::now() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
}

bool exited_ok(int status) { return status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0; }

/*
 * Accounting for the concurrent tests: producer p pushes tickets
 * {slot = p, generation = 0 .. per_producer-1}, in that order. Every ticket
 * must arrive exactly once, and each producer's tickets in the order pushed.
 */
struct Tally {
    Tally(int producers, uint32_t per_producer)
        : per(per_producer), count(size_t(producers) * per_producer, 0), next(producers, 0)
    {
    }
    uint32_t per;
    std::vector<int> count;
    std::vector<uint32_t> next; /* generation expected next from each producer */
    size_t received = 0, unknown = 0, out_of_order = 0;

    void take(Ticket t)
    {
        received++;
        if (t.slot >= next.size() || t.generation >= per) {
            unknown++;
            return;
        }
        count[size_t(t.slot) * per + t.generation]++;
        if (t.generation != next[t.slot])
            out_of_order++;
        next[t.slot] = t.generation + 1;
    }
    size_t lost() const
    {
        size_t n = 0;
        for (int c : count)
            n += c == 0;
        return n;
    }
    size_t duplicated() const
    {
        size_t n = 0;
        for (int c : count)
            n += c > 1;
        return n;
    }
};

#define CHECK_TALLY(t, expected_total)                                          \
    do {                                                                        \
        CHECK_EQ((t).received, (expected_total));                               \
        CHECK_EQ((t).unknown, 0u);                                              \
        CHECK_EQ((t).lost(), 0u);                                               \
        CHECK_EQ((t).duplicated(), 0u);                                         \
        CHECK_EQ((t).out_of_order, 0u);                                         \
    } while (0)

/* A push or pop that blocked would hang the binary: end it instead, naming
 * the test, after far longer than a passing run takes (well under a second).
 * fork() children do not inherit the alarm. */
extern "C" void on_watchdog(int)
{
    const char *pre = "FAIL watchdog: test ", *name = unit::state().test, *post = " hung\n";
    (void)!write(1, pre, strlen(pre));
    (void)!write(1, name, strlen(name));
    (void)!write(1, post, strlen(post));
    _exit(1);
}
const struct Watchdog {
    Watchdog()
    {
        setvbuf(stdout, nullptr, _IOLBF, 0); /* earlier FAIL lines survive the _exit */
        signal(SIGALRM, on_watchdog);
        alarm(60);
    }
} watchdog;

} // namespace

TEST(full_queue_push_does_not_block)
{
    /* The extra pushes run in a child, so that a push that blocked would be a
     * timeout here, not a hung test binary; the child reports through its
     * exit status. The parent fills with exactly kSubmitQueueCapacity pushes
     * (no push-until-failure), so it cannot block itself. */
    QueueHolder h;
    REQUIRE(h.get());
    SubmitQueue &q = *h.get();
    for (size_t i = 0; i < kSubmitQueueCapacity; i++)
        REQUIRE(q.push(Ticket{uint32_t(i), 9}));
    std::fflush(stdout);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        int failures = 0;
        for (int i = 0; i < 10000; i++)
            failures += !q.push(Ticket{1, 1});
        _exit(failures == 10000 ? 0 : 1);
    }
    int status = wait_child(pid, 4.0);
    CHECK(status != -1); /* finished in time */
    CHECK(exited_ok(status));
    Ticket out{};
    size_t n = 0;
    while (q.pop(out) && n < 2 * kSubmitQueueCapacity)
        n++;
    CHECK_EQ(n, kSubmitQueueCapacity); /* the child's pushes all failed: nothing slipped in */
}

TEST(lock_free)
{
    QueueHolder h;
    REQUIRE(h.get());
    CHECK(h.get()->is_lock_free());
}

TEST(ticket_pack_unpack_round_trips)
{
    const uint32_t vals[] = {0u, 1u, 2u, 0x7fffffffu, 0x80000000u, 0xfffffffeu, 0xffffffffu};
    for (uint32_t s : vals)
        for (uint32_t g : vals) {
            Ticket t = Ticket::unpack(Ticket::pack(Ticket{s, g}));
            CHECK_EQ(t.slot, s);
            CHECK_EQ(t.generation, g);
            if (unit::state().failed)
                return; /* one bad pair is enough */
        }
    /* the layout: generation in the high half, slot in the low half */
    CHECK_EQ(Ticket::pack(Ticket{0, 0}), uint64_t(0));
    CHECK_EQ(Ticket::pack(Ticket{0xffffffffu, 0}), uint64_t(0x00000000ffffffffull));
    CHECK_EQ(Ticket::pack(Ticket{0, 0xffffffffu}), uint64_t(0xffffffff00000000ull));
    CHECK_EQ(Ticket::pack(Ticket{0xffffffffu, 0xffffffffu}), ~uint64_t(0));
    CHECK_EQ(Ticket::pack(Ticket{0x01234567u, 0x89abcdefu}), uint64_t(0x89abcdef01234567ull));
    Ticket m = Ticket::unpack(~uint64_t(0));
    CHECK_EQ(m.slot, 0xffffffffu);
    CHECK_EQ(m.generation, 0xffffffffu);
    const uint64_t packed[] = {0, 1, 0xffffffffull, 0x100000000ull, 0x8000000080000000ull, ~uint64_t(0)};
    for (uint64_t v : packed)
        CHECK_EQ(Ticket::pack(Ticket::unpack(v)), v);
}

TEST(extreme_tickets_survive_the_queue)
{
    QueueHolder h;
    REQUIRE(h.get());
    SubmitQueue &q = *h.get();
    const Ticket in[] = {{0, 0}, {0xffffffffu, 0xffffffffu}, {0xffffffffu, 0}, {0, 0xffffffffu}, {1, 0x80000000u}};
    for (Ticket t : in)
        CHECK(q.push(t));
    for (Ticket t : in) {
        Ticket out{12345, 67890};
        REQUIRE(q.pop(out));
        CHECK_EQ(out.slot, t.slot);
        CHECK_EQ(out.generation, t.generation);
    }
    CHECK(q.empty());
}

TEST(empty_behaviour)
{
    QueueHolder h;
    REQUIRE(h.get());
    SubmitQueue &q = *h.get();
    CHECK(q.empty()); /* a fresh queue in garbage-filled memory is empty */
    Ticket out{111, 222};
    CHECK(!q.pop(out));
    CHECK_EQ(out.slot, 111u); /* a failed pop leaves out alone */
    CHECK_EQ(out.generation, 222u);

    CHECK(q.push(Ticket{5, 6}));
    CHECK(!q.empty());
    CHECK(q.push(Ticket{7, 8}));
    CHECK(q.pop(out));
    CHECK(!q.empty());
    CHECK(q.pop(out));
    CHECK(q.empty());
    CHECK(!q.pop(out));

    /* and again after a full fill/drain cycle */
    CHECK_EQ(fill(q), kSubmitQueueCapacity);
    CHECK(!q.empty());
    size_t n = 0;
    while (q.pop(out))
        n++;
    CHECK_EQ(n, kSubmitQueueCapacity);
    CHECK(q.empty());
}

TEST(capacity_is_exact_and_fifo)
{
    QueueHolder h;
    REQUIRE(h.get());
    SubmitQueue &q = *h.get();
    for (int round = 0; round < 3; round++) { /* nodes are recycled through the freelist */
        CHECK_EQ(fill(q, uint32_t(round)), kSubmitQueueCapacity);
        for (size_t i = 0; i < kSubmitQueueCapacity; i++) {
            Ticket out{};
            REQUIRE(q.pop(out));
            CHECK_EQ(out.slot, uint32_t(i));
            CHECK_EQ(out.generation, uint32_t(round));
            if (unit::state().failed)
                return; /* the first difference is enough */
        }
        CHECK(q.empty());
    }
}

TEST(full_queue_push_fails_without_corruption)
{
    QueueHolder h;
    REQUIRE(h.get());
    SubmitQueue &q = *h.get();
    REQUIRE(fill(q) == kSubmitQueueCapacity);
    for (int i = 0; i < 100; i++)
        CHECK(!q.push(Ticket{0xdead, 0xbeef}));
    CHECK(!q.empty());

    Ticket out{};
    REQUIRE(q.pop(out));
    CHECK_EQ(out.slot, 0u); /* the oldest */
    CHECK(q.push(Ticket{0xaaaa, 0xbbbb})); /* exactly one more fits */
    CHECK(!q.push(Ticket{0xdead, 0xbeef}));

    /* the rest in order, then the late one, then nothing */
    for (size_t i = 1; i < kSubmitQueueCapacity; i++) {
        REQUIRE(q.pop(out));
        CHECK_EQ(out.slot, uint32_t(i));
        CHECK_EQ(out.generation, 7u);
        if (unit::state().failed)
            return; /* the first difference is enough */
    }
    REQUIRE(q.pop(out));
    CHECK_EQ(out.slot, 0xaaaau);
    CHECK_EQ(out.generation, 0xbbbbu);
    CHECK(!q.pop(out));
    CHECK(q.empty());

    /* after the failures the queue still holds exactly its capacity */
    CHECK_EQ(fill(q), kSubmitQueueCapacity);
}

TEST(across_fork_children_push_parent_pops)
{
    constexpr int kProducers = 4;
    constexpr uint32_t kPerProducer = 5000; /* far more than fits: producers hit "full" often */

    /* one mapping: the queue, then a start flag */
    size_t flag_off = (sizeof(SubmitQueue) + 63) & ~size_t(63);
    SharedMem mem(flag_off + 64);
    REQUIRE(mem.get());
    SubmitQueue *q = SubmitQueue::create_at(mem.get());
    auto *go = new (mem.bytes() + flag_off) std::atomic<int>(0);
    REQUIRE(go->is_lock_free());
    REQUIRE(q->is_lock_free());

    std::fflush(stdout);
    std::vector<pid_t> kids;
    for (int p = 0; p < kProducers; p++) {
        pid_t pid = fork();
        if (pid == 0) {
            auto deadline = Clock::now() + std::chrono::seconds(4);
            while (go->load() == 0)
                if (Clock::now() > deadline)
                    _exit(2);
            for (uint32_t g = 0; g < kPerProducer; g++)
                while (!q->push(Ticket{uint32_t(p), g})) {
                    if (Clock::now() > deadline)
                        _exit(3);
                    sched_yield();
                }
            _exit(0);
        }
        if (pid < 0)
            break;
        kids.push_back(pid);
    }
    CHECK_EQ(kids.size(), size_t(kProducers));

    Tally tally(kProducers, kPerProducer);
    const size_t total = kids.size() * kPerProducer;
    go->store(1);
    auto deadline = Clock::now() + std::chrono::seconds(4);
    Ticket t{};
    while (tally.received < total && Clock::now() < deadline) {
        if (q->pop(t))
            tally.take(t);
        else
            sched_yield();
    }
    for (pid_t pid : kids)
        CHECK(exited_ok(wait_child(pid, 5.0)));
    while (q->pop(t)) /* anything extra (duplicates) shows up in the tally */
        tally.take(t);
    CHECK_TALLY(tally, total);
    CHECK(q->empty());
    q->~SubmitQueue();
}

TEST(threads_producers_and_consumer)
{
    constexpr int kProducers = 4;
    constexpr uint32_t kPerProducer = 20000;
    QueueHolder h;
    REQUIRE(h.get());
    SubmitQueue &q = *h.get();

    std::atomic<bool> go{false};
    std::atomic<int> timed_out{0};
    std::vector<std::thread> producers;
    for (int p = 0; p < kProducers; p++)
        producers.emplace_back([&, p] {
            while (!go.load())
                std::this_thread::yield();
            auto deadline = Clock::now() + std::chrono::seconds(4);
            for (uint32_t g = 0; g < kPerProducer; g++)
                while (!q.push(Ticket{uint32_t(p), g})) {
                    if (Clock::now() > deadline) {
                        timed_out++;
                        return;
                    }
                    std::this_thread::yield();
                }
        });

    Tally tally(kProducers, kPerProducer);
    const size_t total = size_t(kProducers) * kPerProducer;
    std::thread consumer([&] {
        auto deadline = Clock::now() + std::chrono::seconds(4);
        Ticket t{};
        while (tally.received < total && Clock::now() < deadline) {
            if (q.pop(t))
                tally.take(t);
            else
                std::this_thread::yield();
        }
    });
    go.store(true);
    for (std::thread &th : producers)
        th.join();
    consumer.join();
    Ticket t{};
    while (q.pop(t))
        tally.take(t);
    CHECK_EQ(timed_out.load(), 0);
    CHECK_TALLY(tally, total);
    CHECK(q.empty());
}
