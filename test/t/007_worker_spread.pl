# 007_worker_spread.pl — every worker serves every pool.
#
# One cluster, one role, 8 sessions calling at once (each call holds its
# remote connection for 0.2 s; the first ones wait at an advisory lock the
# test holds until four of them wait there at once, so the calls overlap
# whatever the machine's speed): the pool's home worker takes calls while
# it has at most one, the others go to the least loaded worker. Asserted:
# every call works, the partition's four connections (2 workers x 2) were
# busy at once, both workers served calls of this one cluster, the
# partition never had more
# connections from the proxy than workers x max_pool_connections (sampled
# while the calls run), the view shows one row for the pool with every call
# counted, and nothing is left in flight.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/../lib';
use BgwPsql;

$BgwPsql::poll_secs = 60;    # states reached on a busy 2-core machine

my $remote = PostgreSQL::Test::Cluster->new('remote7');
$remote->init;
$remote->start;
$remote->safe_psql('postgres', "CREATE DATABASE p0");
# a call waits at advisory lock 7 while the test holds it (the gate below)
$remote->safe_psql('p0',
	"CREATE FUNCTION nap(s float8) RETURNS int LANGUAGE sql "
	  . "AS \$\$ SELECT pg_advisory_xact_lock_shared(7); SELECT 1 FROM pg_sleep(s) \$\$");

my $proxy = PostgreSQL::Test::Cluster->new('proxy7');
$proxy->init;
$proxy->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'bgw_proxy'
bgw_proxy.workers = 2
bgw_proxy.max_pool_connections = 2
# the calls beyond the four at the gate wait for a connection until it opens
bgw_proxy.pool_wait_timeout = '120s'
});
$proxy->start;
my ($host, $port) = ($remote->host, $remote->port);
$proxy->safe_psql('postgres', qq{
CREATE EXTENSION bgw_proxy;
CREATE SERVER spread FOREIGN DATA WRAPPER bgw_proxy OPTIONS (
    p0 'host=$host port=$port dbname=p0 application_name=spread');
CREATE USER MAPPING FOR PUBLIC SERVER spread;
CREATE FUNCTION nap(s float8) RETURNS int
    AS \$\$ CLUSTER 'spread'; RUN ON 0; \$\$ LANGUAGE bgw_proxy;
});
is($proxy->safe_psql('postgres', 'SELECT nap(0)'), '1', 'a first call works');

my $served_sql = "SELECT string_agg(requests_served::text, ',' ORDER BY worker) FROM pg_stat_bgw_proxy_workers";
my @before = split /,/, $proxy->safe_psql('postgres', $served_sql);

# remote connections of the pool, sampled every 50 ms while the calls run
my $sampler_sql = q{
DO $$
DECLARE peak int := 0; n int;
BEGIN
    FOR i IN 1 .. 4000 LOOP  -- until spread_done (a bound for a broken test)
        PERFORM pg_stat_clear_snapshot();  -- a fresh pg_stat_activity each time
        SELECT count(*) INTO n FROM pg_stat_activity WHERE application_name = 'spread';
        peak := greatest(peak, n);
        EXIT WHEN EXISTS (SELECT FROM pg_stat_activity WHERE application_name = 'spread_done');
        PERFORM pg_sleep(0.05);
    END LOOP;
    RAISE NOTICE 'peak %', peak;
END $$;
};
my ($sout, $serr) = ('', '');
my $sampler = IPC::Run::start(
	[ 'psql', '-X', '-d', $remote->connstr('postgres'), '-c', $sampler_sql ],
	'>', \$sout, '2>', \$serr, IPC::Run::timeout(300));

# the gate: a session of the test holds advisory lock 7 on the partition
my $gate = IPC::Run::start(
	[ 'psql', '-X', '-d', $remote->connstr('p0') . ' application_name=spread_gate',
	  '-c', 'SELECT pg_advisory_lock(7)', '-c', 'SELECT pg_sleep(3600)' ],
	'>', \my $go, '2>', \my $ge, IPC::Run::timeout(300));
ok(poll_until($remote, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'spread_gate' "
		  . "AND wait_event = 'PgSleep'", '1'), 'the test holds the gate');

my $sessions = 8;
my $calls = 5;
my @runs;
for my $i (1 .. $sessions)
{
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[ 'psql', '-X', '-A', '-t', '-v', 'ON_ERROR_STOP=1',
		  '-d', $proxy->connstr('postgres') . " options='-c statement_timeout=120s'",
		  '-c', "SELECT sum(nap(0.2)) FROM generate_series(1, $calls)" ],
		'>', \$out, '2>', \$err, IPC::Run::timeout(180));
	push @runs, [ $h, \$out, \$err ];
}
# the partition's four connections (2 workers x 2) all wait at the gate at
# once: a worker holds at most two, so both workers serve the cluster
ok(poll_until($remote, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'spread' "
		  . "AND wait_event = 'advisory'", '4'), 'four calls wait at the gate at once, on four connections');
$remote->safe_psql('p0', "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'spread_gate'");
eval { $gate->finish; };
my $ok = 0;
for my $r (@runs)
{
	my ($h, $out, $err) = @$r;
	$h->finish;
	(my $got = $$out) =~ s/\s+$//;
	$ok++ if $got eq $calls;
	diag("stderr: $$err") if $$err ne '';
}
is($ok, $sessions, "all $sessions sessions made their $calls calls");

# stop the sampler: a session it sees by name
my $stopper = IPC::Run::start(
	[ 'psql', '-X', '-d', $remote->connstr('postgres') . ' application_name=spread_done', '-c', 'SELECT pg_sleep(2)' ],
	'>', \my $o2, '2>', \my $e2, IPC::Run::timeout(30));
$sampler->finish;
$stopper->finish;
my ($peak) = $serr =~ /peak (\d+)/;
ok(defined $peak, 'the sampler ran') or diag($serr);
cmp_ok($peak // 99, '<=', 4, 'the partition had at most workers x max_pool_connections connections');
cmp_ok($peak // 0, '>=', 2, 'the sampler saw calls on more than one connection at once');

my @after = split /,/, $proxy->safe_psql('postgres', $served_sql);
my @delta = map { $after[$_] - $before[$_] } 0 .. $#after;
is($delta[0] + $delta[1], $sessions * $calls, 'every call was served once');
cmp_ok($delta[0], '>', 0, 'worker 0 served calls of the cluster');
cmp_ok($delta[1], '>', 0, 'worker 1 served calls of the cluster');

is($proxy->safe_psql('postgres',
		"SELECT count(*) || ':' || sum(calls) FROM pg_stat_bgw_proxy WHERE cluster = 'spread'"),
	'1:' . ($sessions * $calls + 1), 'the view shows one row for the pool, every call counted');
is($proxy->safe_psql('postgres', 'SELECT sum(requests_in_flight) FROM pg_stat_bgw_proxy_workers'),
	'0', 'no call left in flight');
unlike(slurp_file($proxy->logfile), qr/terminated by signal|was terminated by/, 'no crash in the proxy log');

done_testing();
