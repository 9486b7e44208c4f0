/*
 * pool_key.hpp — which pooled connections may serve a target: the same
 * connection string, remote user and password, client encoding and local
 * role (and whether the remote had to ask for the password). Built by the
 * worker for every job (slot_calls.cpp) and by a backend looking for a
 * connection to borrow (backend/direct_call.cpp): one rule, here.
 *
 * Pure C++: no PostgreSQL header.
 */
#pragma once

#include "common/pure_cxx.h"

#include <cstdint>
#include <cstring>

namespace bgw {

/* Appends the key to any buffer with append(const char *, size_t). */
template <typename Buf>
void append_pool_key(Buf &b, const char *connstr, size_t connstr_len, const char *user, size_t user_len,
                     const char *password, size_t password_len, const char *encoding, uint32_t roleid,
                     bool require_password)
{
    char role[10]; /* decimal, written backwards */
    int n = 0;
    do {
        role[sizeof role - 1 - size_t(n++)] = char('0' + roleid % 10);
        roleid /= 10;
    } while (roleid);
    b.append(connstr, connstr_len);
    b.append("\x1f", 1);
    b.append(user, user_len);
    b.append("\x1f", 1);
    b.append(password, password_len);
    b.append("\x1f", 1);
    b.append(encoding, strlen(encoding));
    b.append("\x1f", 1);
    b.append(role + sizeof role - size_t(n), size_t(n));
    if (require_password)
        b.append("\x1fp", 2);
}

} // namespace bgw
