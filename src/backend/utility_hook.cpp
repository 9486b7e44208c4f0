/*
 * utility_hook.cpp — DROP DATABASE and the pooled connections.
 *
 * DROP DATABASE fails if other sessions are connected to the database; it
 * waits up to 5 seconds for them to leave. When the database is one of our
 * partitions on this same server, those sessions are often idle pooled
 * connections of our workers. So before the drop runs, the workers are told
 * the name (shmem.h: drop_names / drop_epoch) and retire their connections
 * to a database of that name: idle ones are closed at once, busy ones when
 * their statement ends. A connection to a same-named database on another
 * server is closed too; the next call simply reconnects.
 *
 * PostgreSQL-style code: no C++ object with a destructor in these frames.
 */
#include "shared/shmem.h"
#include "backend/utility_hook.h"
#include "shared/workers.h"

#include "common/pg_headers.h"

extern "C" {
#include "commands/dbcommands.h"
#include "nodes/parsenodes.h"
#include "utils/acl.h"
#include "tcop/utility.h"
}

namespace bgw {

namespace {

ProcessUtility_hook_type prev_utility_hook = nullptr;

void announce_drop(const char *dbname)
{
    LWLockAcquire(proxy_shared->lock, LW_EXCLUSIVE);
    uint64 epoch = pg_atomic_read_u64(&proxy_shared->drop_epoch) + 1;
    strlcpy(proxy_shared->drop_names[epoch % kDropRing], dbname, NAMEDATALEN);
    pg_atomic_write_u64(&proxy_shared->drop_epoch, epoch);
    LWLockRelease(proxy_shared->lock);
    for (int i = 0; i < proxy_shared->nworkers; i++)
        wake_worker(i);
}

/* Only a drop that can go ahead: at top level, outside a transaction
 * block, of an existing database, by its owner. Anything else fails on
 * its own, and must not make every pool reconnect. */
bool drop_will_run(const DropdbStmt *stmt, ProcessUtilityContext context)
{
    if (context != PROCESS_UTILITY_TOPLEVEL || IsTransactionBlock() || !stmt->dbname)
        return false;
    Oid db = get_database_oid(stmt->dbname, true);
    return OidIsValid(db) && pg_database_ownercheck(db, GetUserId());
}

void bgw_process_utility(PlannedStmt *pstmt, const char *query_string, bool read_only_tree,
                         ProcessUtilityContext context, ParamListInfo params, QueryEnvironment *query_env,
                         DestReceiver *dest, QueryCompletion *qc)
{
    Node *stmt = pstmt->utilityStmt;
    if (proxy_shared && stmt && IsA(stmt, DropdbStmt) && drop_will_run((DropdbStmt *) stmt, context))
        announce_drop(((DropdbStmt *) stmt)->dbname);
    if (prev_utility_hook)
        prev_utility_hook(pstmt, query_string, read_only_tree, context, params, query_env, dest, qc);
    else
        standard_ProcessUtility(pstmt, query_string, read_only_tree, context, params, query_env, dest, qc);
}

} // namespace

void utility_hook_register(void)
{
    prev_utility_hook = ProcessUtility_hook;
    ProcessUtility_hook = bgw_process_utility;
}

} // namespace bgw
