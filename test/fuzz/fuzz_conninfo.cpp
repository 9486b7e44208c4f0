/*
 * fuzz_conninfo.cpp — libFuzzer target for connection-string handling
 * (common/conninfo.hpp): the walk over libpq's parse, the lookups built on
 * it, and the masked form the statistics views show.
 *
 * The input is a connection string, then optionally a NUL and the user the
 * pool connects as (for conninfo_masked). Checked:
 *   - conninfo_has and conninfo_copy agree with the walk, and conninfo_copy
 *     cuts a value to its buffer, however small, without writing past it
 *     (each buffer is a heap block of exactly that size, for ASan);
 *   - a parse error's text is one line that fits its buffer;
 *   - the masked form parses back, with libpq, to the same options but
 *     every secret one reads "********" and the user is the pool's: the
 *     view shows what the connection uses, and never a password.
 */
#include "common/conninfo.hpp"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>

using namespace bgw;

namespace {

void require(bool cond)
{
    if (!cond)
        abort();
}

struct Value {
    std::string text;
    bool secret = false;
    bool operator==(const Value &o) const { return text == o.text && secret == o.secret; }
};
using Options = std::map<std::string, Value>;

/* The options with a value, or false if the string does not parse. */
bool walk(const std::string &connstr, Options &out)
{
    ConninfoError err;
    bool ok = conninfo_each(
        connstr.c_str(),
        [&](const ConninfoOption &o) {
            require(o.keyword != nullptr && o.val != nullptr);
            if (strstr(o.keyword, "password"))
                require(o.secret);
            out[o.keyword] = Value{o.val, o.secret};
        },
        &err);
    if (!ok) {
        size_t n = strnlen(err.text, sizeof(err.text));
        require(n < sizeof(err.text));
        require(memchr(err.text, '\n', n) == nullptr);
    }
    return ok;
}

/* conninfo_copy into a buffer of exactly outlen bytes. */
void check_copy(const std::string &connstr, const char *keyword, const std::string *value, size_t outlen)
{
    std::unique_ptr<char[]> out(new char[outlen > 0 ? outlen : 1]);
    bool found = conninfo_copy(connstr.c_str(), keyword, outlen > 0 ? out.get() : nullptr, outlen);
    bool expected = value && !value->empty() && outlen > 0;
    require(found == expected);
    if (found)
        require(std::string(out.get()) == value->substr(0, outlen - 1));
}

void check_lookups(const std::string &connstr, const Options &options)
{
    for (const auto &kv : options) {
        const char *keyword = kv.first.c_str();
        const std::string &value = kv.second.text;
        require(conninfo_has(connstr.c_str(), keyword) == !value.empty());
        check_copy(connstr, keyword, &value, value.size() + 1);
        check_copy(connstr, keyword, &value, value.size() / 2 + 1);
    }
    /* a keyword the string does not give */
    if (!options.count("dbname")) {
        require(!conninfo_has(connstr.c_str(), "dbname"));
        check_copy(connstr, "dbname", nullptr, 8);
    }
    check_copy(connstr, "host", options.count("host") ? &options.at("host").text : nullptr, 0);
}

void check_masked(const std::string &connstr, const std::string &user, bool parses, const Options &options)
{
    std::string masked = conninfo_masked(connstr, user);
    if (!parses) {
        require(masked == "(invalid connection string)");
        return;
    }
    /* what the view should say, option by option */
    Options expected;
    for (const auto &kv : options) {
        if (kv.first == "user" && !user.empty())
            continue;
        expected[kv.first] = kv.second.secret ? Value{"********", true} : kv.second;
    }
    if (!user.empty())
        expected["user"] = Value{user, false};
    Options shown;
    require(walk(masked, shown));
    require(shown == expected);
}

/* Each host's string parses, names that host alone (no list), and keeps
 * every other option but the two that choose among hosts. */
void check_split(const std::string &connstr, bool parses, const Options &options)
{
    std::vector<ConninfoHost> hosts = conninfo_split_hosts(connstr);
    if (!parses) {
        require(hosts.empty());
        return;
    }
    for (const ConninfoHost &h : hosts) {
        Options got;
        require(walk(h.connstr, got));
        for (const char *k : {"host", "hostaddr", "port"}) {
            const std::string &mine = std::string(k) == "host" ? h.host : std::string(k) == "port" ? h.port : h.hostaddr;
            require(mine.find(',') == std::string::npos);
            require(got.count(k) ? got.at(k).text == mine : mine.empty());
        }
        for (const auto &kv : options) {
            const std::string &k = kv.first;
            if (k == "host" || k == "hostaddr" || k == "port")
                continue;
            if (k == "target_session_attrs" || k == "load_balance_hosts")
                require(!got.count(k));
            else
                require(got.count(k) && got.at(k).text == kv.second.text);
        }
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *bytes = reinterpret_cast<const char *>(data);
    const char *nul = static_cast<const char *>(memchr(bytes, '\0', size));
    std::string connstr(bytes, nul ? size_t(nul - bytes) : size);
    std::string user;
    if (nul)
        user = std::string(nul + 1, strnlen(nul + 1, size - size_t(nul + 1 - bytes)));

    Options options;
    bool parses = walk(connstr, options);
    if (parses)
        check_lookups(connstr, options);
    else
        require(!conninfo_has(connstr.c_str(), "host"));
    check_masked(connstr, user, parses, options);
    check_split(connstr, parses, options);
    return 0;
}
