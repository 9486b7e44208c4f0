/*
 * resolver.cpp — see resolver.hpp.
 */
#include "resolver.hpp"
#include "helper_threads.hpp"

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

/* Sockets and IP literals need no DNS. */
bool needs_dns(const std::string &host)
{
    if (host.empty() || host[0] == '/' || host[0] == '@')
        return false;
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host.c_str(), buf) != 1 && inet_pton(AF_INET6, host.c_str(), buf) != 1;
}

/* Runs on a helper thread. */
void resolve(const std::shared_ptr<Resolution> &r, std::vector<std::string> hosts, std::vector<std::string> ports)
{
    std::vector<std::string> out_hosts, out_addrs, out_ports;
    std::string first_error;
    for (size_t i = 0; i < hosts.size(); i++) {
        const std::string &h = hosts[i];
        const std::string port = ports.size() == hosts.size() ? ports[i] : std::string();
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
            if (first_error.empty())
                first_error = "could not translate host name \"" + h + "\" to address: " + gai_strerror(rc);
            continue;
        }
        for (struct addrinfo *a = res; a; a = a->ai_next) {
            char text[INET6_ADDRSTRLEN] = {0};
            const void *addr = a->ai_family == AF_INET
                                   ? static_cast<const void *>(&reinterpret_cast<sockaddr_in *>(a->ai_addr)->sin_addr)
                                   : static_cast<const void *>(&reinterpret_cast<sockaddr_in6 *>(a->ai_addr)->sin6_addr);
            if ((a->ai_family != AF_INET && a->ai_family != AF_INET6) ||
                !inet_ntop(a->ai_family, addr, text, sizeof(text)))
                continue;
            bool seen = false;
            for (size_t k = 0; k < out_addrs.size(); k++)
                seen = seen || (out_hosts[k] == h && out_addrs[k] == text);
            if (seen)
                continue;
            out_hosts.push_back(h);
            out_addrs.emplace_back(text);
            out_ports.push_back(port);
        }
        freeaddrinfo(res);
    }
    if (out_hosts.empty()) {
        r->error = first_error.empty() ? std::string("no address for the remote host") : first_error;
    } else {
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

ResolutionPtr resolve_hosts_async(const std::string &connstr)
{
    char *err = nullptr;
    PQconninfoOption *opts = PQconninfoParse(connstr.c_str(), &err);
    if (err)
        PQfreemem(err);
    if (!opts)
        return nullptr; /* libpq will report what is wrong with it */
    std::string host, hostaddr, port;
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val)
            continue;
        if (strcmp(o->keyword, "host") == 0)
            host = o->val;
        else if (strcmp(o->keyword, "hostaddr") == 0)
            hostaddr = o->val;
        else if (strcmp(o->keyword, "port") == 0)
            port = o->val;
    }
    PQconninfoFree(opts);
    /* what libpq would fall back to */
    if (host.empty() && getenv("PGHOST"))
        host = getenv("PGHOST");
    if (hostaddr.empty() && getenv("PGHOSTADDR"))
        hostaddr = getenv("PGHOSTADDR");
    if (port.empty() && getenv("PGPORT"))
        port = getenv("PGPORT");
    if (!hostaddr.empty())
        return nullptr;
    std::vector<std::string> hosts = split_list(host);
    bool any = false;
    for (const std::string &h : hosts)
        any = any || needs_dns(h);
    if (!any)
        return nullptr;
    try {
        auto r = std::make_shared<Resolution>();
        std::vector<std::string> ports = split_list(port);
        bool queued = run_on_helper_thread([r, hosts, ports] {
            try {
                resolve(r, hosts, ports);
            } catch (...) {
                /* out of memory: nothing may leave a helper task */
                r->ok = false;
                r->done.store(true, std::memory_order_release);
            }
        });
        if (!queued)
            return nullptr;
        return r;
    } catch (...) {
        return nullptr;
    }
}

} // namespace bgw
