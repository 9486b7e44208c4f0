/*
 * resolver.cpp — see resolver.hpp.
 */
#include "common/conninfo.hpp"
#include "pool/resolver.hpp"
#include "pool/helper_threads.hpp"

#include <arpa/inet.h>
#include <cstdlib>
#include <cstring>
#include <netdb.h>
#include <sys/socket.h>
#include <vector>

#include <libpq-fe.h>

namespace bgw {

namespace {

std::vector<std::string> split_list(const std::string &s)
{
    std::vector<std::string> out;
    size_t start = 0;
    for (;;) {
        size_t comma = s.find(',', start);
        out.push_back(s.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
        if (comma == std::string::npos)
            return out;
        start = comma + 1;
    }
}

std::string join_list(const std::vector<std::string> &v)
{
    std::string out;
    for (size_t i = 0; i < v.size(); i++)
        out += (i ? "," : "") + v[i];
    return out;
}

/* Sockets and IP literals (IPv6 zones included) need no DNS. */
bool needs_dns(const std::string &host)
{
    if (host.empty() || host[0] == '/' || host[0] == '@')
        return false;
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_flags = AI_NUMERICHOST;
    hints.ai_socktype = SOCK_STREAM;
    struct addrinfo *res = nullptr;
    if (getaddrinfo(host.c_str(), nullptr, &hints, &res) != 0)
        return true;
    freeaddrinfo(res);
    return false;
}

/* Runs on a helper thread. */
void resolve(const std::shared_ptr<Resolution> &r, std::vector<std::string> hosts, std::vector<std::string> ports)
{
    std::vector<std::string> out_hosts, out_addrs, out_ports;
    std::string errors;
    bool failed = false;
    for (size_t i = 0; i < hosts.size(); i++) {
        const std::string &h = hosts[i];
        const std::string port = ports.size() == hosts.size() ? ports[i] : std::string();
        if (r.use_count() == 1) {
            /* the connection that asked is gone: do not spend a lookup on it */
            r->done.store(true, std::memory_order_release);
            return;
        }
        if (!needs_dns(h)) {
            out_hosts.push_back(h);
            out_addrs.emplace_back();
            out_ports.push_back(port);
            continue;
        }
        struct addrinfo hints;
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        struct addrinfo *res = nullptr;
        int rc = getaddrinfo(h.c_str(), nullptr, &hints, &res);
        if (rc != 0) {
            errors += (errors.empty() ? "" : "; ") + std::string("could not translate host name \"") + h +
                      "\" to address: " + gai_strerror(rc);
            failed = true;
            continue;
        }
        size_t first_of_host = out_hosts.size();
        for (struct addrinfo *a = res; a; a = a->ai_next) {
            /* numeric form with the IPv6 zone (fe80::1%eth0), as libpq reads it */
            char text[NI_MAXHOST] = {0};
            if ((a->ai_family != AF_INET && a->ai_family != AF_INET6) ||
                getnameinfo(a->ai_addr, a->ai_addrlen, text, sizeof(text), nullptr, 0, NI_NUMERICHOST) != 0)
                continue;
            /* the same address twice for this host entry: once is enough
             * (another entry, say with another port, keeps its own) */
            bool seen = false;
            for (size_t k = first_of_host; k < out_addrs.size(); k++)
                seen = seen || out_addrs[k] == text;
            if (seen)
                continue;
            out_hosts.push_back(h);
            out_addrs.emplace_back(text);
            out_ports.push_back(port);
        }
        freeaddrinfo(res);
    }
    /* nothing left to try, or only an empty entry (the default socket),
     * which libpq would not let us put in place of the list */
    bool only_default = out_hosts.size() == 1 && out_hosts[0].empty() && failed;
    if (out_hosts.empty() || only_default) {
        r->error = errors.empty() ? std::string("no address for the remote host") : errors;
    } else {
        r->dns_errors = errors; /* for the message if every address then fails */
        r->ok = true;
        r->host = join_list(out_hosts);
        r->hostaddr = join_list(out_addrs);
        /* a port list must match the host list; a single port applies to all */
        if (ports.size() == hosts.size() && hosts.size() > 1)
            r->port = join_list(out_ports);
    }
    r->done.store(true, std::memory_order_release);
}

} // namespace

bool names_service(const std::string &connstr)
{
    bool service = getenv("PGSERVICE") != nullptr;
    (void) conninfo_each(connstr.c_str(), [&](const ConninfoOption &o) noexcept {
        if (strcmp(o.keyword, "service") == 0)
            service = true;
    });
    return service;
}

namespace {

/* Run `task` on the lookup lane; it fills the resolution and must set done.
 * When the lane is full the resolution has already failed: a lookup is
 * never done on the worker's own thread. Null when out of memory. */
ResolutionPtr on_lookup_lane(std::function<void(const ResolutionPtr &)> task)
{
    try {
        auto r = std::make_shared<Resolution>();
        bool queued = run_on_helper_thread(HelperLane::Resolve, [r, task] {
            try {
                task(r);
            } catch (...) {
                /* out of memory: nothing may leave a helper task */
                r->ok = false;
                r->done.store(true, std::memory_order_release);
            }
        });
        if (!queued) {
            r->error = "too many host name lookups pending";
            r->done.store(true, std::memory_order_release);
        }
        return r;
    } catch (...) {
        return nullptr;
    }
}

} // namespace

ResolutionPtr start_on_lookup_lane(std::function<PGconn *()> start)
{
    return on_lookup_lane([start](const ResolutionPtr &r) {
        r->started = start(); /* C, with its strings built beforehand: no throw */
        r->ok = r->started != nullptr;
        if (!r->ok)
            r->error = "out of memory";
        r->done.store(true, std::memory_order_release);
    });
}

ResolutionPtr resolve_hosts_async(const std::string &connstr)
{
    bool host_val = false, hostaddr_val = false, port_val = false;
    bool service = getenv("PGSERVICE") != nullptr;
    std::string host, hostaddr, port;
    bool oom = false;
    /* the callback must not throw: an allocation failure is noted */
    bool ok = conninfo_each(connstr.c_str(), [&](const ConninfoOption &o) noexcept {
        try {
            if (strcmp(o.keyword, "host") == 0)
                host_val = true, host = o.val;
            else if (strcmp(o.keyword, "hostaddr") == 0)
                hostaddr_val = true, hostaddr = o.val;
            else if (strcmp(o.keyword, "port") == 0)
                port_val = true, port = o.val;
            else if (strcmp(o.keyword, "service") == 0)
                service = true;
        } catch (...) {
            oom = true;
        }
    });
    if (!ok)
        return nullptr; /* libpq will report what is wrong with it */
    if (oom)
        throw std::bad_alloc();
    /* A service file may name the hosts; libpq reads it between the string
     * and the environment. Not reproduced here: such connections are
     * started on the lookup lane as a whole (start_on_lookup_lane). */
    if (service)
        return nullptr;
    /* what libpq falls back to when a keyword is absent (not when empty) */
    if (!host_val && getenv("PGHOST"))
        host = getenv("PGHOST");
    if (!hostaddr_val && getenv("PGHOSTADDR"))
        hostaddr = getenv("PGHOSTADDR");
    if (!port_val && getenv("PGPORT"))
        port = getenv("PGPORT");
    if (!hostaddr.empty())
        return nullptr;
    std::vector<std::string> hosts = split_list(host);
    bool any = false;
    for (const std::string &h : hosts)
        any = any || needs_dns(h);
    if (!any)
        return nullptr;
    std::vector<std::string> ports = split_list(port);
    return on_lookup_lane([hosts, ports](const ResolutionPtr &r) { resolve(r, hosts, ports); });
}

} // namespace bgw
