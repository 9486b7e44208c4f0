# 008_hardening.pl — no wait without a deadline, limits that hold after a
# reload, and one call's failure staying that call's.
#
# Why: a pooler is judged on its bad days. A remote that accepts TCP but
# never answers (frozen: its processes stopped) must hold nothing but the
# calls that went to it: not the cancels of other remotes, not the proxy's
# shutdown. A limit a DBA lowers must hold at once, not when idle_timeout
# gets round to it. And an allocation failure while a worker handles one
# call's results must fail that call only, never the worker and every call
# it holds.
#
# Nodes: "healthy" and "frozen" (plain remotes), "proxy" (bgw_proxy.workers
# = 1, so every call below is served by the same worker and shares its
# fate). Calls are told apart by application_name.
#
# Scenarios and what they assert:
#  A fault     with bgw_proxy.debug_fault (superuser only) set in one
#              session, for each point (describe, row, done, error): that
#              call fails with 53200 "ran out of memory"; a call of another
#              session, in flight in the same worker at that moment (waiting
#              on an advisory lock on the remote), completes with its right
#              answer afterwards; the worker's pid never changes; the remote
#              statement of a failed call that was still streaming rows is
#              cancelled. A non-superuser cannot set the GUC.
#  B limits    8 idle pooled connections; bgw_proxy.max_pool_connections
#              lowered to 2 and reloaded: the pool holds 2 connections at
#              once (surplus idle ones closed). 8 calls then, all blocked
#              remotely on an advisory lock: while the pool shows 6 of them
#              waiting, exactly 2 statements run remotely. All 8 complete
#              once the lock is released. idle_timeout lowered by reload:
#              the idle connections close.
#  C cancels   9 calls run pg_sleep on "frozen"; then its postmaster and
#              every process under it are stopped (SIGSTOP, by pid). 8 of
#              the callers are cancelled: each gets 57014 at once. Then a
#              call to "healthy" hits statement_timeout: its remote
#              statement is cancelled (gone from the healthy remote's
#              pg_stat_activity) although 8 cancel requests to the frozen
#              remote are still unanswered.
#  D shutdown  with the 9th call to "frozen" still in flight, pg_ctl stop
#              -m fast on the proxy completes (bounded by pg_ctl -t 30; the
#              workers' own bound is 1 s, README "Behaviour"), and the
#              caller gets an error, not a hang. Then "frozen" is resumed.
# No server log shows a process terminated by a signal.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../lib";
use BgwPsql;
use Time::HiRes qw(time);

$BgwPsql::poll_secs = 30;
$BgwPsql::psql_secs = 120;

my $crash_re =
  qr/terminated by signal|was terminated by|server process .* exited with exit code [^01]/;

my $remote_sql = q{
CREATE FUNCTION sleepy(s float8) RETURNS int LANGUAGE sql AS $$ SELECT 1 FROM pg_sleep(s) $$;
CREATE FUNCTION held(i int) RETURNS int LANGUAGE sql AS $$ SELECT i FROM (SELECT pg_advisory_xact_lock_shared(7)) l $$;
CREATE FUNCTION gen(n int) RETURNS SETOF text LANGUAGE sql AS $$ SELECT repeat('x', 100) FROM generate_series(1, n) $$;
CREATE FUNCTION fails() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'remote says no'; END $$;
};

my $healthy = PostgreSQL::Test::Cluster->new('healthy8');
$healthy->init;
$healthy->start;
$healthy->safe_psql('postgres', $remote_sql);

my $frozen = PostgreSQL::Test::Cluster->new('frozen8');
$frozen->init;
$frozen->start;
$frozen->safe_psql('postgres', $remote_sql);

my $proxy = PostgreSQL::Test::Cluster->new('proxy8');
$proxy->init;
$proxy->append_conf('postgresql.conf',
	"shared_preload_libraries = 'bgw_proxy'\nbgw_proxy.workers = 1\n"
	  . "bgw_proxy.max_pool_connections = 8\n");
$proxy->start;
my ($hh, $hp) = ($healthy->host, $healthy->port);
my ($fh, $fp) = ($frozen->host, $frozen->port);
$proxy->safe_psql('postgres', qq{
CREATE EXTENSION bgw_proxy;
CREATE SERVER h FOREIGN DATA WRAPPER bgw_proxy OPTIONS (p0 'host=$hh port=$hp dbname=postgres application_name=via_proxy');
CREATE SERVER f FOREIGN DATA WRAPPER bgw_proxy OPTIONS (p0 'host=$fh port=$fp dbname=postgres application_name=via_proxy');
CREATE FUNCTION h_sleepy(s float8) RETURNS int AS \$\$ CLUSTER 'h'; RUN ON 0; SELECT sleepy(s); \$\$ LANGUAGE bgw_proxy;
CREATE FUNCTION h_held(i int) RETURNS int AS \$\$ CLUSTER 'h'; RUN ON 0; SELECT held(i); \$\$ LANGUAGE bgw_proxy;
CREATE FUNCTION h_gen(n int) RETURNS SETOF text AS \$\$ CLUSTER 'h'; RUN ON 0; SELECT gen(n); \$\$ LANGUAGE bgw_proxy;
CREATE FUNCTION h_fails() RETURNS int AS \$\$ CLUSTER 'h'; RUN ON 0; SELECT fails(); \$\$ LANGUAGE bgw_proxy;
CREATE FUNCTION f_sleepy(s float8) RETURNS int AS \$\$ CLUSTER 'f'; RUN ON 0; SELECT sleepy(s); \$\$ LANGUAGE bgw_proxy;
CREATE ROLE plain LOGIN;
});

sub worker_pid { $proxy->safe_psql('postgres', 'SELECT pid FROM pg_stat_bgw_proxy_workers') }

# remote statements of the proxy's connections waiting for advisory lock 7
my $lock_waiters = q{SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
WHERE l.locktype = 'advisory' AND l.objid = 7 AND NOT l.granted AND a.application_name = 'via_proxy'};

# The test's own session on "healthy" holding lock 7 exclusively: the
# proxy's held() calls wait until release_lock() ends that session.
my $lockers = 0;
sub hold_lock
{
	my $app = 'tap_locker_' . ++$lockers;
	my $h = start_call($healthy, $app, ['SELECT pg_advisory_lock(7), pg_sleep(3600)'], on_error_stop => 0);
	poll_until($healthy,
		"SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
		  . "WHERE l.locktype = 'advisory' AND l.objid = 7 AND l.granted AND a.application_name = '$app'",
		'1')
	  or BAIL_OUT('could not take advisory lock 7 on "healthy"');
	return [ $h, $app ];
}

sub release_lock
{
	my ($lock) = @_;
	$healthy->safe_psql('postgres',
		"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '$lock->[1]'");
	finish_call($lock->[0]);
}

# the pids whose parent is $ppid
sub children_of
{
	my ($ppid) = @_;
	my @kids;
	for my $stat (glob '/proc/[0-9]*/stat')
	{
		open my $in, '<', $stat or next;
		my $line = <$in>;
		close $in;
		push @kids, $1 if defined $line && $line =~ /^(\d+) \(.*\) \S (\d+) / && $2 == $ppid;
	}
	return @kids;
}

# a process's state letter (R, S, T, ...), undef once it has exited (a
# zombie too: its stopped parent cannot reap it)
sub proc_state
{
	my ($pid) = @_;
	open my $in, '<', "/proc/$pid/stat" or return undef;
	my $line = <$in>;
	close $in;
	return undef unless defined $line && $line =~ /^\d+ \(.*\) (\S) /;
	return $1 =~ /^[ZX]$/ ? undef : $1;
}

# waits until every process of @$pids still alive is in (or, with $not, out
# of) state T: a signal is delivered when the process next runs
sub wait_stopped
{
	my ($pids, $not) = @_;
	for (1 .. 3000)
	{
		my @left = grep { my $s = proc_state($_); defined $s && (($s eq 'T') xor !$not) } @$pids;
		return 1 unless @left;
		select(undef, undef, undef, 0.01);
	}
	return 0;
}

my $w0 = worker_pid();
ok($w0 =~ /^\d+$/, "the one worker runs (pid $w0)");

# ------------------------------------------------------------ A: fault

{
	my ($rc, $out, $err) = run_sql($proxy, 'tap_plain',
		["SET ROLE plain", "SET bgw_proxy.debug_fault = 'alloc_on_row'"]);
	isnt($rc, 0, 'A: a non-superuser cannot set bgw_proxy.debug_fault');
	like($err, qr/42501/, 'A: ... with 42501 (permission denied)');
}

my %fault_call = (
	alloc_on_describe => 'SELECT count(*) FROM h_gen(10)',
	alloc_on_row      => 'SELECT count(*) FROM h_gen(200000)',
	alloc_on_done     => 'SELECT h_sleepy(0)',
	alloc_on_error    => 'SELECT h_fails()');
for my $point (sort keys %fault_call)
{
	my $lock = hold_lock();
	my $bystander = start_call($proxy, "bystander_$point", ['SELECT h_held(41) + 1']);
	ok(poll_until($healthy, $lock_waiters, '1'),
		"A $point: a call of another session is in flight in the worker");
	my ($rc, $out, $err) = run_sql($proxy, "faulty_$point",
		["SET bgw_proxy.debug_fault = '$point'", $fault_call{$point}]);
	isnt($rc, 0, "A $point: the call with the injected failure fails");
	like($err, qr/53200: bgw_proxy worker 0 ran out of memory during the call/,
		"A $point: ... with 53200 and the worker named");
	release_lock($lock);
	my ($brc, $bout, $berr) = finish_call($bystander);
	is($bout, '42', "A $point: the other session's call got its right answer")
	  or diag($berr);
	is(worker_pid(), $w0, "A $point: the worker is the same process");
}
# the 200000-row statement was cancelled when its call was given up
ok( poll_until($healthy,
		"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'via_proxy' AND state = 'active'",
		'0'),
	'A: the given-up call left no statement running remotely');
is($proxy->safe_psql('postgres', 'SELECT h_sleepy(0)'), '1', 'A: the next call works');

# ------------------------------------------------------------ B: limits

{
	my $lock = hold_lock();
	my @calls = map { start_call($proxy, "fill_$_", ["SELECT h_held($_)"]) } 1 .. 8;
	ok(poll_until($healthy, $lock_waiters, '8'), 'B: 8 statements run at once under limit 8');
	release_lock($lock);
	my $ok = 1;
	for my $i (1 .. 8)
	{
		my ($rc, $out, $err) = finish_call($calls[ $i - 1 ]);
		$ok &&= $out eq "$i";
	}
	ok($ok, 'B: ... and all 8 got their answers');
	ok( poll_until($proxy,
			"SELECT sum(conns_idle) FROM pg_stat_bgw_proxy WHERE cluster = 'h'", '8'),
		'B: the pool holds 8 idle connections');

	$proxy->safe_psql('postgres',
		'ALTER SYSTEM SET bgw_proxy.max_pool_connections = 2; SELECT pg_reload_conf()');
	ok( poll_until($proxy,
			"SELECT sum(conns_open) FROM pg_stat_bgw_proxy WHERE cluster = 'h'", '2'),
		'B: after the reload lowered the limit to 2, the pool holds 2 connections');

	$lock = hold_lock();
	@calls = map { start_call($proxy, "lowered_$_", ["SELECT h_held($_)"]) } 1 .. 8;
	ok( poll_until($proxy,
			"SELECT sum(calls_waiting) FROM pg_stat_bgw_proxy WHERE cluster = 'h'", '6'),
		'B: 6 of 8 new calls wait for a connection');
	ok(poll_until($healthy, $lock_waiters, '2'), 'B: ... while 2 statements run remotely');
	is($proxy->safe_psql('postgres', "SELECT sum(calls_waiting) FROM pg_stat_bgw_proxy WHERE cluster = 'h'"),
		'6', 'B: ... and the other 6 still wait');
	is($healthy->safe_psql('postgres', $lock_waiters), '2', 'B: ... so exactly 2 run at once');
	release_lock($lock);
	$ok = 1;
	for my $i (1 .. 8)
	{
		my ($rc, $out, $err) = finish_call($calls[ $i - 1 ]);
		$ok &&= $out eq "$i";
		diag($err) if $out ne "$i";
	}
	ok($ok, 'B: all 8 calls completed under the lowered limit');

	$proxy->safe_psql('postgres',
		'ALTER SYSTEM SET bgw_proxy.idle_timeout = 1; SELECT pg_reload_conf()');
	ok( poll_until($proxy,
			"SELECT coalesce(sum(conns_open), 0) FROM pg_stat_bgw_proxy WHERE cluster = 'h'", '0'),
		'B: after the reload lowered idle_timeout, the idle connections close');
	$proxy->safe_psql('postgres',
		'ALTER SYSTEM SET bgw_proxy.max_pool_connections = 16; ALTER SYSTEM RESET bgw_proxy.idle_timeout; '
		  . 'SELECT pg_reload_conf()');
}

# ------------------------------------------------------------ C: cancels

my @sleepers = map { start_call($proxy, "frozen_$_", ['SELECT f_sleepy(3600)']) } 1 .. 9;
ok( poll_until($frozen,
		"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'via_proxy' AND state = 'active'",
		'9'),
	'C: 9 calls are running on the remote about to freeze');

# the frozen remote: its postmaster first (so it starts nothing more), then
# every process it started. A child may exit between the scan of /proc and
# the signal (a poll's session ending, an autovacuum worker): such a process
# needs no stopping, so the check is on what still exists.
my $fpm = $frozen->{_pid};
my @sleeper_pids = split /\n/,
  $frozen->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE application_name = 'via_proxy' AND state = 'active'");
kill('STOP', $fpm);
my @fpids = ($fpm, children_of($fpm));
kill('STOP', @fpids);
my $all_stopped = wait_stopped(\@fpids);
my @sleepers_stopped = grep { (proc_state($_) // '') eq 'T' } @sleeper_pids;
ok($all_stopped && @sleepers_stopped == 9,
	'C: "frozen" stopped: postmaster, its 9 busy backends and ' . (scalar(@fpids) - 10) . ' other processes');

$proxy->safe_psql('postgres',
	"SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name ~ '^frozen_[1-8]\$'");
my $cancelled = 0;
for my $i (1 .. 8)
{
	my ($rc, $out, $err) = finish_call($sleepers[ $i - 1 ]);
	$cancelled++ if $rc != 0 && $err =~ /57014/;
}
is($cancelled, 8, 'C: the 8 cancelled callers got 57014 at once');

{
	my ($rc, $out, $err) = run_sql($proxy, 'tap_timeout',
		["SET statement_timeout = '1s'", 'SELECT h_sleepy(3600)'], on_error_stop => 1);
	like($err, qr/57014/, 'C: a call to "healthy" hits statement_timeout');
}
ok( poll_until($healthy,
		"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'via_proxy' AND query LIKE '%sleepy%' AND state = 'active'",
		'0'),
	'C: its remote statement was cancelled, with 8 cancels to the frozen remote unanswered');
is($proxy->safe_psql('postgres', 'SELECT h_sleepy(0)'), '1', 'C: the worker serves "healthy" as usual');
is(worker_pid(), $w0, 'C: the worker is the same process');

# ------------------------------------------------------------ D: shutdown

my $t0 = time();
my $stopped = system('pg_ctl', '-D', $proxy->data_dir, '-m', 'fast', '-t', '30', 'stop') == 0;
my $took = time() - $t0;
ok($stopped, sprintf('D: fast shutdown of the proxy completed (%.1f s) with a call to the frozen remote in flight',
		$took));
# the workers' bound is 1 s (README); the rest is the server's own shutdown,
# with a margin for a loaded machine
ok($took < 10, 'D: ... within the bound');
$proxy->_update_pid(0) if $stopped;
{
	my ($rc, $out, $err) = finish_call($sleepers[8]);
	isnt($rc, 0, 'D: the caller of the in-flight call got an error, not a hang');
}

kill('CONT', @fpids);
ok(wait_stopped(\@fpids, 1), 'D: "frozen" resumed');
$frozen->stop;
$healthy->stop;

for my $node ($proxy, $healthy, $frozen)
{
	unlike(slurp_file($node->logfile), $crash_re, $node->name . ': no process terminated by a signal');
}

done_testing();
