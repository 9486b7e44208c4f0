# 006_queue_wait.pl — calls that cannot be served yet wait, then are served.
#
# The only worker of the proxy is stopped (SIGSTOP): calls submitted now stay
# in its queue. Asserted while it is stopped: every caller is still waiting
# (none failed), pg_stat_bgw_proxy_queue shows them as queue depth, and their
# sessions show the extension wait event. After SIGCONT: every call returns
# its own right answer, the depth falls back to 0, nothing is in flight,
# submitted = completed, the peak depth saw them all, and the log has no
# crash. (A literally full queue needs more than 1024 waiting sessions per
# worker; its backpressure loop is the same wait, bounded by
# bgw_proxy.worker_wait_timeout.)
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep);

my $callers = 12;
my $poll_secs = 30;

my $remote = PostgreSQL::Test::Cluster->new('remote6');
$remote->init;
$remote->start;
$remote->safe_psql('postgres',
	"CREATE FUNCTION twice(i int) RETURNS int LANGUAGE sql AS \$\$ SELECT i * 2 \$\$");

my $proxy = PostgreSQL::Test::Cluster->new('proxy6');
$proxy->init;
# Calls through the worker: a direct call (bgw_proxy.direct_calls) runs on
# a connection the worker parked for backends and needs no worker at all;
# the end of this test shows that.
$proxy->append_conf('postgresql.conf',
	"shared_preload_libraries = 'bgw_proxy'\nbgw_proxy.workers = 1\n"
	  . "bgw_proxy.worker_wait_timeout = '60s'\nbgw_proxy.direct_calls = off\n");
$proxy->start;
my ($host, $port) = ($remote->host, $remote->port);
$proxy->safe_psql('postgres', qq{
CREATE EXTENSION bgw_proxy;
CREATE SERVER q FOREIGN DATA WRAPPER bgw_proxy OPTIONS (p0 'host=$host port=$port dbname=postgres');
CREATE FUNCTION twice(i int) RETURNS int AS \$\$ CLUSTER 'q'; RUN ON 0; \$\$ LANGUAGE bgw_proxy;
});
is($proxy->safe_psql('postgres', 'SELECT twice(21)'), '42', 'warm-up call works');

sub poll_until
{
	my ($sql, $expected) = @_;
	my $deadline = time() + $poll_secs;
	my $out;
	while (time() <= $deadline)
	{
		$out = $proxy->safe_psql('postgres', $sql);
		return 1 if $out eq $expected;
		usleep(50_000);
	}
	diag("gave up waiting for '$expected' from $sql; last: $out");
	return 0;
}

my $pid = $proxy->safe_psql('postgres', 'SELECT pid FROM pg_stat_bgw_proxy_workers');
$proxy->safe_psql('postgres', 'SELECT bgw_proxy_stat_reset()');
ok(kill('STOP', $pid), "worker stopped (pid $pid)");

my @runs;
for my $i (1 .. $callers)
{
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1',
		  '-d', $proxy->connstr('postgres') . " application_name=waiter_$i",
		  '-c', "SELECT twice($i)" ],
		'<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(120));
	push @runs, [ $i, $h, \$out, \$err ];
}

my $waiting = poll_until('SELECT depth FROM pg_stat_bgw_proxy_queue', "$callers");
ok($waiting, "all $callers calls are queued (depth $callers)");
# (polled: a caller takes a moment between queueing and sleeping, and
# looks at its worker once a second)
ok( poll_until(
		"SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'waiter_%' "
		  . "AND wait_event_type = 'Extension' AND state = 'active'",
		"$callers"),
	'every caller waits with wait_event_type Extension');
usleep(500_000);
is($proxy->safe_psql('postgres', 'SELECT depth FROM pg_stat_bgw_proxy_queue'),
	"$callers", 'still queued half a second later: nobody gave up or failed');

# a direct call is served by the caller itself, on the parked connection,
# while the worker is still stopped: it neither waits nor enters the queue
is($proxy->safe_psql('postgres', 'SET bgw_proxy.direct_calls = on; SELECT twice(50)'),
	'100', 'a direct call is served while the worker is stopped');
is($proxy->safe_psql('postgres', 'SELECT depth FROM pg_stat_bgw_proxy_queue'),
	"$callers", '... and did not enter the queue');

ok(kill('CONT', $pid), 'worker continued');
for my $r (@runs)
{
	my ($i, $h, $out, $err) = @$r;
	my $ok = eval { $h->finish; 1 };
	chomp $$out;
	is($ok && $h->result(0) == 0 ? $$out : "failed: $$err", $i * 2, "caller $i got its answer");
}

ok(poll_until('SELECT depth FROM pg_stat_bgw_proxy_queue', '0'), 'queue depth back to 0');
is($proxy->safe_psql('postgres', 'SELECT sum(requests_in_flight) FROM pg_stat_bgw_proxy_workers'),
	'0', 'nothing in flight');
is( $proxy->safe_psql('postgres',
		"SELECT submitted = completed AND submitted = $callers AND peak_depth >= $callers "
		  . "FROM pg_stat_bgw_proxy_queue"),
	't', 'submitted = completed = callers, peak depth saw them all');
is($proxy->safe_psql('postgres', 'SELECT pid FROM pg_stat_bgw_proxy_workers'),
	$pid, 'the same worker served them (no restart)');
my @crashes = grep { /terminated by signal|was terminated|exited with exit code [^01]/ }
  split /\n/, slurp_file($proxy->logfile);
ok(!@crashes, 'no crash in the proxy log') or diag(join "\n", @crashes);

done_testing();
