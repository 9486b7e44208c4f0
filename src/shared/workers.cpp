/*
 * workers.cpp — see workers.h. WorkerState's contract is in shmem.h.
 */
#include "shared/workers.h"
#include "shared/shmem.h"

#include "common/pg_headers.h"

namespace bgw {

void wake_worker(int w)
{
    WorkerState *ws = worker_state(w);
    if (pg_atomic_read_u32(&ws->pid) != 0) {
        pg_read_barrier();
        PGPROC *p = ws->proc;
        if (p)
            SetLatch(&p->procLatch);
    }
}

int worker_for_key(const char *key, size_t len)
{
    uint32 h = hash_bytes(reinterpret_cast<const unsigned char *>(key), int(len));
    return int(h % uint32(proxy_shared->nworkers));
}

} // namespace bgw
