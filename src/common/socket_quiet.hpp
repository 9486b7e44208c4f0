/*
 * socket_quiet.hpp — whether an idle remote session has nothing to say:
 * the check a pooled connection passes before it serves another call, in
 * a worker (pool/connection.cpp) and in a backend borrowing it
 * (backend/direct_call.cpp). Data or EOF on an idle session means the
 * remote ended it (idle_session_timeout, a restart, a terminate).
 *
 * Pure C++: no PostgreSQL header.
 */
#pragma once

#include "common/pure_cxx.h"

#include <cerrno>
#include <poll.h>

namespace bgw {

/* Nothing to read and no EOF on fd now. A signal (a timeout's, a latch's)
 * may interrupt even a poll that does not wait; that says nothing of the
 * socket: ask again. */
inline bool socket_quiet(int fd)
{
    struct pollfd p = {fd, POLLIN, 0};
    int n;
    do
        n = poll(&p, 1, 0);
    while (n < 0 && errno == EINTR);
    return n == 0;
}

} // namespace bgw
