# 003_pool_order.pl — concurrent calls over several partitions under a
# one-connection-per-partition limit.
#
# Two sessions at once run proxy functions whose partitions are tagged in
# opposite orders ([0, 1] and [1, 0]) on a cluster with max_connections 1.
# Asserted: both calls complete, each returns its rows in tagged order, the
# pool never holds more than one connection per partition, nothing is left
# in flight. (The worker reads every target as results arrive and the
# backend restores the order, so no call holds a connection unread while
# waiting for another; this test exercises that path under contention.)
# Each psql has a statement_timeout, so a stall shows as a failed call, not
# a hung suite.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

my $remote = PostgreSQL::Test::Cluster->new('remote3');
$remote->init;
$remote->start;
$remote->safe_psql('postgres', $_) for (
	"CREATE DATABASE p0", "CREATE DATABASE p1");
for my $p (0, 1) {
	$remote->safe_psql("p$p",
		"CREATE FUNCTION nap_where(s float8) RETURNS SETOF int LANGUAGE sql "
		  . "AS \$\$ SELECT $p FROM pg_sleep(s) \$\$");
}

my $proxy = PostgreSQL::Test::Cluster->new('proxy3');
$proxy->init;
$proxy->append_conf('postgresql.conf', "shared_preload_libraries = 'bgw_proxy'\n");
$proxy->start;
my ($host, $port) = ($remote->host, $remote->port);
$proxy->safe_psql('postgres', qq{
CREATE EXTENSION bgw_proxy;
CREATE SERVER duo FOREIGN DATA WRAPPER bgw_proxy OPTIONS (
    max_connections '1',
    p0 'host=$host port=$port dbname=p0', p1 'host=$host port=$port dbname=p1');
CREATE FUNCTION nap_where(parts int[], s float8) RETURNS SETOF int
    AS \$\$ CLUSTER 'duo'; RUN ON parts; SELECT * FROM nap_where(s); \$\$ LANGUAGE bgw_proxy;
});

# several rounds, two sessions each, opposite tag orders
my $rounds = 5;
for my $round (1 .. $rounds) {
	my @runs;
	for my $order ('ARRAY[0, 1]', 'ARRAY[1, 0]') {
		my ($out, $err) = ('', '');
		my $h = IPC::Run::start(
			[ 'psql', '-X', '-A', '-t', '-v', 'ON_ERROR_STOP=1',
			  '-d', $proxy->connstr('postgres') . " options='-c statement_timeout=20s'",
			  '-c', "SELECT string_agg(p::text, ',') FROM nap_where($order, 0.3) p" ],
			'>', \$out, '2>', \$err,
			IPC::Run::timeout(60));
		push @runs, [ $order, $h, \$out, \$err ];
	}
	for my $r (@runs) {
		my ($order, $h, $out, $err) = @$r;
		$h->finish;
		my $want = $order eq 'ARRAY[0, 1]' ? '0,1' : '1,0';
		(my $got = $$out) =~ s/\s+$//;
		is($got, $want, "round $round: $order completes, rows in tagged order")
		  or diag("stderr: $$err");
	}
}

# nothing left in flight, and the pool kept to its limit
is($proxy->safe_psql('postgres', 'SELECT sum(requests_in_flight) FROM pg_stat_bgw_proxy_workers'),
	'0', 'no call left in flight');
cmp_ok($remote->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE datname IN ('p0', 'p1') AND application_name = 'bgw_proxy'"),
	'<=', 2, 'at most one connection per partition');
my $log = slurp_file($proxy->logfile);
unlike($log, qr/terminated by signal|was terminated by/, 'no crash in the proxy log');

done_testing();
