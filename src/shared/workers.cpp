/*
 * workers.cpp — see workers.h. WorkerState's contract is in shmem.h.
 */
#include "shared/workers.h"
#include "shared/shmem.h"

#include "common/pg_headers.h"

namespace bgw {

PGPROC *worker_proc(int w)
{
    WorkerState *ws = worker_state(w);
    if (pg_atomic_read_u32(&ws->pid) == 0)
        return nullptr;
    pg_read_barrier();
    return ws->proc;
}

void wake_worker(int w)
{
    if (PGPROC *p = worker_proc(w))
        SetLatch(&p->procLatch);
}

int pick_worker(const char *key, size_t len)
{
    int n = proxy_shared->nworkers;
    uint32 h = hash_bytes(reinterpret_cast<const unsigned char *>(key), int(len));
    int home = int(h % uint32(n));
    uint32 best_load = pg_atomic_read_u32(&worker_state(home)->load);
    if (best_load <= kHomeLoad)
        return home;
    int best = home;
    for (int w = 0; w < n; w++) {
        uint32 l = pg_atomic_read_u32(&worker_state(w)->load);
        if (l < best_load) {
            best = w;
            best_load = l;
        }
    }
    return best;
}

void charge_worker(RequestSlot *s, int w)
{
    pg_atomic_fetch_add_u32(&worker_state(w)->load, 1);
    pg_atomic_write_u32(&s->charged, uint32(w) + 1);
}

void uncharge_worker(RequestSlot *s)
{
    uint32 charged = pg_atomic_exchange_u32(&s->charged, 0);
    if (charged > 0 && int(charged) <= proxy_shared->nworkers)
        pg_atomic_fetch_sub_u32(&worker_state(int(charged) - 1)->load, 1);
}

} // namespace bgw
