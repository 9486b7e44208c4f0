# 010_replicas.pl — partitions with copies (multi-host connection strings):
# reads balanced by weight, writes to the primary and after a promotion to
# the new primary, nodes marked down and back up by the health checks,
# retries, RUN ON ANY around a dead partition, RUN ON ALL partial results,
# and pg_stat_bgw_proxy_nodes.
#
# Instances, all listening on 127.0.0.1:
#   proxy    shared_preload_libraries = 'bgw_proxy', 2 workers, health checks
#            every 300 ms with a 2 s timeout (3 failed checks in a row: down)
#   primary  "P": the remote schema below
#   standby  "S": streaming standby of P, made by pg_basebackup
#   copy     "C": a stand-alone instance with the same schema (so it is a
#            primary too)
#   dead     two ports nothing listens on (partitions that are down)
# The remote functions report which instance answered with
# inet_server_port(). Every cluster is a SQL/MED server (one is defined by
# the configuration functions) of its own, so each scenario has node rows
# and counters of its own in the view.
#
# Scenarios (in this order: the destructive ones last):
#  a  weights      {P,C} weights '3,1': of 400 reads, C answers 15-35 % (a
#                  statistical bound, ±4.6 standard deviations), P the rest;
#                  a cluster of the configuration functions, weights '0,1':
#                  every read on C (a weight-0 node gets none, even when it
#                  is the first host); read_from 'standby' / 'primary' on
#                  {P,S}: every read on S / on P; a write on {P,S} lands on
#                  P; two primaries ({P,C}): a write fails with 55000 naming
#                  both nodes and runs nowhere, reads go on; a single-host
#                  cluster has no node rows.
#  e  lag          {P,S}, max_replica_lag '256kB': replay paused on S, 2 MB
#                  of WAL written on P: the view says S is 'lagging'; 100
#                  reads, none on S; replay resumed: S 'up', reads reach S.
#  h  retries      {P,S}: a remote function logs each attempt (and a write
#                  also bumps a sequence) and terminates its own session on
#                  the "armed" instance. A read that hits the armed S is
#                  retried on P: the call succeeds, its attempt is in both
#                  logs, S's retries = 1. A write on the armed P fails, its
#                  attempt is in P's log once and nowhere else, the
#                  sequence moved by one, the caller got 08006, and no node
#                  counts a retry.
#  i  bad login    {P,C}, both up: a superuser mapped to a remote user
#                  that does not exist calls: 08001 (both nodes tried); the
#                  failure has both nodes checked at once with the login
#                  the checks last succeeded with, and they stay 'up'; the
#                  other roles' reads succeed.
#  f  RUN ON ANY   partition 0 {P,C}, partition 1 {dead,dead}: once both
#                  dead nodes are 'down' (calls to partition 1 fail with
#                  08001), 200 RUN ON ANY reads all succeed, on P or C.
#  g  RUN ON ALL   the same partitions: by default the call fails; with
#                  partial_results 'on' it returns partition 0's row and a
#                  WARNING 'partition 1 of cluster "allp" failed: ...'
#                  (before and after the dead nodes are known down); the
#                  same with a single-host dead partition 1.
#  b  stop C mid-load   4 sessions loop on reads of {P,C} (weights 1,1);
#                  C is stopped (fast) while they run; it goes 'down'; the
#                  loops go on for 200 more reads; at most one read per
#                  session (in flight at the stop, its row already sent)
#                  fails (08006, counted by the loop); every other read
#                  that failed on C was retried (C's errors - retries =
#                  failed reads; whether any read raced the stop is
#                  timing, so their number is not asserted).
#  c  refused and hung  a new cluster {P,C} while C is stopped: C 'down'
#                  (reason: refused), every call meanwhile succeeded; C
#                  restarted: 'up' again (also in b's cluster), reads reach
#                  it. Then C's postmaster alone (it accepts no connection;
#                  the sessions it has still answer), and afterwards every
#                  process of C (postmaster and children, by pid), is
#                  SIGSTOPped: each time C is 'down' within the documented
#                  bound (interval + timeout: a check that cannot connect
#                  in time marks the node down at once; with slack for a
#                  busy machine), reads meanwhile all succeed on
#                  P; after SIGCONT C is 'up' and gets reads again.
#  d  promotion    {P,S}: a write lands on P; P stopped: P 'down', a write
#                  fails with 08001 (no usable node); pg_promote() on S: the
#                  view shows S 'primary', and a write lands on S.
# Every wait is for a state (polled, bounded by $BgwPsql::poll_secs); the
# one time measured is that of the hung node going down, against a
# generous bound. At the end: no crash in the proxy's log.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use FindBin;
use lib "$FindBin::Bin/../lib";
use BgwPsql;
use Time::HiRes qw(usleep time);

$BgwPsql::poll_secs = 60;     # states reached on a busy 2-core machine
$BgwPsql::psql_secs = 120;
my $t_start = time();

# health checks (the proxy's GUCs)
my $hc_interval = 0.3;
my $hc_timeout  = 10;    # a slow connect on a busy machine is not a dead node
my $hc_timeout_c = 2;    # cluster c's, whose hung node's time to 'down' is measured
my $hc_retries  = 3;

my $crash_re =
  qr/terminated by signal|was terminated by|server process .* exited with exit code [^01]/;

# processes of the copy stopped with SIGSTOP (continued at exit whatever
# happens, or the teardown's pg_ctl stop would hang)
my @stopped;
END { kill 'CONT', @stopped if @stopped; }

# ------------------------------------------------------------------ nodes

my $remote_conf = qq{
listen_addresses = '127.0.0.1'
max_connections = 100
};

my $schema = q{
CREATE TABLE items (v int, port int);
CREATE TABLE arm (port int);
CREATE TABLE filler (t text);
CREATE SEQUENCE attempts;
CREATE FUNCTION who(i int) RETURNS int LANGUAGE sql AS $$ SELECT inet_server_port() $$;
CREATE FUNCTION who_set() RETURNS SETOF int LANGUAGE sql AS $$ SELECT inet_server_port() $$;
CREATE FUNCTION put(v int) RETURNS int LANGUAGE sql
    AS $$ INSERT INTO items VALUES (v, inet_server_port()) RETURNING port $$;
-- each attempt leaves a line in the log; on an armed instance the session
-- then terminates itself (FATAL 57P01 and the connection closes, as when
-- the instance is shut down under the call)
CREATE FUNCTION flaky_read(tag text) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
    RAISE LOG 'bgwtap attempt [%] on %', tag, inet_server_port();
    IF EXISTS (SELECT 1 FROM arm WHERE port = inet_server_port()) THEN
        PERFORM pg_terminate_backend(pg_backend_pid());
        PERFORM pg_sleep(60);
    END IF;
    RETURN inet_server_port();
END $$;
-- the same for a write: the sequence counts the attempts (nextval is not
-- rolled back with the transaction)
CREATE FUNCTION flaky_write(tag text) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
    RAISE LOG 'bgwtap attempt [%] on %', tag, inet_server_port();
    PERFORM nextval('attempts');
    IF EXISTS (SELECT 1 FROM arm WHERE port = inet_server_port()) THEN
        PERFORM pg_terminate_backend(pg_backend_pid());
        PERFORM pg_sleep(60);
    END IF;
    RETURN inet_server_port();
END $$;
};

my $primary = PostgreSQL::Test::Cluster->new('primary10');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', $remote_conf);
$primary->start;
$primary->safe_psql('postgres', $schema);
$primary->backup('b10');

my $standby = PostgreSQL::Test::Cluster->new('standby10');
$standby->init_from_backup($primary, 'b10', has_streaming => 1);
$standby->start;
$primary->wait_for_catchup($standby, 'replay', $primary->lsn('insert'));

my $copy = PostgreSQL::Test::Cluster->new('copy10');
$copy->init;
$copy->append_conf('postgresql.conf', $remote_conf);
$copy->start;
$copy->safe_psql('postgres', $schema);

my $proxy = PostgreSQL::Test::Cluster->new('proxy10');
$proxy->init;
$proxy->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'bgw_proxy'
bgw_proxy.workers = 2
bgw_proxy.health_check_interval = '${\ ($hc_interval * 1000)}ms'
bgw_proxy.health_check_timeout = '${hc_timeout}s'
bgw_proxy.health_check_retries = $hc_retries
log_line_prefix = '%m [%p] %b %a '
});
$proxy->start;

my ($pP, $pS, $pC) = ($primary->port, $standby->port, $copy->port);
my ($dead1, $dead2) =
  (PostgreSQL::Test::Cluster::get_free_port(), PostgreSQL::Test::Cluster::get_free_port());
note("ports: P $pP, S $pS, C $pC, dead $dead1 $dead2, proxy " . $proxy->port);

is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', 'S is a standby');
is($standby->safe_psql('postgres', "SELECT to_regproc('flaky_read') IS NOT NULL"),
	't', 'S has the schema, through replication');
is( $primary->safe_psql(
		'postgres', "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"),
	'1',
	'P streams to S');

# a multi-host connection string over these ports, with the cluster's own
# application_name
sub hosts
{
	my ($app, @ports) = @_;
	return 'host=' . join(',', ('127.0.0.1') x @ports) . ' port=' . join(',', @ports)
	  . " dbname=postgres application_name=bgwtap_$app";
}

# a SQL/MED cluster: partitions (arrayrefs of ports), then options
sub server
{
	my ($name, $parts, %opt) = @_;
	my @o;
	for my $i (0 .. $#$parts)
	{
		push @o, "partition_$i '" . hosts($name, @{ $parts->[$i] }) . "'";
	}
	push @o, "$_ '$opt{$_}'" for sort keys %opt;
	return "CREATE SERVER $name FOREIGN DATA WRAPPER bgw_proxy OPTIONS (" . join(', ', @o)
	  . ");\nCREATE USER MAPPING FOR PUBLIC SERVER $name;\n";
}

# a proxy function: name(args) returns ret, on cluster, with body, volatility
sub fn
{
	my ($sig, $ret, $cluster, $body, $vol) = @_;
	return "CREATE FUNCTION $sig RETURNS $ret AS \$\$ CLUSTER '$cluster'; $body \$\$ "
	  . "LANGUAGE bgw_proxy $vol;\n";
}

# each piece on its own, so a piece the build refuses is one failed test
# and the rest still runs
sub setup_ok
{
	my ($what, $sql) = @_;
	my ($rc, $out, $err) = run_sql($proxy, 'tap_setup', [$sql]);
	is($rc, 0, "setup: $what") or diag($err);
}
setup_ok('extension', 'CREATE EXTENSION bgw_proxy');
setup_ok($_->[0], join('', @{$_}[ 1 .. $#$_ ])) for (
	# a: weights, read_from, two primaries, a single-host cluster
	[
		'w: {P,C} weights 3,1',
		server('w', [ [ $pP, $pC ] ], partition_0_weights => '3,1'),
		fn('who_w(i int)', 'int', 'w', 'RUN ON 0; TARGET who;', 'STABLE'),
		fn('put_w(v int)', 'int', 'w', 'RUN ON 0; TARGET put;', 'VOLATILE')
	],
	[
		"rs: {P,S} read_from 'standby'",
		server('rs', [ [ $pP, $pS ] ], read_from => 'standby'),
		fn('who_rs(i int)', 'int', 'rs', 'RUN ON 0; TARGET who;', 'STABLE'),
		fn('put_rs(v int)', 'int', 'rs', 'RUN ON 0; TARGET put;', 'VOLATILE')
	],
	[
		"rp: {P,S} read_from 'primary'",
		server('rp', [ [ $pP, $pS ] ], read_from => 'primary'),
		fn('who_rp(i int)', 'int', 'rp', 'RUN ON 0; TARGET who;', 'IMMUTABLE')
	],
	[
		'single: {P}',
		server('single', [ [$pP] ]),
		fn('who_single(i int)', 'int', 'single', 'RUN ON 0; TARGET who;', 'STABLE')
	],
	# e: lag
	[
		"lag: {P,S} max_replica_lag '256kB'",
		server('lag', [ [ $pP, $pS ] ], max_replica_lag => '256kB'),
		fn('who_lag(i int)', 'int', 'lag', 'RUN ON 0; TARGET who;', 'STABLE')
	],
	# h: retries
	[
		'hr, hw: {P,S}',
		server('hr', [ [ $pP, $pS ] ]),
		fn('flaky_read(tag text)', 'int', 'hr', 'RUN ON 0;', 'STABLE'),
		server('hw', [ [ $pP, $pS ] ]),
		fn('flaky_write(tag text)', 'int', 'hw', 'RUN ON 0;', 'VOLATILE')
	],
	# i: one role's bad login; badsuper is mapped to a remote user that
	# does not exist (a superuser: no password needed)
	[
		'lg: {P,C}, badsuper mapped to a missing remote user',
		server('lg', [ [ $pP, $pC ] ]),
		fn('who_lg(i int)', 'int', 'lg', 'RUN ON 0; TARGET who;', 'STABLE'),
		'CREATE ROLE badsuper SUPERUSER;',
		"CREATE USER MAPPING FOR badsuper SERVER lg OPTIONS (user 'bgwtap_no_such_user');"
	],
	# f: RUN ON ANY
	[
		'any2: {P,C} {dead,dead}',
		server('any2', [ [ $pP, $pC ], [ $dead1, $dead2 ] ]),
		fn('who_any(i int)', 'int', 'any2', 'RUN ON ANY; TARGET who;', 'STABLE'),
		fn('who_on(i int)', 'int', 'any2', 'RUN ON i; TARGET who;', 'STABLE')
	],
	# g: RUN ON ALL
	[
		'allf: {P,C} {dead,dead}',
		server('allf', [ [ $pP, $pC ], [ $dead1, $dead2 ] ]),
		fn('who_allf()', 'SETOF int', 'allf', 'RUN ON ALL; TARGET who_set;', 'STABLE')
	],
	[
		'allp: {P,C} {dead,dead} partial_results',
		server('allp', [ [ $pP, $pC ], [ $dead1, $dead2 ] ], partial_results => 'on'),
		fn('who_allp()', 'SETOF int', 'allp', 'RUN ON ALL; TARGET who_set;', 'STABLE')
	],
	[
		'allps: {P,S} {dead} partial_results',
		server('allps', [ [ $pP, $pS ], [$dead1] ], partial_results => 'on'),
		fn('who_allps()', 'SETOF int', 'allps', 'RUN ON ALL; TARGET who_set;', 'VOLATILE')
	],
	# b: a node stopped mid-load; the load's control and counter
	[
		'b: {P,C} weights 1,1',
		server('b', [ [ $pP, $pC ] ], partition_0_weights => '1,1'),
		fn('who_b(i int)', 'int', 'b', 'RUN ON 0; TARGET who;', 'STABLE'),
		'CREATE TABLE ctl (stop bool NOT NULL); INSERT INTO ctl VALUES (false);',
		'CREATE SEQUENCE reads_b; CREATE SEQUENCE failed_b;'
	],
	# c: refused, hung
	[
		'c: {P,C}',
		server('c', [ [ $pP, $pC ] ], health_check_timeout => "${hc_timeout_c}s"),
		fn('who_c(i int)', 'int', 'c', 'RUN ON 0; TARGET who;', 'STABLE')
	],
	# d: promotion
	[
		'pro: {P,S}',
		server('pro', [ [ $pP, $pS ] ]),
		fn('put_pro(v int)', 'int', 'pro', 'RUN ON 0; TARGET put;', 'VOLATILE')
	]);

# a cluster of the configuration functions: weights '0,1' as a config key
my $cfw_conn = hosts('cfw', $pP, $pC);
setup_ok(
	"cfw: configuration functions, weights '0,1'", qq{
CREATE SCHEMA plproxy;
CREATE TABLE plproxy.parts (name text, nr int, conn text);
CREATE TABLE plproxy.options (name text, key text, val text);
INSERT INTO plproxy.parts VALUES ('cfw', 0, '$cfw_conn');
INSERT INTO plproxy.options VALUES ('cfw', 'partition_0_weights', '0,1');
CREATE FUNCTION plproxy.get_cluster_version(cluster_name text) RETURNS int4
    LANGUAGE sql AS \$\$ SELECT 1 \$\$;
CREATE FUNCTION plproxy.get_cluster_partitions(cluster_name text) RETURNS SETOF text
    LANGUAGE sql AS \$\$ SELECT conn FROM plproxy.parts WHERE name = cluster_name ORDER BY nr \$\$;
CREATE FUNCTION plproxy.get_cluster_config(cluster_name text, OUT key text, OUT val text)
    RETURNS SETOF record LANGUAGE sql
    AS \$\$ SELECT key, val FROM plproxy.options WHERE name = cluster_name \$\$;
}
	  . fn('who_cfw(i int)', 'int', 'cfw', 'RUN ON 0; TARGET who;', 'STABLE'));

# ---------------------------------------------------------------- helpers

sub node_where
{
	my ($cl, $port) = @_;
	return "FROM pg_stat_bgw_proxy_nodes WHERE cluster = '$cl' AND node = '127.0.0.1:$port'";
}

sub node_val
{
	my ($cl, $port, $expr) = @_;
	return $proxy->safe_psql('postgres', "SELECT $expr " . node_where($cl, $port));
}

# every row of the cluster, for diagnostics
sub nodes_dump
{
	my ($cl) = @_;
	my ($rc, $out, $err) = run_sql($proxy, 'tap_dump',
		[ "SELECT * FROM pg_stat_bgw_proxy_nodes WHERE cluster = '$cl' "
			  . 'ORDER BY partition, node COLLATE "C"' ]);
	return "pg_stat_bgw_proxy_nodes of $cl:\n$out$err";
}

# Wait until `expr` of the node's view row is `want`; `call`, if given, is
# run (errors allowed, counted in @warm_errors) before each look, so the
# node gets known and checked. Returns the seconds it took (true), or 0
# after a failed test.
my @warm_errors;
sub wait_node
{
	my ($cl, $port, $expr, $want, $what, $call) = @_;
	my $t0 = time();
	my $deadline = $t0 + $BgwPsql::poll_secs;
	my ($rc, $out, $err);
	while (1)
	{
		if (defined $call)
		{
			($rc, $out, $err) = run_sql($proxy, 'tap_warm', [$call]);
			push @warm_errors, "$call: $err" if $rc != 0;
		}
		($rc, $out, $err) = run_sql($proxy, 'tap_poll', ["SELECT $expr " . node_where($cl, $port)]);
		if ($rc == 0 && $out eq $want)
		{
			pass($what);
			return (time() - $t0) || 0.001;
		}
		last if time() > $deadline;
		usleep(100_000);
	}
	fail($what);
	diag("127.0.0.1:$port of $cl: $expr is '$out' ($err), want '$want'\n" . nodes_dump($cl));
	return 0;
}

# n reads of fn(i) in one statement (all must succeed): rc, {port => count}, stderr
sub reads
{
	my ($fn, $n) = @_;
	my ($rc, $out, $err) =
	  run_sql($proxy, "tap_$fn", ["SELECT $fn(i) FROM generate_series(1, $n) i"]);
	my %c;
	$c{$_}++ for grep { length } split /\n/, $out;
	return ($rc, \%c, $err);
}

sub count_str
{
	my ($c) = @_;
	return join(', ', map { "$_: $c->{$_}" } sort keys %$c) || 'none';
}

sub count_matches
{
	my ($text, $re) = @_;
	my $n = () = $text =~ /$re/g;
	return $n;
}

sub scenario { note("---- scenario $_[0]"); }

ok(poll_until($proxy, 'SELECT count(pid) FROM pg_stat_bgw_proxy_workers', '2'),
	'the two workers run');
# without the view there is nothing to wait for: say so and stop here
# (every poll below would otherwise run into its bound)
if (!ok( $proxy->safe_psql('postgres', "SELECT to_regclass('pg_stat_bgw_proxy_nodes') IS NOT NULL")
		  eq 't',
		'the view pg_stat_bgw_proxy_nodes exists'))
{
	done_testing();
	exit 0;
}

# ------------------------------------------------------ a. reads by weight
scenario('a: reads spread by weight, read_from, two primaries');
{
	wait_node('w', $_, "role || '/' || state", 'primary/up', "w: node $_ is a primary, up",
		'SELECT who_w(0)')
	  for $pP, $pC;
	is(node_val('w', $pP, 'weight') . ',' . node_val('w', $pC, 'weight'),
		'3,1', 'w: the view shows the weights 3 and 1');
	my $n = 400;
	my ($rc, $c, $err) = reads('who_w', $n);
	is($rc, 0, "w: $n reads succeeded") or diag($err);
	note('w: reads per port: ' . count_str($c));
	my ($onP, $onC) = ($c->{$pP} // 0, $c->{$pC} // 0);
	is($onP + $onC, $n, 'w: every read answered by P or C');
	my $share = $onC / $n;
	ok($share >= 0.15 && $share <= 0.35,
		sprintf('w: weights 3,1: C answered %.1f%% of the reads (expected 25%%, allowed 15-35%%)',
			100 * $share));
	my $node_calls = node_val('w', $pP, 'calls') + node_val('w', $pC, 'calls');
	cmp_ok($node_calls, '>=', $n, "w: the view counts the calls of both nodes ($node_calls)");

	# configuration functions, weights '0,1': P (the first host) gets none
	wait_node('cfw', $pC, 'state', 'up', "cfw: node C up", 'SELECT who_cfw(0)');
	($rc, $c, $err) = reads('who_cfw', 200);
	is($rc, 0, 'cfw: 200 reads succeeded') or diag($err);
	is(count_str($c), "$pC: 200", "cfw: weights '0,1' (a config key): every read on C, none on P");

	# read_from
	wait_node('rs', $pS, "role || '/' || state", 'standby/up', 'rs: S is a standby, up',
		'SELECT who_rs(0)');
	wait_node('rp', $pP, "role || '/' || state", 'primary/up', 'rp: P is a primary, up',
		'SELECT who_rp(0)');
	($rc, $c, $err) = reads('who_rs', 100);
	is($rc, 0, "rs: 100 reads succeeded") or diag($err);
	is(count_str($c), "$pS: 100", "rs: read_from 'standby': every read on S");
	($rc, $c, $err) = reads('who_rp', 100);
	is($rc, 0, "rp: 100 reads succeeded") or diag($err);
	is(count_str($c), "$pP: 100", "rp: read_from 'primary' (an IMMUTABLE function): every read on P");
	my $out;
	($rc, $out, $err) = run_sql($proxy, 'tap_rs', ['SELECT put_rs(101)']);
	is($out, $pP, 'rs: a write (VOLATILE) goes to the primary') or diag($err);
	is($primary->safe_psql('postgres', 'SELECT port FROM items WHERE v = 101'),
		$pP, 'rs: the row is on P');

	# two primaries in one partition: writes fail naming both, reads go on
	($rc, $out, $err) = run_sql($proxy, 'tap_w', ['SELECT put_w(102)']);
	isnt($rc, 0, 'w: a write with two primaries fails');
	like($err, qr/ERROR:  55000: /, 'w: with SQLSTATE 55000');
	ok($err =~ /127\.0\.0\.1:$pP/ && $err =~ /127\.0\.0\.1:$pC/,
		"w: the error names both primaries (127.0.0.1:$pP, 127.0.0.1:$pC)")
	  or diag("stderr: $err");
	is( $primary->safe_psql('postgres', 'SELECT count(*) FROM items WHERE v = 102') . ','
		  . $copy->safe_psql('postgres', 'SELECT count(*) FROM items WHERE v = 102'),
		'0,0',
		'w: the write ran nowhere');
	($rc, $c, $err) = reads('who_w', 20);
	is($rc, 0, 'w: reads go on') or diag($err);

	# a single-host partition has no node rows
	($rc, $out, $err) = run_sql($proxy, 'tap_single', ['SELECT who_single(1)']);
	is($out, $pP, 'single: a single-host call works') or diag($err);
	is($proxy->safe_psql('postgres', "SELECT count(*) FROM pg_stat_bgw_proxy_nodes WHERE cluster = 'single'"),
		'0', 'single: a single-host partition has no node rows');
}

# ------------------------------------------------------------ e. lag
scenario('e: a standby lagging beyond max_replica_lag gets no reads');
{
	wait_node('lag', $pS, "role || '/' || state", 'standby/up', 'lag: S is a standby, up',
		'SELECT who_lag(0)');
	wait_node('lag', $pP, 'state', 'up', 'lag: P up', 'SELECT who_lag(0)');
	$standby->safe_psql('postgres', 'SELECT pg_wal_replay_pause()');
	ok(poll_until($standby, 'SELECT pg_get_wal_replay_pause_state()', 'paused'),
		'lag: replay paused on S');
	$primary->safe_psql('postgres',
		"INSERT INTO filler SELECT repeat('x', 1000) FROM generate_series(1, 2000)");
	wait_node('lag', $pS, 'state', 'lagging', "lag: S is 'lagging' once 2 MB of WAL wait for replay");
	cmp_ok(node_val('lag', $pS, 'lag_bytes'), '>', 256 * 1024,
		'lag: the view shows a lag above the limit');
	my ($rc, $c, $err) = reads('who_lag', 100);
	is($rc, 0, 'lag: 100 reads succeeded') or diag($err);
	is(count_str($c), "$pP: 100", 'lag: every read on P, none on the lagging S');

	$standby->safe_psql('postgres', 'SELECT pg_wal_replay_resume()');
	wait_node('lag', $pS, 'state', 'up', "lag: S 'up' again once replay resumed");
	($rc, $c, $err) = reads('who_lag', 100);
	is($rc, 0, 'lag: 100 reads succeeded') or diag($err);
	note('lag: reads per port: ' . count_str($c));
	cmp_ok($c->{$pS} // 0, '>', 0, 'lag: reads reach S again');
}

# ---------------------------------------------------------- h. retries
scenario('h: a read that lost its node is retried, a write never');
{
	wait_node('hr', $_, 'state', 'up', "hr: node $_ up", "SELECT flaky_read('warm')")
	  for $pP, $pS;
	# arm S: a session there terminates itself in flaky_read
	$primary->safe_psql('postgres', "INSERT INTO arm VALUES ($pS)");
	$primary->wait_for_catchup($standby, 'replay', $primary->lsn('insert'));

	my $off_p = -s $primary->logfile;
	my $off_s = -s $standby->logfile;
	my ($hit, $calls, $failed) = (undef, 0, 0);
	for my $k (1 .. 60)
	{
		my ($rc, $out, $err) = run_sql($proxy, 'tap_hr', ["SELECT flaky_read('r$k')"]);
		$calls++;
		if ($rc != 0)
		{
			$failed++;
			diag("read r$k failed: $err");
		}
		if (slurp_file($standby->logfile, $off_s) =~ /bgwtap attempt \[r$k\] on/)
		{
			$hit = $k;
			is($out, $pP, "hr: read r$k, whose session on S was terminated, got P's answer");
			last;
		}
	}
	is($failed, 0, "hr: all $calls reads succeeded");
	ok(defined $hit, 'hr: a read hit the armed S') or $hit = 0;
	my $log_p = slurp_file($primary->logfile, $off_p);
	my $log_s = slurp_file($standby->logfile, $off_s);
	is( count_matches($log_s, qr/bgwtap attempt \[r$hit\] on/) . ','
		  . count_matches($log_p, qr/bgwtap attempt \[r$hit\] on/),
		'1,1', "hr: read r$hit ran once on S and once more, on P (retried once)");
	is(node_val('hr', $pS, 'retries'), '1', "hr: S's retries = 1");

	# the write: arm P
	wait_node('hw', $pP, "role || '/' || state", 'primary/up', 'hw: P is a primary, up',
		"SELECT flaky_write('warm')");
	$primary->safe_psql('postgres', "INSERT INTO arm VALUES ($pP)");
	my $seq0 = $primary->safe_psql('postgres', 'SELECT last_value FROM attempts');
	$off_p = -s $primary->logfile;
	$off_s = -s $standby->logfile;
	my ($rc, $out, $err) = run_sql($proxy, 'tap_hw', ["SELECT flaky_write('w1')"]);
	isnt($rc, 0, 'hw: the write whose session was terminated failed');
	like($err, qr/^ERROR:  08006: /m, 'hw: the caller got an error: 08006, connection lost')
	  or diag("stdout: $out");
	note("hw: the error: $err");
	is($primary->safe_psql('postgres', 'SELECT last_value FROM attempts'),
		$seq0 + 1, 'hw: the remote function ran once (the sequence moved by 1)');
	is( count_matches(slurp_file($primary->logfile, $off_p), qr/bgwtap attempt \[w1\] on/) . ','
		  . count_matches(slurp_file($standby->logfile, $off_s), qr/bgwtap attempt \[w1\] on/),
		'1,0',
		'hw: its attempt is in P\'s log once, not in S\'s');
	is( $proxy->safe_psql('postgres',
			"SELECT sum(retries) FROM pg_stat_bgw_proxy_nodes WHERE cluster = 'hw'"),
		'0',
		'hw: no retry counted');

	$primary->safe_psql('postgres', 'DELETE FROM arm');
	$primary->wait_for_catchup($standby, 'replay', $primary->lsn('insert'));
	wait_node('hw', $pP, 'state', 'up', 'hw: P up afterwards');
	($rc, $out, $err) = run_sql($proxy, 'tap_hw', ["SELECT flaky_write('w2')"]);
	is($out, $pP, 'hw: disarmed, a write works') or diag($err);
}

# ------------------------------------------- i. one role's bad login
scenario('i: a role that cannot log in does not take the nodes down for the others');
{
	wait_node('lg', $_, 'state', 'up', "lg: $_ up", 'SELECT who_lg(1)') for $pP, $pC;
	my ($rc, $out, $err) = run_sql($proxy, 'tap_lg', ['SET ROLE badsuper', 'SELECT who_lg(1)']);
	like($err, qr/ERROR:  08001: /, 'lg: the bad login\'s read fails to connect (on both nodes)')
	  or diag("rc $rc, stdout $out");
	is( $proxy->safe_psql('postgres',
			"SELECT count(*) FROM pg_stat_bgw_proxy_nodes WHERE cluster = 'lg' AND last_failure IS NOT NULL"),
		'2',
		'lg: both nodes recorded the failure');
	# the failure had both nodes checked at once, with the login the checks
	# last succeeded with: they stay up
	ok( poll_until(
			$proxy,
			"SELECT bool_and(last_check > last_failure AND last_check_ok AND state = 'up') "
			  . "FROM pg_stat_bgw_proxy_nodes WHERE cluster = 'lg'",
			't'),
		'lg: both nodes checked after the failure, and still up') or diag(nodes_dump('lg'));
	my $c;
	($rc, $c, $err) = reads('who_lg', 40);
	is($rc, 0, 'lg: the other roles\' reads succeed') or diag($err);
}

# ------------------------------------------------------- f. RUN ON ANY
scenario('f: RUN ON ANY skips a partition whose nodes are all down');
{
	wait_node('any2', $_, 'state', 'down', "any2: dead node $_ (partition 1) down",
		'SELECT who_on(1)')
	  for $dead1, $dead2;
	my ($rc, $out, $err) = run_sql($proxy, 'tap_any', ['SELECT who_on(1)']);
	like($err, qr/ERROR:  08001: /, 'any2: a call to partition 1 fails with 08001')
	  or diag("rc $rc, stdout $out");
	my $c;
	($rc, $c, $err) = reads('who_any', 200);
	is($rc, 0, 'any2: 200 RUN ON ANY reads succeeded') or diag($err);
	is(($c->{$pP} // 0) + ($c->{$pC} // 0), 200, 'any2: all of them on partition 0 (P or C)')
	  or diag(count_str($c));
}

# ------------------------------------------------------- g. RUN ON ALL
scenario('g: RUN ON ALL, partial results');
{
	my ($rc, $out, $err) = run_sql($proxy, 'tap_all', ['SELECT * FROM who_allf()']);
	isnt($rc, 0, 'allf: by default RUN ON ALL fails when a partition fails');
	like($err, qr/ERROR:  08001: /, 'allf: with 08001') or diag("stdout: $out");
	for my $round (1, 2)
	{
		($rc, $out, $err) = run_sql($proxy, 'tap_all', ['SELECT * FROM who_allp()']);
		is($rc, 0, "allp ($round): with partial_results the call succeeds") or diag($err);
		like($out, qr/^(?:$pP|$pC)$/, "allp ($round): it returns partition 0's row, only");
		like(
			$err,
			qr/^WARNING:  (?:[0-9A-Z]{5}: )?partition 1 of cluster "allp" failed: .+/m,
			"allp ($round): with a WARNING naming partition 1 and why");
		is(count_matches($err, qr/^WARNING: /m), 1, "allp ($round): one WARNING")
		  or diag($err);
		# (the second round, once its nodes are known down)
		if ($round == 1)
		{
			wait_node('allp', $_, 'state', 'down', "allp: dead node $_ down",
				'SELECT count(*) FROM who_allp()')
			  for $dead1, $dead2;
		}
	}
	# a single-host partition 1, and a write (VOLATILE) function
	($rc, $out, $err) = run_sql($proxy, 'tap_all', ['SELECT * FROM who_allps()']);
	is($rc, 0, 'allps: partial_results with a single-host partition: the call succeeds')
	  or diag($err);
	like($out, qr/^$pP$/, "allps: it returns partition 0's row (a write: from the primary P)");
	like(
		$err,
		qr/^WARNING:  (?:[0-9A-Z]{5}: )?partition 1 of cluster "allps" failed: .+/m,
		'allps: with a WARNING naming partition 1');
}

# --------------------------------------------- b. a node stopped mid-load
scenario('b: a node stopped mid-load: reads move to P');
{
	wait_node('b', $_, 'state', 'up', "b: node $_ up", 'SELECT who_b(0)') for $pP, $pC;
	my $loop = q{DO $$
DECLARE i int := 0;
BEGIN
    WHILE NOT (SELECT stop FROM ctl) LOOP
        i := i + 1;
        BEGIN
            PERFORM who_b(i);
            PERFORM nextval('reads_b');
        EXCEPTION WHEN connection_exception THEN
            PERFORM nextval('failed_b');
        END;
    END LOOP;
END $$};
	my @h = map { start_call($proxy, "tap_load_$_", [$loop]) } 1 .. 4;
	ok(poll_until($proxy, 'SELECT calls >= 50 ' . node_where('b', $pC), 't'),
		'b: the load runs, C answers reads');
	$copy->stop('fast');
	wait_node('b', $pC, 'state', 'down', "b: C stopped under load: 'down'");
	my $done = $proxy->safe_psql('postgres', 'SELECT last_value FROM reads_b');
	ok(poll_until($proxy, 'SELECT last_value >= ' . ($done + 200) . ' FROM reads_b', 't'),
		'b: 200 more reads after that');
	$proxy->safe_psql('postgres', 'UPDATE ctl SET stop = true');
	for my $i (0 .. $#h)
	{
		my ($rc, $out, $err) = finish_call($h[$i]);
		is($rc, 0, 'b: load session ' . ($i + 1) . ' ended without an error')
		  or diag($err);
	}
	note('b: ' . $proxy->safe_psql('postgres', 'SELECT last_value FROM reads_b') . ' reads');
	is(node_val('b', $pC, 'state'), 'down', 'b: C is down');
	# Whether a read reaches C between its stop and its 'down' is a race (a
	# health check may find it refused first), so retries may be 0. A read
	# that failed on C before its answer began was retried (README); one
	# whose row had come when the stop ended its session (the row and the
	# FATAL in one packet) fails, and can only be one in flight per session.
	my $failed = $proxy->safe_psql('postgres',
		'SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM failed_b');
	note('b: C calls|errors|retries: ' . node_val('b', $pC, "calls || '|' || errors || '|' || retries")
		  . ", failed reads: $failed");
	cmp_ok($failed, '<=', scalar(@h), 'b: at most the reads in flight at the stop failed');
	is(node_val('b', $pC, 'errors - retries'), $failed,
		"b: every other read that failed on C was retried on P (C's errors - retries = failed reads)")
	  or diag(nodes_dump('b'));
	like(node_val('b', $pC, 'last_failure_reason'), qr/./, 'b: the view gives the failure');
}

# ------------------------------------------------ c. refused, then hung
scenario('c: a refused node and a hung node, down and back up');
{
	# C is still stopped: a new cluster learns it is down
	@warm_errors = ();
	wait_node('c', $pC, 'state', 'down', "c: C (refused) 'down'", 'SELECT who_c(0)');
	is(scalar(@warm_errors), 0,
		'c: every call meanwhile succeeded (a refused connect is retried on P)')
	  or diag(join "\n", @warm_errors);
	like(node_val('c', $pC, 'last_failure_reason'), qr/refused/i,
		'c: the view gives the reason: connection refused');
	my ($rc, $c, $err) = reads('who_c', 100);
	is($rc, 0, 'c: 100 reads succeeded while C is down') or diag($err);
	is(count_str($c), "$pP: 100", 'c: all on P');

	$copy->start;
	wait_node('c', $pC, 'state', 'up', "c: C restarted: 'up' again");
	wait_node('b', $pC, 'state', 'up', "b: C 'up' again there too (no call needed)");
	($rc, $c, $err) = reads('who_c', 100);
	is($rc, 0, 'c: 100 reads succeeded') or diag($err);
	note('c: reads per port: ' . count_str($c));
	cmp_ok($c->{$pC} // 0, '>', 0, 'c: reads reach C again');

	# hang C, twice: its postmaster only (it accepts no connection, while
	# the sessions it already has still answer), then every process of it
	# (the postmaster first, so it starts no new child, then its children)
	# README: a check runs every interval on a new connection; one that
	# times out marks the node down at once
	my $bound = $hc_interval + $hc_timeout_c;
	for my $all (0, 1)
	{
		my $what = $all ? 'C hung (every process)' : 'C hung (its postmaster)';
		my $pm = (split /\n/, slurp_file($copy->data_dir . '/postmaster.pid'))[0];
		kill 'STOP', $pm or die "SIGSTOP $pm: $!";
		@stopped = ($pm);
		if ($all)
		{
			for my $stat (glob('/proc/[0-9]*/stat'))
			{
				open my $fh, '<', $stat or next;
				my $line = <$fh>;
				close $fh;
				next unless defined $line && $line =~ /^(\d+) \(.*\) \S (\d+) /s;
				next unless $2 == $pm;
				kill 'STOP', $1 and push @stopped, $1;
			}
		}
		note("c: SIGSTOP to C's processes @stopped (postmaster $pm)");
		my $secs = wait_node('c', $pC, 'state', 'down', "c: $what: 'down'");
		cmp_ok($secs, '<', 2 * $bound + 5,
			sprintf(
				'c: %s: down within the documented bound (%.1fs; interval + timeout = %.1fs, '
				  . 'allowed twice that + 5s on a busy machine)',
				$what, $secs, $bound));
		($rc, $c, $err) = reads('who_c', 100);
		is($rc, 0, "c: $what: 100 reads succeeded meanwhile") or diag($err);
		is(count_str($c), "$pP: 100", "c: $what: all on P");

		kill 'CONT', reverse @stopped;
		@stopped = ();
		wait_node('c', $pC, 'state', 'up', "c: $what, continued: 'up' again");
		($rc, $c, $err) = reads('who_c', 100);
		is($rc, 0, "c: $what, continued: 100 reads succeeded") or diag($err);
		note('c: reads per port: ' . count_str($c));
		cmp_ok($c->{$pC} // 0, '>', 0, "c: $what, continued: reads reach C again");
	}
}

# ------------------------------------------------------- d. promotion
scenario('d: pg_promote() moves writes to the promoted standby');
{
	wait_node('pro', $pP, "role || '/' || state", 'primary/up', 'pro: P is the primary, up',
		'SELECT put_pro(200)');
	my ($rc, $out, $err) = run_sql($proxy, 'tap_pro', ['SELECT put_pro(201)']);
	is($out, $pP, 'pro: a write goes to P') or diag($err);
	wait_node('pro', $pS, "role || '/' || state", 'standby/up', 'pro: S is a standby, up');
	$primary->wait_for_catchup($standby, 'replay', $primary->lsn('insert'));
	$primary->stop('fast');
	wait_node('pro', $pP, 'state', 'down', "pro: P stopped: 'down'");
	($rc, $out, $err) = run_sql($proxy, 'tap_pro', ['SELECT put_pro(202)']);
	isnt($rc, 0, 'pro: with no primary a write fails');
	like($err, qr/ERROR:  08001: /, 'pro: with 08001 (no usable node)') or diag("stdout: $out");

	is($standby->safe_psql('postgres', 'SELECT pg_promote()'), 't', 'pro: S promoted');
	wait_node('pro', $pS, "role || '/' || state", 'primary/up', "pro: the view shows S 'primary'");
	($rc, $out, $err) = run_sql($proxy, 'tap_pro', ['SELECT put_pro(203)']);
	is($out, $pS, 'pro: a write goes to S now') or diag($err);
	is($standby->safe_psql('postgres', 'SELECT string_agg(v || \':\' || port, \',\' ORDER BY v) FROM items WHERE v > 200'),
		"201:$pP,203:$pS", 'pro: S has the row written on P before, and the new one');
}

my @crashes = grep { /$crash_re/ } split /\n/, slurp_file($proxy->logfile);
ok(!@crashes, "no crash in the proxy's log") or diag(join "\n", @crashes);

$standby->stop;
$copy->stop;
$proxy->stop;
note(sprintf('runtime %.1fs', time() - $t_start));
done_testing();
