/*
 * test_resolver.cpp — host names resolved off the worker's thread
 * (src/resolver.cpp, src/helper_threads.cpp). Uses only names that resolve
 * without a DNS server: localhost (/etc/hosts) and the reserved .invalid
 * domain (RFC 6761: never resolves).
 */
#include "unit_test.hpp"

#include "pool/resolver.hpp"
#include "pool/helper_threads.hpp"

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <thread>

using namespace bgw;

namespace {

bool wait_done(const ResolutionPtr &r)
{
    for (int i = 0; i < 1000; i++) {
        if (r->done.load(std::memory_order_acquire))
            return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
}

} // namespace

TEST(nothing_to_resolve_starts_at_once)
{
    unsetenv("PGHOST");
    unsetenv("PGHOSTADDR");
    CHECK(resolve_hosts_async("host=127.0.0.1 dbname=x") == nullptr);
    CHECK(resolve_hosts_async("host=::1 dbname=x") == nullptr);
    CHECK(resolve_hosts_async("host=/tmp dbname=x") == nullptr);
    CHECK(resolve_hosts_async("host=localhost hostaddr=127.0.0.1") == nullptr);
    CHECK(resolve_hosts_async("dbname=x") == nullptr); /* default socket */
    CHECK(resolve_hosts_async("not a connection string") == nullptr);
}

TEST(localhost_resolves_to_addresses_kept_with_the_name)
{
    ResolutionPtr r = resolve_hosts_async("host=localhost port=5433 dbname=x");
    REQUIRE(r != nullptr);
    REQUIRE(wait_done(r));
    CHECK(r->ok);
    CHECK(r->host.find("localhost") == 0);
    /* one hostaddr per host entry */
    size_t hosts = 1, addrs = 1;
    for (char c : r->host)
        hosts += c == ',';
    for (char c : r->hostaddr)
        addrs += c == ',';
    CHECK_EQ(hosts, addrs);
    CHECK(r->hostaddr.find("127.0.0.1") != std::string::npos || r->hostaddr.find("::1") != std::string::npos);
    CHECK(r->port.empty()); /* a single port applies to every entry as it is */
}

TEST(mixed_host_list_keeps_literals_and_expands_ports)
{
    ResolutionPtr r = resolve_hosts_async("host=10.1.2.3,localhost port=5001,5002");
    REQUIRE(r != nullptr);
    REQUIRE(wait_done(r));
    CHECK(r->ok);
    CHECK(r->host.find("10.1.2.3,localhost") == 0);
    CHECK(r->hostaddr.find(",") == 0); /* the literal needs no hostaddr */
    CHECK(r->port.find("5001,5002") == 0);
}

TEST(unknown_host_fails_with_libpq_style_message)
{
    ResolutionPtr r = resolve_hosts_async("host=no-such-host.invalid dbname=x");
    REQUIRE(r != nullptr);
    REQUIRE(wait_done(r));
    CHECK(!r->ok);
    CHECK(r->error.find("could not translate host name \"no-such-host.invalid\"") == 0);
}

TEST(pghost_is_used_when_the_string_names_no_host)
{
    setenv("PGHOST", "localhost", 1);
    ResolutionPtr r = resolve_hosts_async("dbname=x");
    unsetenv("PGHOST");
    REQUIRE(r != nullptr);
    REQUIRE(wait_done(r));
    CHECK(r->ok);
}

TEST(same_name_with_two_ports_keeps_both_entries)
{
    ResolutionPtr r = resolve_hosts_async("host=localhost,localhost port=6432,5432");
    REQUIRE(r != nullptr);
    REQUIRE(wait_done(r));
    CHECK(r->ok);
    CHECK(r->port.find("6432") != std::string::npos);
    CHECK(r->port.find("5432") != std::string::npos);
}

TEST(literals_with_zones_empty_hosts_and_services_are_left_to_libpq)
{
    setenv("PGHOST", "no-such-host.invalid", 1);
    CHECK(resolve_hosts_async("host=fe80::1%lo dbname=x") == nullptr);
    CHECK(resolve_hosts_async("host='' dbname=x") == nullptr); /* empty: the default socket, not PGHOST */
    CHECK(resolve_hosts_async("service=anything") == nullptr);
    unsetenv("PGHOST");
}

TEST(only_the_default_socket_left_after_a_failed_name_is_an_error)
{
    ResolutionPtr r = resolve_hosts_async("host=,no-such-host.invalid dbname=x");
    REQUIRE(r != nullptr);
    REQUIRE(wait_done(r));
    CHECK(!r->ok);
    CHECK(r->error.find("no-such-host.invalid") != std::string::npos);
}

TEST(helper_threads_run_every_task)
{
    std::atomic<int> ran{0};
    for (int i = 0; i < 50; i++)
        CHECK(run_on_helper_thread(HelperLane::Resolve, [&ran] { ran.fetch_add(1); }));
    for (int i = 0; i < 500 && ran.load() < 50; i++)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    CHECK_EQ(ran.load(), 50);
}
