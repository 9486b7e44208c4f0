# 001_faults.pl — bgw_proxy under faults.
#
# A proxy node (shared_preload_libraries = 'bgw_proxy', 2 workers) calls a
# separate plain remote node. Each scenario breaks something while a call is
# in flight and then checks:
#   - the error the caller sees (message and SQLSTATE),
#   - that service resumes (a normal call succeeds afterwards),
#   - that nothing is left behind: no statement of the scenario still active
#     on the remote, no request in flight in the workers, every submitted
#     request completed (submitted - completed back to its value before the
#     scenario), and no crash line in the proxy's log.
# Conditions that take effect asynchronously are polled (bounded by
# $poll_secs); nothing asserts on elapsed time.
#
# Scenarios a-g break the worker path: the proxy runs with
# bgw_proxy.direct_calls = off, so every call goes through a worker. h turns
# direct calls on: a call running in its own backend on a borrowed
# connection outlives the worker that lent it.
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

# How long an asynchronous effect (remote cancel, worker restart, ...) may
# take before the poll gives up and the assertion fails.
my $poll_secs = 10;
# Upper bound for any single psql run: a hang becomes a failed test, not a
# stuck suite.
my $psql_secs = 60;
$BgwPsql::poll_secs = $poll_secs;
$BgwPsql::psql_secs = $psql_secs;
# Remote naps are long enough that a statement nobody cancelled is still
# there when we look (it would otherwise end by itself and hide the leak).
my $long = 3600;

my $crash_re =
  qr/terminated by signal|was terminated by|server process .* exited with exit code [^01]/;

# ------------------------------------------------------------------ nodes

my $remote = PostgreSQL::Test::Cluster->new('remote');
$remote->init;
$remote->append_conf('postgresql.conf', "log_line_prefix = '%m [%p] %b %a '");
$remote->start;

my $proxy = PostgreSQL::Test::Cluster->new('proxy');
$proxy->init;
$proxy->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'bgw_proxy'
bgw_proxy.workers = 2
bgw_proxy.direct_calls = off
log_line_prefix = '%m [%p] %b %a '
});
$proxy->start;

my @scenarios = qw(a b c d e f g h);

# remote: one sleeping function per scenario (proxy functions call the
# same-named remote function)
$remote->safe_psql('postgres',
	join "\n",
	map {
		"CREATE FUNCTION nap_$_(s float8) RETURNS int LANGUAGE sql "
		  . "AS \$\$ SELECT 1 FROM pg_sleep(s) \$\$;"
	} @scenarios);

# proxy: one proxy function per scenario, each with its own application_name
# so the remote statements of a scenario can be told apart
my ($rhost, $rport) = ($remote->host, $remote->port);
$proxy->safe_psql('postgres', 'CREATE EXTENSION bgw_proxy');
$proxy->safe_psql('postgres',
	join "\n",
	map {
		"CREATE FUNCTION nap_$_(s float8) RETURNS int AS \$\$ "
		  . "CONNECT 'host=$rhost port=$rport dbname=postgres application_name=bgwtap_$_'; "
		  . "\$\$ LANGUAGE bgw_proxy;"
	} @scenarios);

ok( poll_until(
		$proxy,
		'SELECT count(pid) FROM pg_stat_bgw_proxy_workers', '2'),
	'both workers are running');

# ---------------------------------------------------------------- helpers

sub outstanding
{
	return $proxy->safe_psql('postgres',
		'SELECT submitted - completed FROM pg_stat_bgw_proxy_queue');
}

sub remote_busy_sql
{
	my ($s) = @_;
	return "SELECT count(*) FROM pg_stat_activity "
	  . "WHERE application_name = 'bgwtap_$s' AND state <> 'idle'";
}

# Wait until the scenario's remote statement is running.
sub wait_remote_active
{
	my ($s) = @_;
	return poll_until($remote,
		"SELECT count(*) FROM pg_stat_activity "
		  . "WHERE application_name = 'bgwtap_$s' AND state = 'active' "
		  . "AND query LIKE '%nap_$s%'",
		'1');
}

# A normal call through the scenario's function from a new session.
sub call_works
{
	my ($s, $what) = @_;
	my ($rc, $out, $err) = run_sql($proxy, "caller_${s}_ok", ["SELECT nap_$s(0)"]);
	is($out, '1', "$s: $what") or diag("rc=$rc stderr: $err");
}

# The after-checks every scenario ends with.
sub after_checks
{
	my ($s, $baseline, $log_offset) = @_;

	my $clean = poll_until($remote, remote_busy_sql($s), '0');
	ok($clean, "$s: no statement of ours left active on the remote");
	if (!$clean)
	{
		diag("$s: leftover remote statements:\n"
			  . $remote->safe_psql('postgres',
				"SELECT pid, state, backend_start, query_start, query FROM pg_stat_activity "
				  . "WHERE application_name = 'bgwtap_$s'"));
		# end them so later scenarios are judged on their own
		$remote->safe_psql('postgres',
			"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
			  . "WHERE application_name = 'bgwtap_$s' AND state <> 'idle'");
	}

	ok( poll_until(
			$proxy,
			'SELECT sum(requests_in_flight) FROM pg_stat_bgw_proxy_workers',
			'0'),
		"$s: no request in flight in the workers");
	ok( poll_until(
			$proxy,
			'SELECT submitted - completed FROM pg_stat_bgw_proxy_queue',
			$baseline),
		"$s: every submitted request completed (submitted - completed = $baseline as before)"
	);

	my $log = slurp_file($proxy->logfile, $log_offset);
	my @bad = grep { /$crash_re/ } split /\n/, $log;
	ok(!@bad, "$s: no crash in the proxy's log") or diag(join "\n", @bad);
}

sub begin_scenario
{
	my ($s, $title) = @_;
	note("---- scenario $s: $title");
	return (outstanding(), -s $proxy->logfile);
}

# ------------------------------------------------ a. worker killed (SIGTERM)
{
	my ($base, $logpos) =
	  begin_scenario('a', 'worker killed with SIGTERM during a call');
	call_works('a', 'warm-up call works');

	my $h = start_call($proxy, 'caller_a', ["SELECT nap_a($long)"]);
	ok(wait_remote_active('a'), 'a: the call is running on the remote');
	ok( poll_until(
			$proxy,
			'SELECT count(*) FROM pg_stat_bgw_proxy_workers WHERE requests_in_flight > 0',
			'1'),
		'a: exactly one worker has the call in flight');
	my ($w, $pid) = split /\|/,
	  $proxy->safe_psql('postgres',
		'SELECT worker, pid FROM pg_stat_bgw_proxy_workers WHERE requests_in_flight > 0');
	note("a: call is in worker $w, pid $pid");
	ok(kill('TERM', $pid), "a: sent SIGTERM to worker $w (pid $pid)");

	my ($rc, $out, $err) = finish_call($h);
	isnt($rc, 0, 'a: the call failed');
	like(
		$err,
		qr/ERROR:  08006: bgw_proxy worker $w exited during the call/,
		'a: caller sees "bgw_proxy worker N exited during the call" (08006)');

	ok( poll_until(
			$proxy,
			"SELECT pid IS NOT NULL AND pid <> $pid AND state <> 'stopped' "
			  . "FROM pg_stat_bgw_proxy_workers WHERE worker = $w",
			't'),
		"a: the postmaster restarted worker $w with a new pid");
	call_works('a', 'next call works');
	after_checks('a', $base, $logpos);
}

# ----------------------------------- b. local backend terminated during a call
{
	my ($base, $logpos) =
	  begin_scenario('b', 'calling backend terminated during a call');
	my $h = start_call($proxy, 'caller_b', ["SELECT nap_b($long)"]);
	ok(wait_remote_active('b'), 'b: the call is running on the remote');
	my $bpid = $proxy->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE application_name = 'caller_b'");
	like($bpid, qr/^\d+$/, 'b: found the calling backend');
	is($proxy->safe_psql('postgres', "SELECT pg_terminate_backend($bpid)"),
		't', 'b: pg_terminate_backend');

	my ($rc, $out, $err) = finish_call($h);
	isnt($rc, 0, 'b: the caller lost its session');
	like(
		$err,
		qr/FATAL:  57P01: terminating connection due to administrator command/,
		'b: caller sees the termination');
	ok( poll_until(
			$proxy,
			"SELECT count(*) FROM pg_stat_activity WHERE pid = $bpid", '0'),
		'b: the backend is gone');
	after_checks('b', $base, $logpos);
	call_works('b', 'a call from a new session works');
}

# ------------------------------------ c. remote backend terminated during a call
{
	my ($base, $logpos) =
	  begin_scenario('c', 'remote backend terminated during a call');
	call_works('c', 'warm-up call works');
	my $h = start_call($proxy, 'caller_c', ["SELECT nap_c($long)"]);
	ok(wait_remote_active('c'), 'c: the call is running on the remote');
	is( $remote->safe_psql(
			'postgres',
			"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
			  . "WHERE application_name = 'bgwtap_c' AND state = 'active'"),
		'1',
		'c: terminated the remote backend');

	my ($rc, $out, $err) = finish_call($h);
	isnt($rc, 0, 'c: the call failed');
	like(
		$err,
		qr/ERROR:  (57P01: terminating connection due to administrator command|08006: lost connection to the remote server)/,
		'c: caller sees a clear error (remote termination / lost connection)');
	like($err, qr/bgw_proxy function public\.nap_c/,
		'c: the error names the proxy function');
	call_works('c', 'next call works (the pool reconnects)');
	after_checks('c', $base, $logpos);
}

# --------------------------------------------------- d. remote server stopped
{
	my ($base, $logpos) = begin_scenario('d', 'remote server stopped');
	call_works('d', 'warm-up call works');

	my $h = start_call($proxy, 'caller_d', ["SELECT nap_d($long)"]);
	ok(wait_remote_active('d'), 'd: a call is running on the remote');
	$remote->stop('fast');

	my ($rc, $out, $err) = finish_call($h);
	isnt($rc, 0, 'd: the call in flight failed');
	like(
		$err,
		qr/ERROR:  (57P01: terminating connection due to administrator command|08006: lost connection to the remote server|08001: could not connect to the remote server)/,
		'd: the call in flight gets a clear error');

	# while the remote is down, calls fail (statement_timeout only turns a
	# hang into a wrong error message)
	for my $i (1 .. 3)
	{
		($rc, $out, $err) = run_sql($proxy, 'caller_d',
			["SET statement_timeout = '20s'", "SELECT nap_d(0)"]);
		isnt($rc, 0, "d: call $i while the remote is down fails");
		like(
			$err,
			qr/ERROR:  (08001: could not connect to the remote server|08006: lost connection to the remote server)/,
			"d: call $i while the remote is down: clear connection error");
	}

	$remote->start;
	call_works('d', 'first call after the remote restarted works');
	after_checks('d', $base, $logpos);
}

# ------------------------------- e. statement_timeout / pg_cancel_backend
{
	my ($base, $logpos) = begin_scenario('e', 'caller cancels a long call');

	# statement_timeout, then the next call in the same session
	my ($rc, $out, $err) = run_sql(
		$proxy, 'caller_e1',
		[
			"SET statement_timeout = '500ms'", "SELECT nap_e($long)",
			"RESET statement_timeout",         "SELECT nap_e(0)"
		],
		on_error_stop => 0);
	like(
		$err,
		qr/ERROR:  57014: canceling statement due to statement timeout/,
		'e: statement_timeout: caller sees "canceling statement" (57014)');
	is($out, '1', 'e: next call in the same session works');
	ok(poll_until($remote, remote_busy_sql('e'), '0'),
		'e: statement_timeout: the remote statement was cancelled');

	# pg_cancel_backend from another session, then the next call
	my $h = start_call($proxy, 'caller_e2',
		[ "SELECT nap_e($long)", "SELECT nap_e(0)" ],
		on_error_stop => 0);
	ok(wait_remote_active('e'), 'e: the call is running on the remote');
	is( $proxy->safe_psql(
			'postgres',
			"SELECT pg_cancel_backend(pid) FROM pg_stat_activity "
			  . "WHERE application_name = 'caller_e2'"),
		't',
		'e: pg_cancel_backend');
	($rc, $out, $err) = finish_call($h);
	like(
		$err,
		qr/ERROR:  57014: canceling statement due to user request/,
		'e: pg_cancel_backend: caller sees "canceling statement" (57014)');
	is($out, '1', 'e: next call in the same session works');
	call_works('e', 'a call from a new session works');
	after_checks('e', $base, $logpos);
}

# ------------------------------------------ f. remote never answers: query_timeout
{
	my ($base, $logpos) =
	  begin_scenario('f', 'remote never answers, bgw_proxy.query_timeout set');
	$proxy->safe_psql('postgres',
		"ALTER SYSTEM SET bgw_proxy.query_timeout = '1s'");
	$proxy->reload;
	ok(poll_until($proxy, 'SHOW bgw_proxy.query_timeout', '1s'),
		'f: query_timeout is 1s after reload');

	my ($rc, $out, $err) = run_sql($proxy, 'caller_f', ["SELECT nap_f($long)"]);
	isnt($rc, 0, 'f: the call failed');
	like($err, qr/ERROR:  \w{5}: .*query_timeout/,
		'f: caller sees an error mentioning query_timeout');
	note("f: caller saw: $err");
	call_works('f', 'next call works');

	$proxy->safe_psql('postgres', 'ALTER SYSTEM RESET bgw_proxy.query_timeout');
	$proxy->reload;
	ok(poll_until($proxy, 'SHOW bgw_proxy.query_timeout', '0'),
		'f: query_timeout reset');
	after_checks('f', $base, $logpos);
}

# ------------------- g. call given up before any worker picked it up (extra)
# The worker that serves nap_g is stopped (SIGSTOP), so the call stays
# SUBMITTED; statement_timeout makes the caller give up (slot
# SUBMITTED -> FREE by the backend). After SIGCONT the worker finds only a
# stale ticket: the abandoned call must not run, and the counters must
# balance.
{
	my ($base, $logpos) =
	  begin_scenario('g', 'call abandoned before pickup (worker stopped)');
	my $served_sql =
	  "SELECT string_agg(requests_served::text, ',' ORDER BY worker) FROM pg_stat_bgw_proxy_workers";
	my @before = split /,/, $proxy->safe_psql('postgres', $served_sql);
	call_works('g', 'warm-up call works');
	my @after = split /,/, $proxy->safe_psql('postgres', $served_sql);
	my @w = grep { $after[$_] != $before[$_] } 0 .. $#after;
	is(scalar @w, 1, 'g: one worker served the warm-up call');
	my $w = $w[0];
	my $pid = $proxy->safe_psql('postgres',
		"SELECT pid FROM pg_stat_bgw_proxy_workers WHERE worker = $w");

	ok(kill('STOP', $pid), "g: stopped worker $w (pid $pid)");
	my ($rc, $out, $err);
	eval {
		($rc, $out, $err) = run_sql($proxy, 'caller_g',
			[ "SET statement_timeout = '500ms'", "SELECT nap_g($long)" ]);
	};
	kill('CONT', $pid);
	like(
		$err,
		qr/ERROR:  57014: canceling statement due to statement timeout/,
		'g: caller sees "canceling statement" (57014)');

	# FIFO queue: once this call is served, the stale ticket was handled
	call_works('g', 'next call works after the worker continued');
	is($remote->safe_psql('postgres', remote_busy_sql('g')),
		'0', 'g: the abandoned call did not run on the remote');
	after_checks('g', $base, $logpos);
}

# ------------------------- h. a direct call outlives the worker that lent it
{
	my ($base, $logpos) =
	  begin_scenario('h', 'both workers killed during a direct call');
	call_works('h', 'warm-up call works (it parks the connection)');
	# the statement's first call in a session goes through a worker (which
	# tells whether its results come in binary); the second runs directly
	my $h = start_call($proxy, 'caller_h',
		[ 'SET bgw_proxy.direct_calls = on', 'SELECT nap_h(0)', "SELECT nap_h(3)" ]);
	ok(wait_remote_active('h'), 'h: the call is running on the remote');
	is($proxy->safe_psql('postgres', 'SELECT sum(requests_in_flight) FROM pg_stat_bgw_proxy_workers'),
		'0', 'h: no worker has it: it runs in the caller');
	my @pids = split /\n/, $proxy->safe_psql('postgres', 'SELECT pid FROM pg_stat_bgw_proxy_workers ORDER BY 1');
	is(scalar(@pids), 2, 'h: both workers run');
	ok(kill('TERM', @pids), 'h: sent SIGTERM to both workers');
	ok( poll_until(
			$proxy,
			"SELECT count(*) FROM pg_stat_bgw_proxy_workers WHERE pid IS NOT NULL "
			  . "AND pid NOT IN (" . join(',', @pids) . ")",
			'2'),
		'h: the postmaster restarted both workers');
	my ($rc, $out, $err) = finish_call($h);
	is($rc, 0, 'h: the direct call finished regardless') or diag("stderr: $err");
	is((split /\n/, $out)[-1], '1', 'h: with its answer');
	call_works('h', 'next call works');
	after_checks('h', $base, $logpos);
}

# ------------------------------------------------------------- whole file
is(outstanding(), '0', 'overall: submitted = completed on the proxy');
my @crashes = grep { /$crash_re/ } split /\n/, slurp_file($proxy->logfile);
ok(!@crashes, "overall: no crash in the proxy's log") or diag(join "\n", @crashes);

$proxy->stop;
$remote->stop;
done_testing();
