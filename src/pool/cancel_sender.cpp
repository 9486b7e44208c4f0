/*
 * cancel_sender.cpp — see cancel_sender.hpp.
 */
#include "pool/cancel_sender.hpp"
#include "pool/helper_threads.hpp"

namespace bgw {

CancelDone send_cancel_async(PGconn *conn)
{
    PGcancel *c = PQgetCancel(conn);
    if (!c)
        return nullptr;
    try {
        auto done = std::make_shared<std::atomic<bool>>(false);
        bool queued = run_on_helper_thread(HelperLane::Cancel, [c, done] {
            char errbuf[256];
            /* A failed cancel is not fatal: the worker's query/cancel
             * timeouts close the connection if the statement does not end. */
            (void) PQcancel(c, errbuf, sizeof(errbuf));
            PQfreeCancel(c);
            done->store(true, std::memory_order_release);
        });
        if (queued)
            return done;
    } catch (...) {
    }
    PQfreeCancel(c);
    return nullptr;
}

} // namespace bgw
