/*
 * conninfo.cpp — see conninfo.hpp.
 */
#include "common/conninfo.hpp"

#include <algorithm>
#include <cctype>
#include <cstring>

#include <libpq-fe.h>

namespace bgw {

namespace {

/* libpq's message: trailing newlines and spaces cut, inner ones joined */
void copy_error(ConninfoError *err, const char *msg)
{
    if (!err)
        return;
    size_t n = 0;
    for (const char *p = msg; *p && n + 1 < sizeof(err->text); p++)
        err->text[n++] = (*p == '\n' || *p == '\t') ? ' ' : *p;
    while (n > 0 && err->text[n - 1] == ' ')
        n--;
    err->text[n] = '\0';
}

/* A value as libpq reads it back: quoted when it would not survive bare.
 * libpq ends a bare value at any isspace() byte (\v, \f and \r too). */
std::string conninfo_value(const char *v)
{
    bool plain = *v != '\0';
    for (const char *p = v; *p; p++)
        if (isspace(static_cast<unsigned char>(*p)) || *p == '\'' || *p == '\\' || *p == '=')
            plain = false;
    if (plain)
        return v;
    std::string out = "'";
    for (const char *p = v; *p; p++) {
        if (*p == '\'' || *p == '\\')
            out += '\\';
        out += *p;
    }
    return out + "'";
}

} // namespace

bool conninfo_walk(const char *connstr, ConninfoFn fn, void *arg, ConninfoError *err)
{
    char *errmsg = nullptr;
    PQconninfoOption *opts = PQconninfoParse(connstr ? connstr : "", &errmsg);
    if (!opts) {
        copy_error(err, errmsg ? errmsg : "out of memory");
        if (errmsg)
            PQfreemem(errmsg);
        return false;
    }
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val)
            continue;
        bool secret = (o->dispchar && o->dispchar[0] == '*') || strstr(o->keyword, "password") != nullptr;
        fn(arg, ConninfoOption{o->keyword, o->val, secret});
    }
    PQconninfoFree(opts);
    return true;
}

bool conninfo_has(const char *connstr, const char *keyword)
{
    bool found = false;
    conninfo_each(connstr, [&](const ConninfoOption &o) {
        if (strcmp(o.keyword, keyword) == 0 && o.val[0])
            found = true;
    });
    return found;
}

bool conninfo_copy(const char *connstr, const char *keyword, char *out, size_t outlen)
{
    bool found = false;
    conninfo_each(connstr, [&](const ConninfoOption &o) {
        if (strcmp(o.keyword, keyword) == 0 && o.val[0] && outlen > 0) {
            size_t n = strnlen(o.val, outlen - 1);
            memcpy(out, o.val, n);
            out[n] = '\0';
            found = true;
        }
    });
    return found;
}

namespace {

/* libpq's rule for the lists of a multi-host string (0: a list not
 * given): the host and hostaddr lists name the hosts and must agree; the
 * port list gives one port for all or one per host. The number of hosts,
 * or 0 when the lists do not match. */
size_t hosts_of_lists(size_t hosts, size_t addrs, size_t ports)
{
    size_t n = std::max({hosts, addrs, size_t(1)});
    if ((hosts && hosts != n) || (addrs && addrs != n) || (ports > 1 && ports != n))
        return 0;
    return n;
}

} // namespace

int conninfo_host_count(const char *connstr)
{
    /* conninfo_split_hosts's count, without allocating */
    int hosts = 0, addrs = 0, ports = 0;
    auto entries = [](const char *v) {
        int n = 1;
        for (const char *p = v; *p; p++)
            n += *p == ',';
        return n;
    };
    if (!conninfo_each(connstr, [&](const ConninfoOption &o) {
            if (strcmp(o.keyword, "host") == 0)
                hosts = entries(o.val);
            else if (strcmp(o.keyword, "hostaddr") == 0)
                addrs = entries(o.val);
            else if (strcmp(o.keyword, "port") == 0)
                ports = entries(o.val);
        }))
        return 0;
    return int(hosts_of_lists(size_t(hosts), size_t(addrs), size_t(ports)));
}

std::string conninfo_masked(const std::string &connstr, const std::string &user)
{
    /* the callback must not throw: a failed append only shortens the text */
    std::string out;
    bool ok = conninfo_each(connstr.c_str(), [&](const ConninfoOption &o) noexcept {
        if (!user.empty() && strcmp(o.keyword, "user") == 0)
            return;
        try {
            if (!out.empty())
                out += ' ';
            out += o.keyword;
            out += '=';
            out += o.secret ? std::string("********") : conninfo_value(o.val);
        } catch (...) {
        }
    });
    if (!ok)
        return "(invalid connection string)";
    if (!user.empty())
        out += (out.empty() ? "user=" : " user=") + conninfo_value(user.c_str());
    return out;
}

} // namespace bgw

namespace bgw {

namespace {

std::vector<std::string> split_list(const char *v)
{
    std::vector<std::string> out;
    std::string cur;
    for (const char *p = v; *p; p++) {
        if (*p == ',') {
            out.push_back(cur);
            cur.clear();
        } else {
            cur += *p;
        }
    }
    out.push_back(cur);
    return out;
}

} // namespace

std::vector<ConninfoHost> conninfo_split_hosts(const std::string &connstr)
{
    std::vector<std::string> hosts, addrs, ports;
    std::vector<std::pair<std::string, std::string>> rest;
    bool failed = false;
    bool ok = conninfo_each(connstr.c_str(), [&](const ConninfoOption &o) noexcept {
        try {
            if (strcmp(o.keyword, "host") == 0)
                hosts = split_list(o.val);
            else if (strcmp(o.keyword, "hostaddr") == 0)
                addrs = split_list(o.val);
            else if (strcmp(o.keyword, "port") == 0)
                ports = split_list(o.val);
            else if (strcmp(o.keyword, "target_session_attrs") != 0 && strcmp(o.keyword, "load_balance_hosts") != 0)
                rest.emplace_back(o.keyword, o.val);
        } catch (...) {
            failed = true;
        }
    });
    if (!ok || failed)
        return {};
    size_t n = hosts_of_lists(hosts.size(), addrs.size(), ports.size());
    if (n == 0)
        return {};
    std::vector<ConninfoHost> out(n);
    for (size_t i = 0; i < n; i++) {
        ConninfoHost &h = out[i];
        if (!hosts.empty())
            h.host = hosts[i];
        if (!addrs.empty())
            h.hostaddr = addrs[i];
        if (!ports.empty())
            h.port = ports.size() == 1 ? ports[0] : ports[i];
        std::string &c = h.connstr;
        for (const auto &[k, v] : rest) {
            c += c.empty() ? "" : " ";
            c += k + "=" + conninfo_value(v.c_str());
        }
        for (const auto &[k, v] : {std::pair<const char *, const std::string &>{"host", h.host},
                                   {"hostaddr", h.hostaddr}, {"port", h.port}})
            if (!v.empty())
                c += std::string(c.empty() ? "" : " ") + k + "=" + conninfo_value(v.c_str());
    }
    return out;
}

} // namespace bgw
