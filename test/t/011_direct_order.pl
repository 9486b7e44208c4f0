# 011_direct_order.pl — direct calls with several targets never wait for
# each other.
#
# A direct call with several targets (RUN ON ALL) holds one borrowed
# connection per target while it borrows the next; when a pool has all the
# connections it may have, it waits for one to be given back. Two calls
# that borrowed in different orders could then each hold what the other
# waits for, until bgw_proxy.pool_wait_timeout fails them both. The rule
# (backend/direct_call.cpp): pools are borrowed in the order of their key
# hashes, whatever the order of the targets.
#
# Setup: one remote database and four pools on it (four connection strings
# that differ by application_name), each limited to one connection
# (bgw_proxy.workers = 1, max_pool_connections = 1). Cluster "fwd" lists
# them as partitions 0..3, cluster "rev" in the reverse order, so their
# calls need the same four connections in opposite target orders.
# pool_wait_timeout is 3 s: a deadlock would fail calls with 53300.
#
# Workload: pgbench, 8 clients, each call RUN ON ALL on "fwd" or "rev" at
# random, the remote holding each connection a little (pg_sleep 2 ms).
#
# Asserted: every transaction ran and none failed (no 53300, right
# answers); most calls ran direct (the workers' queue saw few of them), so
# the waits were backends waiting for each other; afterwards each pool
# still has its one connection (none closed) and both clusters answer.
# Then all again with every pool waiting on one channel
# (bgw_proxy.debug_wait_channels = 1): a wake-up that went to another
# pool's waiter used to leave the pool's own waiters asleep past
# pool_wait_timeout. Last, a direct call waiting for a connection shows
# in pg_stat_bgw_proxy's calls_waiting and longest_wait (the holder's
# remote statement runs until the test lets it end: no timing); and a
# session closes its copies of the sockets of connections the workers
# closed.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

my $clients = 8;
my $per_client = 60;

my $remote = PostgreSQL::Test::Cluster->new('remote11');
$remote->init;
$remote->start;
$remote->safe_psql('postgres', q{
CREATE FUNCTION part_of(s float8) RETURNS int LANGUAGE sql
    AS $$ SELECT substr(current_setting('application_name'), 4)::int FROM pg_sleep(s) $$;
-- runs until the test sets ctl.go (each loop reads it afresh)
CREATE TABLE ctl (go bool NOT NULL);
INSERT INTO ctl VALUES (true);
CREATE FUNCTION hold() RETURNS int LANGUAGE plpgsql AS $$
BEGIN
    WHILE NOT (SELECT go FROM ctl) LOOP
        PERFORM pg_sleep(0.01);
    END LOOP;
    RETURN 1;
END $$;
});

my $proxy = PostgreSQL::Test::Cluster->new('proxy11');
$proxy->init;
$proxy->append_conf('postgresql.conf',
	"shared_preload_libraries = 'bgw_proxy'\nbgw_proxy.workers = 1\n"
	  . "bgw_proxy.max_pool_connections = 1\nbgw_proxy.pool_wait_timeout = '3s'\n"
	  . "max_connections = 40\n");
$proxy->start;

my ($host, $port) = ($remote->host, $remote->port);
my @conn = map { "'host=$host port=$port dbname=postgres application_name=ord$_'" } 0 .. 3;
$proxy->safe_psql('postgres', qq{
CREATE EXTENSION bgw_proxy;
CREATE SERVER fwd FOREIGN DATA WRAPPER bgw_proxy OPTIONS (p0 $conn[0], p1 $conn[1], p2 $conn[2], p3 $conn[3]);
CREATE SERVER rev FOREIGN DATA WRAPPER bgw_proxy OPTIONS (p0 $conn[3], p1 $conn[2], p2 $conn[1], p3 $conn[0]);
CREATE FUNCTION ident(c text) RETURNS text LANGUAGE sql AS 'SELECT c';
CREATE FUNCTION part_of(c text, s float8) RETURNS SETOF int
    AS \$\$ CLUSTER ident(c); RUN ON ALL; SELECT part_of(s); \$\$ LANGUAGE bgw_proxy;
CREATE FUNCTION hold() RETURNS int
    AS \$\$ CLUSTER 'fwd'; RUN ON 0; \$\$ LANGUAGE bgw_proxy;
CREATE FUNCTION one() RETURNS int
    AS \$\$ CLUSTER 'fwd'; RUN ON 1; SELECT 1; \$\$ LANGUAGE bgw_proxy;
-- a wrong answer is a plain error: it aborts the pgbench client
CREATE FUNCTION check_all(c text) RETURNS int LANGUAGE plpgsql AS \$\$
DECLARE got int[] := ARRAY(SELECT part_of(c, 0.002));
BEGIN
    IF got IS DISTINCT FROM (CASE c WHEN 'fwd' THEN ARRAY[0, 1, 2, 3] ELSE ARRAY[3, 2, 1, 0] END) THEN
        RAISE EXCEPTION 'order: % got %', c, got;
    END IF;
    RETURN 1;
END \$\$;
});

my $submitted_sql = 'SELECT submitted FROM pg_stat_bgw_proxy_queue';
my $script = PostgreSQL::Test::Utils::tempdir() . '/order.sql';
open my $fh, '>', $script or die "cannot write $script: $!";
print $fh "\\set r random(0, 1)\nSELECT check_all(CASE :r WHEN 0 THEN 'fwd' ELSE 'rev' END);\n";
close $fh;

# The workload and its assertions; $how names the configuration.
sub run_workload
{
	my ($how) = @_;

	# the first calls go through the worker (a pool's statistics row, the
	# statement's result format); later ones run direct
	for my $c ('fwd', 'rev', 'fwd', 'rev')
	{
		is($proxy->safe_psql('postgres', "SELECT check_all('$c')"), '1', "$how: a call on $c works");
	}
	my $submitted_before = $proxy->safe_psql('postgres', $submitted_sql);

	my ($out, $err) = ('', '');
	my $rc = IPC::Run::run(
		[
			'pgbench', '-n', '-c', $clients, '-j', 1, '-t', $per_client, '-f', $script,
			'-h', $proxy->host, '-p', $proxy->port, 'postgres'
		],
		'<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(300));
	ok($rc, "$how: pgbench exited 0") or diag("stdout:\n$out\nstderr:\n$err");
	my $total = $clients * $per_client;
	like($out, qr/number of transactions actually processed: $total\/$total/,
		"$how: all $total calls ran, none failed")
	  or diag("stdout:\n$out\nstderr:\n$err");
	unlike($err, qr/53300|timed out waiting/, "$how: no call timed out waiting for a connection");

	my $through_worker = $proxy->safe_psql('postgres', $submitted_sql) - $submitted_before;
	note("$how: $through_worker of $total calls went through the worker");
	cmp_ok($through_worker, '<', $total / 2, "$how: most calls ran direct");

	is( $proxy->safe_psql('postgres',
			"SELECT sum(disconnects) FROM pg_stat_bgw_proxy WHERE cluster IN ('fwd', 'rev')"),
		'0', "$how: no pooled connection was closed");
	is( $remote->safe_psql('postgres',
			"SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'ord_'"),
		'4', "$how: the remote sees one connection per pool");
	for my $c ('fwd', 'rev')
	{
		is($proxy->safe_psql('postgres', "SELECT check_all('$c')"), '1', "$how: $c still answers");
	}
}

run_workload('default channels');

# Every pool waiting on the same channel (lend_table.h): a connection
# given back must still wake a waiter of its own pool, not only another
# pool's, which would find nothing and sleep on while the pool's own
# waiters sleep until pool_wait_timeout (53300).
$proxy->append_conf('postgresql.conf', "bgw_proxy.debug_wait_channels = 1\n");
$proxy->restart;
$remote->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM pg_stat_activity WHERE application_name LIKE 'ord_'")
  or die "the old proxy's connections did not end";
run_workload('all pools on one channel');

# A direct call waiting for the pool's one connection shows in
# pg_stat_bgw_proxy: calls_waiting and longest_wait (which counted only
# the calls queued at a worker before).
is($proxy->safe_psql('postgres', 'SELECT hold() + hold()'), '2', 'hold() works, direct from its second call');
$remote->safe_psql('postgres', 'UPDATE ctl SET go = false');
my $waits_sql = q{SELECT calls_waiting, longest_wait > 0 FROM pg_stat_bgw_proxy
    WHERE cluster = 'fwd' AND partition = 0};
my $submitted_before = $proxy->safe_psql('postgres', $submitted_sql);
my @sessions;
for my $who ('holder', 'waiter')
{
	my $h = { out => '', err => '' };
	$h->{run} = IPC::Run::start(
		[
			'psql', '-XAtq', '-h', $proxy->host, '-p', $proxy->port, '-d', 'postgres',
			'-c', "SET bgw_proxy.pool_wait_timeout = '10min'", '-c', 'SELECT hold()'
		],
		'<', \undef, '>', \$h->{out}, '2>', \$h->{err}, IPC::Run::timeout(300));
	push @sessions, $h;
	if ($who eq 'holder')
	{
		$remote->poll_query_until('postgres',
			"SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = 'ord0' AND state = 'active'")
		  or die 'the holder\'s call did not reach the remote';
	}
}
ok($proxy->poll_query_until('postgres', $waits_sql, "1|t"),
	'a direct call waiting for the connection: calls_waiting 1, longest_wait > 0')
  or diag($proxy->safe_psql('postgres', $waits_sql));
is($proxy->safe_psql('postgres', $submitted_sql), $submitted_before, 'both calls are direct: none went to the worker');
$remote->safe_psql('postgres', 'UPDATE ctl SET go = true');
for my $h (@sessions)
{
	$h->{run}->finish;
	is($h->{out}, "1\n", 'the held call and the waiting one both got their answer') or diag($h->{err});
}
is($proxy->safe_psql('postgres', $waits_sql), '0|f', 'no call waits any more');

# A backend's copies of the workers' sockets do not outlive their
# connections: after the workers closed theirs, a backend that borrowed
# them closes its copies as it goes on making calls (one checked per
# call), instead of keeping them open until it borrows the same entry
# again. Counted: the session's sockets (its client's, and its copies).
sub sockets_of
{
	my ($pid) = @_;
	opendir(my $d, "/proc/$pid/fd") or die "cannot read /proc/$pid/fd: $!";
	my $n = grep { (readlink("/proc/$pid/fd/$_") // '') =~ /^socket:/ } readdir $d;
	closedir $d;
	return $n;
}

my $session = $proxy->background_psql('postgres');
my $session_pid = $session->query_safe('SELECT pg_backend_pid()');
$session->query_safe("SELECT check_all('fwd') + check_all('fwd')");
is(sockets_of($session_pid), 5, 'a session that called every partition: its client socket and 4 copies');
$proxy->safe_psql('postgres', 'SELECT bgw_proxy_disconnect_idle()');
ok( $remote->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE application_name LIKE 'ord_'"),
	'the workers closed their connections');
is($session->query_safe('SELECT count(one()) FROM generate_series(1, 600)'), '600',
	'then 600 calls on one partition');
is(sockets_of($session_pid), 2,
	'the session closed its copies of the closed connections (left: its client, the one in use)');
$session->quit;

done_testing();
