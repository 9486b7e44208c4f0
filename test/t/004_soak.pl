# 004_soak.pl — soak test: 64 concurrent pgbench clients against the pool.
#
# Why: the worker pool is shared by every backend of the server, so a slot
# that leaks, a connection that is never given back or goes over its limit,
# a cancel that does not reach the remote, or an error that is lost or
# duplicated hurts everybody, and such faults tend to show only under
# concurrency and over time. This test keeps both workers' pools saturated
# for about a minute with a mix of calls and then checks that everything
# balances.
#
# Setup: a remote instance with 4 partition databases p0..p3 and a proxy
# instance (shared_preload_libraries = 'bgw_proxy', bgw_proxy.workers = 2,
# max_connections = 100). Every worker serves every pool, but a pool's calls
# go to its home worker (by hash) while that one is lightly loaded, so the
# test probes candidate SQL/MED clusters (same partitions, each with its own
# application_name) and keeps one whose home is worker 0 and one whose home
# is worker 1; every proxy function picks one of the two per call (CLUSTER
# soak_cluster(k)). Under this load both workers serve both clusters. Each
# cluster has the option max_connections = 4 (per worker; the GUC default is
# left alone), so the cluster option is what must hold the bound: 2 x 4
# remote connections per cluster and partition, 32 per cluster, 64 in all
# (plus one idle connection for each probed but unused candidate). The
# remote allows 100 connections, so a pool going over its bound shows up
# instead of being refused.
#
# Workload: pgbench -c 64 -j 1 -t $per_client, four scripts by weight. (-t,
# not -T: when -T runs out pgbench drops the transactions in flight, whose
# remote effects would then be missing from its counts. -j 1: pgbench 15
# adds up the per-script figures of its threads without a lock, so with
# several threads they can come out a few transactions short.)
#   normal  55%  RUN ON k: the remote returns k*10 + partition, checked by a
#                local function that raises a plain error on a wrong answer
#                (a plain error aborts the pgbench client and fails the test);
#   all     10%  RUN ON ALL: four rows, checked in partition order likewise;
#   error   20%  the remote function bumps a sequence (nextval is not rolled
#                back) and raises SQLSTATE 40001, every time: the remotes
#                count the injected errors exactly; the error comes back
#                with the same SQLSTATE, which pgbench counts as a failed
#                transaction and goes on (--max-tries=1);
#   cancel  15%  with statement_timeout = 250ms, a local plpgsql wrapper
#                calls a remote pg_sleep(3600) and catches query_canceled,
#                recording the message in a local table; the wrapper returns
#                only if the call was cancelled (a nap that returned raises a
#                plain error).
# Outside the cancel script every session has statement_timeout = 60s, so a
# stuck call ends as an aborted client instead of a hung suite.
#
# During the run a loop inside the remote samples pg_stat_activity every
# 0.2 s: connections to p0..p3 by partition and application_name, and naps
# active for more than 30 s (a cancelled statement that kept running). A
# loop inside the proxy samples pg_stat_bgw_proxy_workers.
#
# Asserted afterwards:
#   - pgbench exited 0, no client aborted, all 64 x $per_client transactions
#     ran, normal and RUN ON ALL calls never failed (right answers);
#   - errors seen (pgbench's serialization failures) = errors injected (the
#     remote sequences) = error-script transactions, and > 0;
#   - cancels recorded by the wrapper = cancel-script transactions, > 0, all
#     by statement timeout; the remote logged cancelled statements (no more
#     than the local cancels); no nap outlived its cancel by 30 s during the
#     run, and none is running after it;
#   - in every sample (the samples cover the whole run, at least one per
#     2 s on average): remote connections <= 4 per cluster and partition, <= 16 per
#     cluster, <= 32 in all; connections held by the workers <= the same
#     total; every remote connection belongs to one of the clusters;
#   - no connection of the two clusters was closed during the run (the
#     workers log every close with its reason at DEBUG1): a cancelled
#     call's connection is drained and reused, whichever process ran it;
#     except after a cancel the remote postmaster had not handled within
#     5 s (the connection cannot be reused: it is closed, and its remote
#     session may live on for a while, so each such close allows one more
#     remote connection to its partition's, cluster's and the total bound
#     above);
#   - afterwards: submitted = completed, requests_in_flight = 0 in every
#     worker, both workers served calls and neither was restarted, the remote
#     connections are exactly those the workers report (nothing leaked), no
#     crash in the proxy's log;
#   - an ordinary call on every partition of both clusters, and RUN ON ALL
#     on both, succeed.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use List::Util qw(max sum0);
use IPC::Run;
use Time::HiRes qw(usleep time);

my $clients = 64;
my $per_client = 700;        # transactions per pgbench client (70-100 s on 2 cores)
my $per_worker = 4;          # cluster option max_connections (per worker)
my $workers = 2;             # bgw_proxy.workers
my $per_part = $workers * $per_worker; # per cluster and partition, in all
my $nparts = 4;
my $cancel_ms = 250;         # statement_timeout of a cancel call
my $stale_secs = 30;         # a nap older than this outlived its cancel (a late
                             # cancel lands in seconds; a lost one never: the
                             # naps are an hour long)
my $poll_secs = 15;

my $crash_re =
  qr/terminated by signal|was terminated by|server process .* exited with exit code [^01]/;

my $t0 = time();

# ------------------------------------------------------------------ nodes

my $remote = PostgreSQL::Test::Cluster->new('soak_remote');
$remote->init;
$remote->append_conf(
	'postgresql.conf', qq{
max_connections = 100
shared_buffers = 32MB
log_statement = none
});
$remote->start;

my $proxy = PostgreSQL::Test::Cluster->new('soak_proxy');
$proxy->init;
$proxy->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'bgw_proxy'
bgw_proxy.workers = $workers
max_connections = 100
shared_buffers = 32MB
log_statement = none
# the workers log each connection they close, with why
log_min_messages = debug1
# no close for idleness, however long a slow machine takes (see "no other closes")
bgw_proxy.idle_timeout = 0
});
$proxy->start;

# remote: the partition databases and their functions; the sampler tables
for my $p (0 .. $nparts - 1)
{
	$remote->safe_psql('postgres', "CREATE DATABASE p$p");
	$remote->safe_psql(
		"p$p", qq{
CREATE SEQUENCE raised;
CREATE FUNCTION soak_get(k int) RETURNS int LANGUAGE sql
    AS \$\$ SELECT k * 10 + $p \$\$;
CREATE FUNCTION soak_all(k int) RETURNS SETOF int LANGUAGE sql
    AS \$\$ SELECT k * 10 + $p \$\$;
CREATE FUNCTION soak_fail(k int) RETURNS int LANGUAGE plpgsql AS \$\$
BEGIN
    PERFORM nextval('raised');
    RAISE EXCEPTION 'soak: injected failure for key % on p$p', k
        USING ERRCODE = '40001';
END \$\$;
CREATE FUNCTION soak_nap(k int, s float8) RETURNS int LANGUAGE sql
    AS \$\$ SELECT k FROM pg_sleep(s) \$\$;
});
}
$remote->safe_psql(
	'postgres', q{
CREATE TABLE samples (n int, ts timestamptz, part text, app text, conns int, stale_naps int);
CREATE TABLE sampler_stop ();
});

# proxy: the clusters, the proxy functions, the local wrappers.
#
# A pool (cluster + role) lives in one worker, chosen by a hash of the
# cluster name and role, so one cluster would leave the second worker idle.
# Candidate clusters (same partitions, each with its own application_name)
# are probed one call each, and the first one served by worker 0 and the
# first served by worker 1 carry the load; the proxy functions pick one of
# the two per call with CLUSTER soak_cluster(k).
my ($rhost, $rport) = ($remote->host, $remote->port);
my @candidates = map { "soak_$_" } 'a' .. 'h';
$proxy->safe_psql('postgres', 'CREATE EXTENSION bgw_proxy');
for my $c (@candidates)
{
	my $parts = join ",\n    ",
	  map { "p$_ 'host=$rhost port=$rport dbname=p$_ application_name=bgw$c'" }
	  0 .. $nparts - 1;
	$proxy->safe_psql(
		'postgres', qq{
CREATE SERVER $c FOREIGN DATA WRAPPER bgw_proxy OPTIONS (
    max_connections '$per_worker',
    $parts);
});
}
$proxy->safe_psql(
	'postgres', qq{
CREATE FUNCTION soak_ident(c text) RETURNS text LANGUAGE sql AS 'SELECT c';
CREATE FUNCTION soak_probe(c text) RETURNS int
    AS \$\$ CLUSTER soak_ident(c); RUN ON 0; SELECT soak_get(0); \$\$ LANGUAGE bgw_proxy;

CREATE TABLE soak_clusters (i int PRIMARY KEY, name text NOT NULL);
CREATE FUNCTION soak_cluster(k int) RETURNS text LANGUAGE sql STABLE
    AS \$\$ SELECT name FROM soak_clusters WHERE i = (k >> 2) % 2 \$\$;
CREATE FUNCTION soak_get(k int) RETURNS int
    AS \$\$ CLUSTER soak_cluster(k); RUN ON k; \$\$ LANGUAGE bgw_proxy;
CREATE FUNCTION soak_all(k int) RETURNS SETOF int
    AS \$\$ CLUSTER soak_cluster(k); RUN ON ALL; \$\$ LANGUAGE bgw_proxy;
CREATE FUNCTION soak_fail(k int) RETURNS int
    AS \$\$ CLUSTER soak_cluster(k); RUN ON k; \$\$ LANGUAGE bgw_proxy;
CREATE FUNCTION soak_nap(k int, s float8) RETURNS int
    AS \$\$ CLUSTER soak_cluster(k); RUN ON k; \$\$ LANGUAGE bgw_proxy;

-- a wrong answer is a plain error: it aborts the pgbench client
CREATE FUNCTION soak_check(got text, want text) RETURNS int LANGUAGE plpgsql AS \$\$
BEGIN
    IF got IS DISTINCT FROM want THEN
        RAISE EXCEPTION 'soak: got %, want %', got, want;
    END IF;
    RETURN 1;
END \$\$;

CREATE TABLE cancels (k int, msg text);
CREATE FUNCTION soak_cancel(k int) RETURNS int LANGUAGE plpgsql AS \$\$
BEGIN
    PERFORM soak_nap(k, 3600);
    RAISE EXCEPTION 'soak: nap for key % was not cancelled', k;
EXCEPTION WHEN query_canceled THEN
    INSERT INTO cancels VALUES (k, SQLERRM);
    RETURN 0;
END \$\$;

CREATE TABLE samples (ts timestamptz, conns_open int, in_flight int);
CREATE TABLE sampler_stop ();
});

my $served_sql =
  "SELECT string_agg(requests_served::text, ',' ORDER BY worker) FROM pg_stat_bgw_proxy_workers";
my %chosen;    # worker => cluster
my $probes = 0;
for my $c (@candidates)
{
	$probes++;
	my @before = split /,/, $proxy->safe_psql('postgres', $served_sql);
	is($proxy->safe_psql('postgres', "SELECT soak_probe('$c')"), '0', "probe call on $c works");
	my @after = split /,/, $proxy->safe_psql('postgres', $served_sql);
	my @w = grep { $after[$_] != $before[$_] } 0 .. $#after;
	is(scalar @w, 1, "one worker served the probe of $c") or next;
	$chosen{ $w[0] } //= $c;
	last if keys %chosen == 2;
}
is(join(',', sort keys %chosen), '0,1', 'found a cluster for each worker')
  or BAIL_OUT('all candidate clusters map to one worker');
my @clusters = @chosen{ 0, 1 };
my @apps = map { "bgw$_" } @clusters;
# the bound: the two clusters' limits, plus the one connection each probed
# but unused candidate opened (it stays idle in its pool)
my $bound_total = 2 * $per_part * $nparts + ($probes - 2);
note("clusters: $clusters[0] (worker 0), $clusters[1] (worker 1)");
$proxy->safe_psql('postgres',
	"INSERT INTO soak_clusters VALUES (0, '$clusters[0]'), (1, '$clusters[1]')");

# warm-up: every partition of both clusters answers before the run
# (k = p and k = p + 4 differ in the bit that picks the cluster)
for my $k (0 .. 2 * $nparts - 1)
{
	my $p = $k % $nparts;
	is($proxy->safe_psql('postgres', "SELECT soak_get($k)"),
		$k * 10 + $p, "before: a call on partition $p of $clusters[$k >> 2] works");
}

my $workers_sql =
  "SELECT string_agg(worker || ':' || coalesce(pid::text, '-'), ',' ORDER BY worker) "
  . "FROM pg_stat_bgw_proxy_workers";
my $workers_before = $proxy->safe_psql('postgres', $workers_sql);
like($workers_before, qr/^0:\d+,1:\d+$/, 'before: both workers are running')
  or diag($workers_before);
my @served_before = split /,/, $proxy->safe_psql('postgres', $served_sql);
my $log_offset = -s $proxy->logfile;
my $rlog_offset = -s $remote->logfile;

# ---------------------------------------------------------------- samplers
# Each runs as one DO block with a COMMIT per sample, so every sample sees a
# fresh pg_stat_activity; it stops on a row in sampler_stop (or after 15
# minutes, so it can never outlive a broken test by much).

my $remote_sampler_sql = qq{
DO \$\$
DECLARE
    deadline timestamptz := clock_timestamp() + interval '900 s';
    n int := 0;
BEGIN
    LOOP
        n := n + 1;
        INSERT INTO samples VALUES (n, clock_timestamp(), NULL, NULL, 0, 0);
        INSERT INTO samples
        SELECT n, clock_timestamp(), a.datname, a.application_name, count(*),
               count(*) FILTER (WHERE a.state = 'active' AND a.query LIKE '%soak_nap%'
                   AND a.query_start < clock_timestamp() - interval '$stale_secs s')
          FROM pg_stat_activity a
         WHERE a.datname ~ '^p[0-9]+\$' AND a.backend_type = 'client backend'
         GROUP BY a.datname, a.application_name;
        COMMIT;
        EXIT WHEN EXISTS (SELECT FROM sampler_stop) OR clock_timestamp() > deadline;
        PERFORM pg_sleep(0.2);
    END LOOP;
END \$\$;
};
my $proxy_sampler_sql = q{
DO $$
DECLARE deadline timestamptz := clock_timestamp() + interval '900 s';
BEGIN
    LOOP
        INSERT INTO samples
        SELECT clock_timestamp(), sum(conns_open), sum(requests_in_flight)
          FROM pg_stat_bgw_proxy_workers;
        COMMIT;
        EXIT WHEN EXISTS (SELECT FROM sampler_stop) OR clock_timestamp() > deadline;
        PERFORM pg_sleep(0.2);
    END LOOP;
END $$;
};

sub start_psql
{
	my ($node, $sql) = @_;
	my $h = { out => '', err => '' };
	$h->{run} = IPC::Run::start(
		[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'), '-c', $sql ],
		'<', \undef, '>', \$h->{out}, '2>', \$h->{err},
		IPC::Run::timeout(900));
	return $h;
}

sub finish_psql
{
	my ($h, $what) = @_;
	my $rc;
	eval {
		$h->{run}->finish;
		$rc = $h->{run}->result(0);
	};
	if ($@)
	{
		eval { $h->{run}->kill_kill; };
		$rc = -1;
	}
	is($rc, 0, "$what ran to its end") or diag("$h->{err}\n$@");
}

my $rsampler = start_psql($remote, $remote_sampler_sql);
my $psampler = start_psql($proxy, $proxy_sampler_sql);
# the samplers are running before the load starts
my $deadline = time() + $poll_secs;
usleep(200_000)
  while time() < $deadline
  && ($remote->safe_psql('postgres', 'SELECT count(*) > 0 FROM samples') ne 't'
	|| $proxy->safe_psql('postgres', 'SELECT count(*) > 0 FROM samples') ne 't');

# ----------------------------------------------------------------- pgbench

my $dir = PostgreSQL::Test::Utils::tempdir;
my %scripts = (
	normal => [ 55, qq{\\set k random(0, 1000000)
SELECT soak_check(soak_get(:k)::text, (:k * 10 + :k % $nparts)::text);
} ],
	all => [ 10, qq{\\set k random(0, 1000000)
SELECT soak_check((SELECT string_agg(x::text, ',') FROM soak_all(:k) x),
                  (SELECT string_agg((:k * 10 + p)::text, ',' ORDER BY p)
                     FROM generate_series(0, $nparts - 1) p));
} ],
	error => [ 20, qq{\\set k random(0, 1000000)
SELECT soak_fail(:k);
} ],
	cancel => [ 15, qq{\\set k random(0, 1000000)
SET statement_timeout = '${cancel_ms}ms';
SELECT soak_cancel(:k);
RESET statement_timeout;
} ],);
my @script_order = qw(normal all error cancel);
my @script_args;
for my $name (@script_order)
{
	my $file = "$dir/$name.sql";
	open my $fh, '>', $file or die "$file: $!";
	print $fh $scripts{$name}[1];
	close $fh;
	push @script_args, '-f', "$file\@$scripts{$name}[0]";
}

my ($bout, $berr) = ('', '');
# the run's start and end by the servers' clock (both nodes run here)
my $bench_start_ts = $remote->safe_psql('postgres', 'SELECT now()');
my $proxy_log_pos = -s $proxy->logfile;
my $bench_start = time();
my $brc;
{
	local $ENV{PGOPTIONS} = '-c statement_timeout=60s';
	eval {
		IPC::Run::run(
			[
				'pgbench', '-n', '-c', $clients, '-j', 1, '-t', $per_client,
				'-P', 15, '--max-tries=1', '--failures-detailed',
				'-h', $proxy->host, '-p', $proxy->port, @script_args, 'postgres'
			],
			'<', \undef, '>', \$bout, '2>', \$berr,
			IPC::Run::timeout(900));
		$brc = $? >> 8;
	};
	if ($@)
	{
		$berr .= "\n[pgbench did not finish: $@]";
		$brc = -1;
	}
}
my $bench_secs = time() - $bench_start;
my $bench_end_ts = $remote->safe_psql('postgres', 'SELECT now()');
# connections of the two clusters the workers closed during the run, and
# those closed after a cancel the remote postmaster had not handled within
# cancel_wait_ms (5 s; a remote postmaster forking for ~150 cancel
# requests a second on a saturated machine can be that far behind): "did
# not finish in time", the statement still runs and its remote session
# lives on until the late cancel ends it; "not confirmed", the statement
# ended but the cancel could still hit the next one, so the session is
# ended at once, yet a sample may see it beside its replacement. Either
# may add one remote session, for a while, to its cluster and partition.
my @run_closes = grep { /closed a connection of pool "(\Q$clusters[0]\E|\Q$clusters[1]\E)"/ }
  split /\n/, slurp_file($proxy->logfile, $proxy_log_pos);
my $late_cancel = qr/: (cancel request not confirmed|cancel did not finish in time)$/;
my @other_closes = grep { !/$late_cancel/ } @run_closes;
my (%late_at, %late_in);    # late closes per cluster and partition, per cluster
for (grep { /$late_cancel/ } @run_closes)
{
	my ($cluster, $part) = /pool "([^"]+)" partition (\d+)/;
	$late_at{"$cluster/$part"}++;
	$late_in{$cluster}++;
}
my $late_closes = sum0(values %late_in);
my $most_late_at = max(0, values %late_at);
my $most_late_in = max(0, values %late_in);
note("pgbench ran for " . sprintf('%.1f', $bench_secs) . " s");
note("pgbench stdout:\n$bout");
{
	my @lines = grep { /\S/ } split /\n/, $berr;
	splice(@lines, 0, @lines - 20) if @lines > 20;
	note("pgbench stderr (tail):\n" . join("\n", @lines)) if @lines;
}

# stop the samplers
$remote->safe_psql('postgres', 'INSERT INTO sampler_stop DEFAULT VALUES');
$proxy->safe_psql('postgres', 'INSERT INTO sampler_stop DEFAULT VALUES');
finish_psql($rsampler, 'remote sampler');
finish_psql($psampler, 'proxy sampler');

# ------------------------------------------------------- pgbench's verdict

is($brc, 0, 'pgbench exited with status 0');
unlike($berr, qr/aborted|client \d+ .*error/i, 'no pgbench client was aborted')
  or diag(join "\n", grep { /aborted|error/i } split /\n/, $berr);

# per-script figures: successful and failed transactions
my %ok;
my %failed;
for my $i (0 .. $#script_order)
{
	my $n = $i + 1;
	my $name = $script_order[$i];
	if ($bout =~ /^SQL script $n: .*?\n(.*?)(?=^SQL script|\z)/ms)
	{
		my $sec = $1;
		$ok{$name} = $sec =~ /^ - (\d+) transactions/m ? $1 : undef;
		$failed{$name} = $sec =~ /^ - number of failed transactions: (\d+)/m ? $1 : 0;
	}
}
my ($processed) = $bout =~ m{^number of transactions actually processed: (\d+)/}m;
my ($total_failed) = $bout =~ /^number of failed transactions: (\d+)/m;
my ($serialization) = $bout =~ /^number of serialization failures: (\d+)/m;
$total_failed = 0 unless defined $total_failed;
$serialization = 0 unless defined $serialization;
for my $name (@script_order)
{
	ok(defined $ok{$name}, "pgbench reported the $name script")
	  or $ok{$name} = 0;
}
note(join ', ', map { "$_: $ok{$_} ok, $failed{$_} failed" } @script_order);

is(($processed // 0) + $total_failed,
	$clients * $per_client, "pgbench ran all $clients x $per_client transactions");
is($ok{normal} + $failed{normal} + $ok{all} + $failed{all} + $ok{error} + $failed{error}
	  + $ok{cancel} + $failed{cancel},
	$clients * $per_client, 'the per-script figures add up to all transactions');
cmp_ok($ok{normal}, '>', 0, 'normal calls ran');
cmp_ok($ok{all}, '>', 0, 'RUN ON ALL calls ran');
is($failed{normal} + $failed{all}, 0, 'no normal or RUN ON ALL call failed');

# ------------------------------------------------------------------ errors

my $injected = 0;
for my $p (0 .. $nparts - 1)
{
	$injected += $remote->safe_psql("p$p",
		'SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM raised');
}
note("errors: injected on the remotes $injected, seen by pgbench $serialization "
	  . "(failed transactions $total_failed), error-script runs "
	  . ($ok{error} + $failed{error}));
cmp_ok($injected, '>', 0, 'errors were injected');
is($serialization, $injected,
	'errors seen by the clients (40001) = errors raised on the remotes');
is($total_failed, $serialization, 'every failed transaction was an injected 40001');
is($failed{error}, $injected, 'the failures are all in the error script');
is($ok{error}, 0, 'no error-script call succeeded');

# ----------------------------------------------------------------- cancels

my ($cancels, $by_timeout) = split /\|/,
  $proxy->safe_psql('postgres',
	"SELECT count(*), count(*) FILTER (WHERE msg = 'canceling statement due to statement timeout') "
	  . 'FROM cancels');
my $rlog = slurp_file($remote->logfile, $rlog_offset);
my $remote_cancels = () =
  $rlog =~ /ERROR:  canceling statement due to user request/g;
note("cancels: caught locally $cancels, cancel-script runs $ok{cancel}, "
	  . "cancelled on the remote $remote_cancels");
cmp_ok($cancels, '>', 0, 'calls were cancelled');
is($cancels, $ok{cancel}, 'every cancel-script call was cancelled exactly once');
is($by_timeout, $cancels, 'every cancel came from statement_timeout');
cmp_ok($remote_cancels, '>', 0, 'cancels reached the remote (remote statements cancelled)');
cmp_ok($remote_cancels, '<=', $cancels, 'no more remote cancels than local ones');

# the remote naps are an hour long: one still running was never cancelled
my $naps_sql =
  "SELECT count(*) FROM pg_stat_activity WHERE datname ~ '^p[0-9]+\$' "
  . "AND state = 'active' AND query LIKE '%soak_nap%'";
my $naps;
$deadline = time() + $poll_secs;
while (1)
{
	$naps = $remote->safe_psql('postgres', $naps_sql);
	last if $naps eq '0' || time() > $deadline;
	usleep(200_000);
}
is($naps, '0', 'no cancelled nap is still running on the remote');

# ----------------------------------------------------------------- samples

my $in_run = "ts BETWEEN '$bench_start_ts' AND '$bench_end_ts'";
my $chosen_apps = join ', ', map { "'$_'" } @apps;
my ($nsamples, $span_ok, $max_part, $max_stale, $max_other) = split /\|/,
  $remote->safe_psql(
	'postgres', qq{
SELECT count(DISTINCT n) FILTER (WHERE $in_run),
       min(ts) <= '$bench_start_ts' AND max(ts) >= '$bench_end_ts',
       coalesce(max(conns) FILTER (WHERE app IN ($chosen_apps)), 0),
       max(stale_naps),
       coalesce(max(conns) FILTER (WHERE app NOT LIKE 'bgwsoak\\_%'), 0)
  FROM samples});
# per sample: the most connections one cluster had, and all connections
my ($max_cluster, $max_total) = split /\|/,
  $remote->safe_psql(
	'postgres', qq{
SELECT max(c), max(t) FROM (
    SELECT n, max(c) c, sum(c) t FROM (
        SELECT n, app, sum(conns) c FROM samples GROUP BY n, app) per_app
     GROUP BY n) per_sample});
my ($pnsamples, $pspan_ok, $max_open, $max_inflight) = split /\|/,
  $proxy->safe_psql(
	'postgres', qq{
SELECT count(*) FILTER (WHERE $in_run),
       min(ts) <= '$bench_start_ts' AND max(ts) >= '$bench_end_ts',
       max(conns_open), max(in_flight) FROM samples});
note("samples: remote $nsamples (max per cluster and partition $max_part, per cluster "
	  . "$max_cluster, total $max_total, stale naps $max_stale), proxy $pnsamples "
	  . "(max conns_open $max_open, max in flight $max_inflight)");

# a sample every 0.2 s or so, slower on a saturated machine: asked for,
# one every 2 s on average during the run (the span is checked apart)
my $min_samples = int($bench_secs / 2);
is($span_ok, 't', 'the remote samples cover the whole run');
cmp_ok($nsamples, '>=', $min_samples, 'the remote was sampled every 2 s or more often');
is($pspan_ok, 't', 'the proxy samples cover the whole run');
cmp_ok($pnsamples, '>=', $min_samples, 'the proxy was sampled every 2 s or more often');
cmp_ok($max_part, '>', 0, 'the samples saw the pools\' remote connections');
is($max_other, '0', 'every remote connection to the partitions is one of the clusters\'');
# a connection closed after a late cancel may leave its remote session for
# a while: each such close may add one to its partition's and cluster's
# samples (the most of them at one partition, in one cluster)
# on a failure, the closes (and their reasons) go to stderr: a CI log
# without -v shows them
my $show_closes = sub { diag("closed during the run:\n" . join("\n", @run_closes)) if @run_closes };
cmp_ok($max_part, '<=', $per_part + $most_late_at,
	"remote connections per cluster and partition stayed <= $per_part (workers x max_connections) "
	  . "+ $most_late_at (closed after a late cancel) in every sample")
  or $show_closes->();
cmp_ok($max_cluster, '<=', $per_part * $nparts + $most_late_in,
	"remote connections per cluster stayed <= " . $per_part * $nparts . " + $most_late_in in every sample")
  or $show_closes->();
cmp_ok($max_total, '<=', $bound_total + $late_closes,
	"remote connections in total stayed <= $bound_total + $late_closes in every sample")
  or $show_closes->();
cmp_ok($max_open, '<=', $bound_total,
	"connections held by the workers stayed <= $bound_total in every sample");
is($max_stale, '0', "no cancelled nap kept running for ${stale_secs} s during the run");
# a cancelled call's connection is drained and reused; nothing else ends
# one under this load (no idle time, no lifetime, a fixed limit), but a
# cancel the remote handled too late
# (on stdout, beside the test's other notes; CI shows them only on a failure, below)
note("closed during the run: " . (@run_closes ? "\n" . join("\n", @run_closes) : 'none'));
is(scalar(@other_closes), 0,
	'no pooled connection of the clusters was closed during the run but after a late cancel')
  or diag("closed for another reason:\n" . join("\n", @other_closes));

# ------------------------------------------------------- nothing left over

sub poll_eq
{
	my ($node, $db, $sql, $want) = @_;
	my $got;
	my $until = time() + $poll_secs;
	while (1)
	{
		$got = $node->safe_psql($db, $sql);
		return $got if $got eq $want || time() > $until;
		usleep(200_000);
	}
}

is(poll_eq($proxy, 'postgres', 'SELECT submitted - completed FROM pg_stat_bgw_proxy_queue', '0'),
	'0', 'every submitted request completed (submitted = completed)');
is( poll_eq(
		$proxy, 'postgres',
		"SELECT string_agg(requests_in_flight::text, ',' ORDER BY worker) FROM pg_stat_bgw_proxy_workers",
		'0,0'),
	'0,0',
	'no request in flight in any worker');
note('queue: '
	  . $proxy->safe_psql('postgres',
		"SELECT 'submitted ' || submitted || ', completed ' || completed || ', full-queue waits ' || queue_full_waits FROM pg_stat_bgw_proxy_queue"
	  ));
note('workers: '
	  . $proxy->safe_psql('postgres',
		"SELECT string_agg(format('%s: %s open %s served %s connects %s', worker, state, conns_open, requests_served, connects), '; ' ORDER BY worker) FROM pg_stat_bgw_proxy_workers"
	  ));
is($proxy->safe_psql('postgres', $workers_sql),
	$workers_before, 'the workers were not restarted during the run');
my @served_after = split /,/, $proxy->safe_psql('postgres', $served_sql);
for my $w (0, 1)
{
	cmp_ok($served_after[$w] - $served_before[$w], '>', 0, "worker $w served calls during the run");
}

# the remote connections of the pool are exactly those the workers hold
my $remote_conns_sql =
  "SELECT count(*) FROM pg_stat_activity WHERE datname ~ '^p[0-9]+\$' "
  . "AND backend_type = 'client backend'";
my ($rconns, $held);
my $until = time() + $poll_secs;
while (1)
{
	$held = $proxy->safe_psql('postgres', 'SELECT sum(conns_open) FROM pg_stat_bgw_proxy_workers');
	$rconns = $remote->safe_psql('postgres', $remote_conns_sql);
	last if $rconns eq $held || time() > $until;
	usleep(200_000);
}
is($rconns, $held, "no leaked remote connection (remote $rconns = held by the workers $held)");
cmp_ok($rconns, '<=', $bound_total, 'remote connections within the bound after the run');

# -------------------------------------------------------- service goes on

for my $k (0 .. 2 * $nparts - 1)
{
	my $p = $k % $nparts;
	my ($rc, $out, $err) = (0, '', '');
	$rc = $proxy->psql('postgres', "SELECT soak_get($k)", stdout => \$out, stderr => \$err);
	is($out, $k * 10 + $p, "after: a call on partition $p of $clusters[$k >> 2] works")
	  or diag("rc=$rc $err");
}
for my $k (2, 6)
{
	is( $proxy->safe_psql('postgres', "SELECT string_agg(x::text, ',') FROM soak_all($k) x"),
		join(',', map { $k * 10 + $_ } 0 .. $nparts - 1),
		"after: RUN ON ALL on $clusters[$k >> 2] works");
}

my @crashes = grep { /$crash_re/ } split /\n/, slurp_file($proxy->logfile, $log_offset);
ok(!@crashes, "no crash in the proxy's log") or diag(join "\n", @crashes);

note(sprintf('whole test: %.1f s', time() - $t0));
$proxy->stop;
$remote->stop;
done_testing();
