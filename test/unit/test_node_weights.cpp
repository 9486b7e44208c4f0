/*
 * Unit tests for what the cluster option partition_N_weights is checked
 * with: the weights parser (common/node_weights.hpp) and the count of a
 * connection string's hosts (common/conninfo.hpp), which must be equal.
 */
#include "common/conninfo.hpp"
#include "common/node_weights.hpp"
#include "unit_test.hpp"

using namespace bgw;

TEST(weights_parse_lists)
{
    uint32_t w[4] = {0};
    CHECK_EQ(node_weights_parse("3", w, 4), 1);
    CHECK_EQ(w[0], 3u);
    CHECK_EQ(node_weights_parse("3,1", w, 4), 2);
    CHECK_EQ(w[0], 3u);
    CHECK_EQ(w[1], 1u);
    CHECK_EQ(node_weights_parse(" 0 , 7,\t1000000 ", w, 4), 3);
    CHECK_EQ(w[0], 0u);
    CHECK_EQ(w[1], 7u);
    CHECK_EQ(w[2], 1000000u);
}

TEST(weights_parse_counts_past_max)
{
    uint32_t w[2] = {0, 0};
    CHECK_EQ(node_weights_parse("1,2,3,4,5", w, 2), 5);
    CHECK_EQ(w[0], 1u);
    CHECK_EQ(w[1], 2u);
    CHECK_EQ(node_weights_parse("1,2,3", nullptr, 0), 3);
}

TEST(weights_parse_refuses)
{
    for (const char *bad : {"", " ", ",", "1,", ",1", "1,,2", "-1", "+1", "1.5", "1 2", "a", "1,b", "1000001",
                            "99999999999999999999", "0x10", "1;2"})
        CHECK_EQ(node_weights_parse(bad, nullptr, 0), -1);
}

/* Connection strings and the hosts they name. The backend checks the
 * weights with conninfo_host_count; the worker makes the nodes with
 * conninfo_split_hosts: both must count alike. */
const struct {
    const char *connstr;
    int hosts;
} kHostCounts[] = {
    {"dbname=x", 1},
    {"", 1},
    {"service=x", 1},
    {"host=a dbname=x", 1},
    {"host=", 1},
    {"host=a,b port=1,2", 2},
    {"host=a,b port=5432", 2},
    {"host=a,,b", 3},
    {"host=,", 2},
    {"hostaddr=127.0.0.1,127.0.0.2", 2},
    {"host=a,b hostaddr=127.0.0.1,127.0.0.2", 2},
    {"postgresql://a:1,b:2,c:3/db", 3},
    {"postgresql://a,b/db", 2},
    {"postgresql://[::1]:1,[::2]:2/db", 2},
    {"postgresql:///db", 1},
    {"postgresql://a/db?host=b,c", 2},
    /* lists of other lengths (libpq refuses them when it connects) */
    {"host=a hostaddr=127.0.0.1,127.0.0.2", 0},
    {"host=a,b,c hostaddr=127.0.0.1", 0},
    {"host=a,b,c port=1,2", 0},
    {"port=1,2", 0},
    {"host='a", 0}, /* does not parse */
};

TEST(host_count_forms)
{
    for (const auto &c : kHostCounts) {
        CHECK_EQ(conninfo_host_count(c.connstr), c.hosts);
        CHECK_EQ(conninfo_split_hosts(c.connstr).size(), c.hosts);
    }
}
