/*
 * conninfo.hpp — the one walk over a libpq connection string's options
 * (keyword=value pairs or a URI, as PQconninfoParse reads them), for every
 * process and layer: the backend checks and describes connection strings,
 * the pool resolves their hosts, the worker masks them for the views.
 *
 * Pure C++ + libpq. The callback must neither throw nor raise a PostgreSQL
 * error: the parsed options are freed after it returns. The frames of the
 * walk, conninfo_has and conninfo_copy own nothing with a destructor, so
 * backend code may call them directly; conninfo_masked returns a
 * std::string and is for the worker's C++ code.
 */
#pragma once

#include "common/pure_cxx.h"

#include <cstddef>
#include <string>
#include <vector>

namespace bgw {

struct ConninfoOption {
    const char *keyword;
    const char *val;             /* never NULL: options without a value are skipped */
    bool secret;                 /* libpq marks it secret (dispchar "*"), or a *password* keyword */
};

/* libpq's reason when a string does not parse, on one line. */
struct ConninfoError {
    char text[256];
};

typedef void (*ConninfoFn)(void *arg, const ConninfoOption &o);

/* Calls fn for every option that has a value, in libpq's keyword order.
 * False (and err->text, when err is given) if the string does not parse. */
bool conninfo_walk(const char *connstr, ConninfoFn fn, void *arg, ConninfoError *err);

template <typename F>
bool conninfo_each(const char *connstr, F &&fn, ConninfoError *err = nullptr)
{
    return conninfo_walk(
        connstr, [](void *a, const ConninfoOption &o) { (*static_cast<F *>(a))(o); }, &fn, err);
}

/* True if the string parses and gives `keyword` a non-empty value. */
bool conninfo_has(const char *connstr, const char *keyword);

/* The value of `keyword` copied into out (cut to outlen - 1 bytes); false
 * if the string does not parse or has no such value. */
bool conninfo_copy(const char *connstr, const char *keyword, char *out, size_t outlen);

/* The number of hosts (nodes) the string names in libpq's multi-host form
 * (`host=a,b`, `hostaddr=...`, or a URI `postgresql://a:1,b:2/db`); 1 when
 * it names none (libpq's default host). 0 when it does not parse or its
 * host, hostaddr and port lists do not match. Always
 * conninfo_split_hosts(connstr).size(), but allocates nothing: for the
 * backend, which checks partition_N_weights with it. */
int conninfo_host_count(const char *connstr);

/* The connection string for the views, as keyword=value pairs (URIs too)
 * that libpq reads back as the same options: every secret option masked,
 * and `user`, when not empty, last in place of the string's own.
 * "(invalid connection string)" if it does not parse. */
std::string conninfo_masked(const std::string &connstr, const std::string &user);

/* One host of a connection string in libpq's multi-host form
 * (host=a,b port=1,2 or postgresql://a:1,b:2/db): its host, hostaddr and
 * port (each possibly empty), and a connection string naming that host
 * alone, with every other option as it was (but target_session_attrs and
 * load_balance_hosts, which choose among hosts: bgw_proxy chooses). */
struct ConninfoHost {
    std::string host, hostaddr, port, connstr;
};

/* The hosts of a connection string, in order: one entry when it names one
 * host (or none), none when it does not parse or its lists do not match
 * (libpq then says why when it connects). For the worker's C++ code. */
std::vector<ConninfoHost> conninfo_split_hosts(const std::string &connstr);

} // namespace bgw
