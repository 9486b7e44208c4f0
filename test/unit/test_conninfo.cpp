/*
 * test_conninfo.cpp — conninfo_split_hosts(): a multi-host connection
 * string into one string per host (the nodes of a partition).
 */
#include "unit_test.hpp"
#include "common/conninfo.hpp"

#include <libpq-fe.h>

using namespace bgw;

namespace {

/* the value libpq reads for keyword in s ("" when none) */
std::string option(const std::string &s, const char *keyword)
{
    std::string out;
    conninfo_each(s.c_str(), [&](const ConninfoOption &o) {
        if (strcmp(o.keyword, keyword) == 0)
            out = o.val;
    });
    return out;
}

} // namespace

TEST(one_host_is_one_node)
{
    auto h = conninfo_split_hosts("host=a port=5 dbname=x");
    REQUIRE(h.size() == 1);
    CHECK_EQ(h[0].host, std::string("a"));
    CHECK_EQ(option(h[0].connstr, "dbname"), std::string("x"));
    CHECK_EQ(conninfo_split_hosts("dbname=x").size(), size_t(1));
}

TEST(hosts_and_ports_pair_up_and_other_options_stay)
{
    auto h = conninfo_split_hosts("host=a,b port=1,2 dbname='my db' password='it\\'s' connect_timeout=3");
    REQUIRE(h.size() == 2);
    CHECK_EQ(option(h[0].connstr, "host"), std::string("a"));
    CHECK_EQ(option(h[0].connstr, "port"), std::string("1"));
    CHECK_EQ(option(h[1].connstr, "host"), std::string("b"));
    CHECK_EQ(option(h[1].connstr, "port"), std::string("2"));
    for (const auto &n : h) {
        CHECK_EQ(option(n.connstr, "dbname"), std::string("my db"));
        CHECK_EQ(option(n.connstr, "password"), std::string("it's"));
        CHECK_EQ(option(n.connstr, "connect_timeout"), std::string("3"));
    }
}

TEST(one_port_serves_every_host)
{
    auto h = conninfo_split_hosts("host=a,b,c port=7");
    REQUIRE(h.size() == 3);
    for (const auto &n : h)
        CHECK_EQ(n.port, std::string("7"));
    auto no_port = conninfo_split_hosts("host=a,b");
    REQUIRE(no_port.size() == 2);
    CHECK_EQ(no_port[1].port, std::string(""));
}

TEST(uri_form_and_hostaddr_lists)
{
    auto h = conninfo_split_hosts("postgresql://a:1,b:2/db?application_name=z");
    REQUIRE(h.size() == 2);
    CHECK_EQ(h[1].host, std::string("b"));
    CHECK_EQ(h[1].port, std::string("2"));
    CHECK_EQ(option(h[1].connstr, "dbname"), std::string("db"));
    CHECK_EQ(option(h[1].connstr, "application_name"), std::string("z"));
    auto a = conninfo_split_hosts("hostaddr=127.0.0.1,127.0.0.2 port=1,2");
    REQUIRE(a.size() == 2);
    CHECK_EQ(a[1].hostaddr, std::string("127.0.0.2"));
    CHECK_EQ(option(a[1].connstr, "hostaddr"), std::string("127.0.0.2"));
    CHECK_EQ(option(a[1].connstr, "host"), std::string(""));
}

TEST(choosing_among_hosts_is_left_out)
{
    auto h = conninfo_split_hosts("host=a,b target_session_attrs=read-write");
    REQUIRE(h.size() == 2);
    CHECK_EQ(option(h[0].connstr, "target_session_attrs"), std::string(""));
}

TEST(mismatched_lists_and_bad_strings_give_nothing)
{
    CHECK(conninfo_split_hosts("host=a,b,c port=1,2").empty());
    CHECK(conninfo_split_hosts("host=a,b hostaddr=1.2.3.4").empty());
    CHECK(conninfo_split_hosts("host='a").empty());
    CHECK(conninfo_split_hosts("nosuchoption=1").empty());
}
