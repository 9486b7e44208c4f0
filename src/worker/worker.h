/*
 * worker.h — the pool of background workers that own remote connections.
 */
#pragma once

namespace bgw {

/* Called from _PG_init: one static background worker per bgw_proxy.workers. */
void register_workers(void);

} // namespace bgw
