# 009_pause.pl — moving a partition between instances under load, with
# bgw_proxy_pause / bgw_proxy_resume; a single partition paused under load;
# bgw_proxy_reconnect under load.
#
# Three instances: the proxy (bgw_proxy, 2 workers; it also holds partition
# 0, database part0), `old` (partition 1, database part1) and `new` (an
# empty part1). A SQL/MED cluster `moving` hashes put(k) over the two
# partitions; the remote put() inserts k into items. pgbench runs 16
# clients calling put() with random keys; every call also bumps a local
# sequence, so the sequence counts the calls made. A flag in a local table
# turns the remaining transactions into no-ops when the test has seen what
# it waits for (the run's length is then not a matter of time).
#
# The move: once calls flow, pause the cluster (it returns once no call
# runs), arm a trigger on the old part1 that counts every write from then
# on, copy part1's rows to the new instance, ALTER SERVER the partition to
# it, resume. Asserted:
#   - the view shows the cluster paused with no call running, and calls
#     waiting;
#   - pgbench exited 0: no client aborted, no failed transaction;
#   - the longest call took less than the pause (pause called to resume
#     returned) + 10 s (a call the resume did not release);
#   - no write reached the old part1 after the pause (the trigger's count is
#     0; a direct insert afterwards shows the trigger counts);
#   - the calls went on after the resume, on the new instance; the old
#     instance has no connection from the proxy left;
#   - every call's row is in part0 or the new part1, once: their sum is the
#     number of calls.
# One partition paused under load: calls to partition 1 wait and its rows
# do not change, calls to partition 0 go on; after the resume partition 1
# gets calls again.
# Reconnect under load: every connection the cluster had is closed (the
# remote pids disappear) while calls go on, and no call fails.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(time);
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/../lib';
use BgwPsql;

$BgwPsql::poll_secs = 120;    # states reached under load on a busy 2-core machine

my $clients = 16;

my $schema = q{
CREATE TABLE items (k int);
CREATE FUNCTION put(k int) RETURNS int LANGUAGE sql AS $$ INSERT INTO items VALUES (k) RETURNING k $$;
};

my $old = PostgreSQL::Test::Cluster->new('old9');
$old->init;
$old->start;
$old->safe_psql('postgres', 'CREATE DATABASE part1');
$old->safe_psql('part1', $schema . q{
CREATE TABLE guard (armed bool NOT NULL, late_writes int NOT NULL);
INSERT INTO guard VALUES (false, 0);
CREATE FUNCTION count_late() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE guard SET late_writes = late_writes + 1 WHERE armed;
    RETURN NEW;
END $$;
CREATE TRIGGER late AFTER INSERT ON items FOR EACH ROW EXECUTE FUNCTION count_late();
});

my $new = PostgreSQL::Test::Cluster->new('new9');
$new->init;
$new->start;
$new->safe_psql('postgres', 'CREATE DATABASE part1');
$new->safe_psql('part1', $schema);

my $proxy = PostgreSQL::Test::Cluster->new('proxy9');
$proxy->init;
$proxy->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'bgw_proxy'
bgw_proxy.workers = 2
max_connections = 60
});
$proxy->start;
$proxy->safe_psql('postgres', 'CREATE DATABASE part0');
$proxy->safe_psql('part0', $schema);

sub target
{
	my ($node) = @_;
	return 'host=' . $node->host . ' port=' . $node->port . ' dbname=part' . ($node == $proxy ? 0 : 1)
	  . ' application_name=mv';
}
my ($t0, $t1) = (target($proxy), target($old));
$proxy->safe_psql('postgres', qq{
CREATE EXTENSION bgw_proxy;
CREATE SERVER moving FOREIGN DATA WRAPPER bgw_proxy OPTIONS (p0 '$t0', p1 '$t1');
CREATE USER MAPPING FOR PUBLIC SERVER moving;
CREATE FUNCTION put(k int) RETURNS int AS \$\$ CLUSTER 'moving'; RUN ON hashtext(k::text); \$\$ LANGUAGE bgw_proxy;
CREATE SEQUENCE puts;
CREATE TABLE ctl (stop bool NOT NULL);
INSERT INTO ctl VALUES (false);
});
is($proxy->safe_psql('postgres', 'SELECT sum(put(k) + 0 * nextval(\'puts\')) FROM generate_series(1, 20) k'),
	'210', 'calls work');
cmp_ok($proxy->safe_psql('part0', 'SELECT count(*) FROM items'), '>', 0, 'calls reach partition 0');
cmp_ok($old->safe_psql('part1', 'SELECT count(*) FROM items'), '>', 0, 'calls reach partition 1 on old');

my $dir = PostgreSQL::Test::Utils::tempdir;
my $script = "$dir/put.sql";
open my $fh, '>', $script or die $!;
print $fh "\\set k random(1, 1000000)\n"
  . "SELECT CASE WHEN (SELECT stop FROM ctl) THEN 0 ELSE put(:k) + 0 * nextval('puts') END;\n";
close $fh;

# pgbench in the background: $per_client transactions per client, the
# calls until ctl.stop, no-ops after
sub start_pgbench
{
	my ($per_client, @extra) = @_;
	my $h = { out => '', err => '' };
	local $ENV{PGOPTIONS} = '-c statement_timeout=60s';
	$h->{run} = IPC::Run::start(
		[
			'pgbench', '-n', '-c', $clients, '-j', 2, '-t', $per_client,
			'--max-tries=1', '--failures-detailed', @extra, '-f', $script,
			'-h', $proxy->host, '-p', $proxy->port, 'postgres'
		],
		'<', \undef, '>', \$h->{out}, '2>', \$h->{err},
		IPC::Run::timeout(600));
	return $h;
}

sub finish_pgbench
{
	my ($h, $what, $per_client) = @_;
	my $rc;
	eval {
		$h->{run}->finish;
		$rc = $h->{run}->result(0);
	};
	if ($@)
	{
		$h->{err} .= "\n[pgbench did not finish: $@]";
		eval { $h->{run}->kill_kill; };
		$rc = -1;
	}
	is($rc, 0, "$what: pgbench exited 0 (no client aborted)") or diag("stdout:\n$h->{out}\nstderr:\n$h->{err}");
	my $total = $clients * $per_client;
	like($h->{out}, qr/number of transactions actually processed: $total\/$total/,
		"$what: every transaction ran");
	like($h->{out}, qr/number of failed transactions: 0 /, "$what: no failed transaction");
}

sub calls_made { return $proxy->safe_psql('postgres', 'SELECT last_value FROM puts'); }

sub count_items
{
	my ($node) = @_;
	return $node->safe_psql($node == $proxy ? 'part0' : 'part1', 'SELECT count(*) FROM items');
}

# wait until $n more calls than now have been made
sub calls_go_on
{
	my ($n, $what) = @_;
	my $want = calls_made() + $n;
	ok(poll_until($proxy, "SELECT last_value >= $want FROM puts", 't'), $what);
}

# ---------------------------------------------------------------- the move
my $per_client = 2000;
my $bench = start_pgbench($per_client, '-l', "--log-prefix=$dir/move");
calls_go_on(300, 'the load runs');

my $pause_start = time();
my ($rc, $out, $err) = run_sql($proxy, 'mover', ["SELECT bgw_proxy_pause('moving', '30s')"]);
is($rc, 0, 'the pause returned') or diag($err);
is($proxy->safe_psql('postgres', 'SELECT state || \':\' || calls_running FROM pg_stat_bgw_proxy_clusters'),
	'paused:0', 'the view shows the cluster paused, no call running');
ok(poll_until($proxy, 'SELECT calls_waiting > 0 FROM pg_stat_bgw_proxy_clusters', 't'), 'calls wait');
$old->safe_psql('part1', 'UPDATE guard SET armed = true');
my $moved = count_items($old);

# copy the partition's rows, then point the cluster at the new place
my ($data, $cerr) = ('', '');
IPC::Run::run([ 'psql', '-XAtq', '-d', $old->connstr('part1'), '-c', 'COPY items TO STDOUT' ],
	'<', \undef, '>', \$data, '2>', \$cerr);
IPC::Run::run([ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $new->connstr('part1'), '-c', 'COPY items FROM STDIN' ],
	'<', \$data, '>', \my $cout, '2>', \$cerr);
is(count_items($new), $moved, "the partition's $moved rows were copied");
my $t1new = target($new);
$proxy->safe_psql('postgres', "ALTER SERVER moving OPTIONS (SET p1 '$t1new')");

($rc, $out, $err) = run_sql($proxy, 'mover', ["SELECT bgw_proxy_resume('moving')"]);
is($rc, 0, 'the resume returned') or diag($err);
my $pause_secs = time() - $pause_start;
note(sprintf('paused for %.3f s', $pause_secs));

ok($new->poll_query_until('part1', "SELECT count(*) > $moved + 300 FROM items"), 'calls go on, to the new instance')
  or diag('the new part1 has ' . count_items($new) . " rows, $moved copied");
ok(poll_until($old, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'mv'", '0'),
	'the old instance has no connection from the proxy');
$proxy->safe_psql('postgres', 'UPDATE ctl SET stop = true');
finish_pgbench($bench, 'move', $per_client);

# the longest call, from pgbench's per-transaction logs (column 3: µs)
my ($longest, $logged) = (0, 0);
for my $log (glob("$dir/move.*"))
{
	for my $line (split /\n/, slurp_file($log))
	{
		my @f = split / /, $line;
		next unless @f >= 3 && $f[2] =~ /^\d+$/;
		$logged++;
		$longest = $f[2] if $f[2] > $longest;
	}
}
is($logged, $clients * $per_client, 'every transaction is in the logs');
# A call waits out the pause, then for a new connection (the resume
# retires the old ones): seconds on a loaded machine. The bound is there to
# catch a call the resume did not release, not to time the machine.
cmp_ok($longest / 1e6, '<', $pause_secs + 10, sprintf('the longest call (%.3f s) < the pause (%.3f s) + 10 s',
		$longest / 1e6, $pause_secs));

is($old->safe_psql('part1', 'SELECT late_writes FROM guard'), '0', 'no write reached the old partition after the pause');
is(count_items($old), $moved, 'the old partition kept its rows');
is(count_items($proxy) + count_items($new), calls_made(), "every call's row is in part0 or the new part1, once");
$old->safe_psql('part1', 'INSERT INTO items VALUES (0)');
is($old->safe_psql('part1', 'SELECT late_writes FROM guard'), '1', 'the trigger counts writes');
is($proxy->safe_psql('postgres', 'SELECT count(*) FROM pg_stat_bgw_proxy_clusters'), '0', 'no pause left');

# ---------------------------------------- one partition paused under load
$proxy->safe_psql('postgres', 'UPDATE ctl SET stop = false');
$per_client = 1000;
$bench = start_pgbench($per_client);
calls_go_on(300, 'the load runs again');
($rc, $out, $err) = run_sql($proxy, 'mover', ["SELECT bgw_proxy_pause('moving', '30s', 1)"]);
is($rc, 0, 'partition 1 paused') or diag($err);
my $p1 = count_items($new);
my $p0 = count_items($proxy);
# (pgbench's clients soon all wait on partition 1: partition 0 is called
# from here)
my $on0 = "FROM generate_series(1, 200) k WHERE hashtext(k::text) & 1 = 0";
my $n0 = $proxy->safe_psql('postgres', "SELECT count(*) $on0");
is($proxy->safe_psql('postgres', "SELECT count(put(k) + 0 * nextval('puts')) $on0"), $n0,
	"$n0 calls to partition 0 go on");
cmp_ok(count_items($proxy), '>=', $p0 + $n0, 'partition 0 got them');
ok(poll_until($proxy, "SELECT (SELECT calls_waiting FROM pg_stat_bgw_proxy_clusters) > 0", 't'),
	'calls to partition 1 wait');
is(count_items($new), $p1, 'partition 1 gets no call while paused');
($rc, $out, $err) = run_sql($proxy, 'mover', ["SELECT bgw_proxy_resume('moving')"]);
is($rc, 0, 'partition 1 resumed') or diag($err);
ok($new->poll_query_until('part1', "SELECT count(*) > $p1 + 100 FROM items"), 'partition 1 gets calls again');

# ------------------------------------------------ reconnect under load
my $pids_sql = "SELECT coalesce(string_agg(pid::text, ','), '') FROM pg_stat_activity WHERE application_name = 'mv'";
my @old_pids = (split(/,/, $proxy->safe_psql('postgres', $pids_sql)), split(/,/, $new->safe_psql('postgres', $pids_sql)));
cmp_ok(scalar(@old_pids), '>=', 2, 'the cluster has connections on both partitions');
my $connects = $proxy->safe_psql('postgres', "SELECT sum(connects) FROM pg_stat_bgw_proxy WHERE cluster = 'moving'");
($rc, $out, $err) = run_sql($proxy, 'mover', ["SELECT bgw_proxy_reconnect('moving')"]);
is($rc, 0, 'reconnect returned') or diag($err);
my $in = join(',', @old_pids);
ok(poll_until($proxy, "SELECT count(*) FROM pg_stat_activity WHERE pid IN ($in)", '0')
	  && poll_until($new, "SELECT count(*) FROM pg_stat_activity WHERE pid IN ($in)", '0'),
	"every connection the cluster had is closed");
calls_go_on(300, 'calls go on after the reconnect');
cmp_ok($proxy->safe_psql('postgres', "SELECT sum(connects) FROM pg_stat_bgw_proxy WHERE cluster = 'moving'"),
	'>', $connects, 'new connections were opened');
$proxy->safe_psql('postgres', 'UPDATE ctl SET stop = true');
finish_pgbench($bench, 'partition pause and reconnect', $per_client);
is(count_items($proxy) + count_items($new), calls_made(), "every call's row is in part0 or part1, once");

unlike(slurp_file($proxy->logfile), qr/terminated by signal|was terminated by/, 'no crash in the proxy log');
done_testing();
