# 012_exit_frozen.pl — a session that ends in the middle of a call with
# several targets ends every target's remote statement.
#
# A backend that exits in the middle of a direct call (pg_terminate_backend,
# a server shutting down) cannot leave its remote statements to a worker
# that may be gone: it sends each one a CancelRequest and its session a
# Terminate itself. The cancels go out together, one second at most for all
# of them (backend/direct_call.cpp, send_cancels), so partitions whose
# postmasters are frozen hold the exit for one second, not one per target.
#
# Setup: two remote instances, two databases on each; cluster "ex" has the
# four as partitions (two per instance). A RUN ON ALL call runs pg_sleep on
# all four, direct (the workers' queue sees none of it). Both postmasters
# are stopped (SIGSTOP; their backends run on), and so are the proxy's
# workers (what happens is the backend's doing alone); then the calling
# session is terminated.
#
# Asserted: the calling backend exits; once the postmasters continue (the
# workers still stopped), none of the call's four statements runs any more
# (each was cancelled) and no session of the call is left on either
# instance. How long the exit took is noted (one second here, four with
# one cancel after the other), not asserted: a bound in seconds would test
# the machine.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../lib";
use BgwPsql;
use Time::HiRes qw(time);

$BgwPsql::poll_secs = 60;    # states reached on a busy 2-core machine
$BgwPsql::psql_secs = 300;   # the call's psql lives through several polls

# processes stopped by the test: continued at exit whatever happens
my @stopped;
END { kill 'CONT', @stopped if @stopped; }

my @remotes;
for my $r (1, 2)
{
	my $node = PostgreSQL::Test::Cluster->new("exit_r$r");
	$node->init;
	$node->start;
	for my $db ('part0', 'part1')
	{
		$node->safe_psql('postgres', "CREATE DATABASE $db");
		$node->safe_psql($db,
			'CREATE FUNCTION nap(s float8) RETURNS int LANGUAGE sql AS $$ SELECT 1 FROM pg_sleep(s) $$');
	}
	push @remotes, $node;
}

my $proxy = PostgreSQL::Test::Cluster->new('exit_proxy');
$proxy->init;
$proxy->append_conf('postgresql.conf', "shared_preload_libraries = 'bgw_proxy'\nbgw_proxy.workers = 2\n");
$proxy->start;

my @parts;
for my $db ('part0', 'part1')
{
	push @parts, map { "host=" . $_->host . " port=" . $_->port . " dbname=$db application_name=exit12" } @remotes;
}
$proxy->safe_psql('postgres', qq{
CREATE EXTENSION bgw_proxy;
CREATE SERVER ex FOREIGN DATA WRAPPER bgw_proxy
    OPTIONS (p0 '$parts[0]', p1 '$parts[1]', p2 '$parts[2]', p3 '$parts[3]');
CREATE USER MAPPING FOR PUBLIC SERVER ex;
CREATE FUNCTION nap(s float8) RETURNS SETOF int
    AS \$\$ CLUSTER 'ex'; RUN ON ALL; \$\$ LANGUAGE bgw_proxy;
});
# the first calls go through a worker (the pools' statistics rows, the
# statement's result format); later ones run direct
is($proxy->safe_psql('postgres', 'SELECT count(*) FROM nap(0)'), '4', "a call runs on the 4 partitions")
  for 1 .. 3;

my $running = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'exit12' "
  . "AND state = 'active' AND query LIKE '%nap(%'";
my $submitted_sql = 'SELECT submitted FROM pg_stat_bgw_proxy_queue';
my $submitted = $proxy->safe_psql('postgres', $submitted_sql);

my $call = start_call($proxy, 'exiter', ['SELECT count(*) FROM nap(600)']);
ok(poll_until($_, $running, '2'), 'the call runs on both partitions of instance ' . $_->name)
  for @remotes;
is($proxy->safe_psql('postgres', $submitted_sql), $submitted, 'the call runs direct (no worker has it)');
# the remote sessions of the call, per instance
(my $running_pids = $running) =~ s/^SELECT count\(\*\)/SELECT string_agg(pid::text, ',')/;
my @call_pids = map { $_->safe_psql('postgres', $running_pids) } @remotes;
my $pid = $proxy->safe_psql('postgres', "SELECT pid FROM pg_stat_activity WHERE application_name = 'exiter'");
like($pid, qr/^\d+$/, 'the calling backend');

for my $node (@remotes)
{
	my $pm = (split /\n/, slurp_file($node->data_dir . '/postmaster.pid'))[0];
	kill 'STOP', $pm or die "SIGSTOP $pm: $!";
	push @stopped, $pm;
}
my @postmasters = @stopped;
# and the workers, so that what the remotes see is the backend's own doing
# (a worker given a connection back broken would cancel its statement too)
my @workers = split /\n/, $proxy->safe_psql('postgres', 'SELECT pid FROM pg_stat_bgw_proxy_workers');
is(scalar(@workers), 2, 'the two workers');
for my $w (@workers)
{
	kill 'STOP', $w or die "SIGSTOP $w: $!";
	push @stopped, $w;
}
note("postmasters stopped: @postmasters; workers stopped: @workers");
my $t0 = time();
is($proxy->safe_psql('postgres', "SELECT pg_terminate_backend($pid)"), 't', 'the calling session is terminated');
ok(poll_until($proxy, "SELECT count(*) FROM pg_stat_activity WHERE pid = $pid", '0'),
	'its backend exits while the remote postmasters are frozen');
note(sprintf('the backend was gone %.2f s after the terminate (a poll every 0.1 s)', time() - $t0));
my ($rc, $out, $err) = finish_call($call);
like($err, qr/57P01|terminating connection/, 'the caller sees its session terminated');

kill 'CONT', @postmasters;
for my $i (0 .. $#remotes)
{
	my $node = $remotes[$i];
	ok(poll_until($node, $running, '0'), 'no statement of the call runs on ' . $node->name . ' any more');
	ok(poll_until($node, "SELECT count(*) FROM pg_stat_activity WHERE pid IN ($call_pids[$i])", '0'),
		'no session of the call is left on ' . $node->name);
}
kill 'CONT', @workers;
@stopped = ();
is($proxy->safe_psql('postgres', 'SELECT count(*) FROM nap(0)'), '4', 'the cluster answers afterwards');
unlike(slurp_file($proxy->logfile), qr/terminated by signal|was terminated by/, 'no crash in the proxy log');

done_testing();
