# 005_connect_faults.pl — bgw_proxy when a remote connection cannot be made,
# and what the remotes see when the proxy shuts down.
#
# Why: a connection that cannot be established is the most common fault a
# pooler meets (a partition down, a wrong password, a dropped database, a
# firewall that swallows packets). The caller must get an error that says
# what went wrong and where (SQLSTATE 08001, libpq's reason in DETAIL, the
# proxy function, partition and database in CONTEXT); the pool must try once
# per call (a pool that retries on its own hammers a remote that is already
# refusing it: every attempt against a wrong password is one more line in
# the remote's auth log and, with fail2ban-style tooling, a lock-out); a
# slow connect must not stall the other pools of the same worker; and the
# next call must work as soon as the cause is gone. At shutdown the workers
# must say goodbye to the remotes properly.
#
# Nodes: "remote" (plain; log_connections, log_disconnections and
# log_min_messages = debug1, so that every connection attempt and every
# client that vanishes without a Terminate message shows in its log), "late"
# (plain, listens on 127.0.0.1, started only in scenario 1) and "proxy"
# (shared_preload_libraries = 'bgw_proxy', bgw_proxy.workers = 1, so every
# pool lives in the same worker). Every cluster is a SQL/MED server with one
# partition whose connection string carries its own application_name
# (bgwproxy_<scenario>), so the remote sessions of each scenario can be told
# apart; the test's own psql sessions are called tap_*.
#
# Scenarios and what they assert:
#  1 refused   partition at 127.0.0.1:<port of "late">, not started yet.
#              3 calls: each fails with 08001 "could not connect to the
#              remote server", DETAIL "Connection refused", CONTEXT naming
#              function, partition 0 and database; each well under the
#              cluster's connect_timeout (30 s), i.e. fast. The pool row
#              counts 3 errors and holds no connection. After "late" is
#              started on that port the next call succeeds, with no
#              configuration change, and "late" sees exactly one session.
#  2 password  remote pg_hba asks pw_user for scram-sha-256; the user mapping
#              gives a wrong password. 3 calls: 08001 with the remote's
#              'password authentication failed for user "pw_user"' in
#              DETAIL; the remote's log shows exactly 3 connection attempts
#              and 3 authentication failures (counted 2 s after the last
#              call, so late retries would be counted too). With the right
#              password in the mapping the next call runs as pw_user.
#  3 no db     partition dbname that does not exist: 08001 with the remote's
#              'database "..." does not exist' in DETAIL; exactly one
#              attempt per call in the remote's log. After CREATE DATABASE
#              the next call succeeds.
#  4 timeout   partition at a local TCP listener that never accepts and never
#              answers (the kernel completes the handshake; libpq waits for
#              the server's first byte forever), cluster connect_timeout '15'
#              (seconds, README). While that call is pending (the pool shows
#              a connecting connection), a call to a healthy cluster served
#              by the same worker (the only one) completes, and at that
#              moment the slow call is still waiting: the worker did not
#              block. The slow call then fails with 08001, DETAIL
#              "connect_timeout expired", after at least ~15 s. The listener
#              received exactly one connection, and its socket was closed
#              by the worker (EOF): no attempt repeated, no socket leaked.
#              Then a caller gives up first (statement_timeout 1 s): it
#              gets 57014 before the connect_timeout, and the connect it
#              started still ends at the connect_timeout, closed (EOF at the
#              listener), leaving the pool empty.
#  5 dns       host bgwtap-no-such-host.invalid: 08001 with libpq's 'could
#              not translate host name' in DETAIL, fast. The .invalid TLD
#              never resolves, but the lookup still goes through the
#              system's resolver: the scenario runs only if `getent hosts`
#              answers "not found" within 3 s here, and is skipped otherwise
#              (a resolver that hangs would hang the worker: libpq resolves
#              host names synchronously inside PQconnectStartParams).
#  6 shutdown  with idle pooled connections open (3 to the remote for this
#              scenario, plus those left by scenarios 2-4, and one to
#              "late") and one call in flight on one of the 3, the proxy is
#              stopped with pg_ctl -m fast. Afterwards: the call in flight
#              failed and its remote statement was cancelled ("canceling
#              statement due to user request" in the remote's log, as the
#              README promises); the remotes have no session of the proxy
#              left; every one of those sessions logged its disconnection;
#              and none logged "unexpected EOF on client connection" or
#              "could not receive data from client". A positive control
#              first shows that the log check can fail: a psql killed with
#              SIGKILL leaves the EOF line on the remote.
# Every failing pool (1-5) must also show its calls and errors, no open
# connection, and the reason in last_error of pg_stat_bgw_proxy.
# After scenarios 1-5: no request in flight in the worker, submitted =
# completed in pg_stat_bgw_proxy_queue (as before the scenario), no crash
# line in the proxy's log.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use FindBin;
use lib "$FindBin::Bin/../lib";
use BgwPsql;
use IO::Socket::INET;
use IO::Select;
use Time::HiRes qw(usleep time);

my $poll_secs = 10;    # bound for an asynchronous effect
my $psql_secs = 60;    # bound for any single psql run
$BgwPsql::poll_secs = $poll_secs;
$BgwPsql::psql_secs = $psql_secs;
my $ncalls = 3;        # failing calls per scenario
my $t_start = time();

my $crash_re =
  qr/terminated by signal|was terminated by|server process .* exited with exit code [^01]/;
my $eof_re = qr/unexpected EOF on client connection|could not receive data from client/;

# ------------------------------------------------------------------ nodes

my $log_conf = qq{
log_connections = on
log_disconnections = on
log_min_messages = debug1
log_line_prefix = '%m [%p] %q%u\@%d %a '
};

my $remote = PostgreSQL::Test::Cluster->new('remote5');
$remote->init;
$remote->append_conf('postgresql.conf', $log_conf);
# pw_user must authenticate with a password; everybody else is trusted
{
	my $hba = $remote->data_dir . '/pg_hba.conf';
	my $old = slurp_file($hba);
	open my $fh, '>', $hba or die "$hba: $!";
	print $fh "local all pw_user scram-sha-256\n", $old;
	close $fh;
}
$remote->start;
$remote->safe_psql('postgres',
	"SET password_encryption = 'scram-sha-256'; "
	  . "CREATE ROLE pw_user LOGIN PASSWORD 'right_pw'");

# "late": nothing listens on its port until scenario 1 starts it
my $late = PostgreSQL::Test::Cluster->new('late5');
$late->init;
$late->append_conf('postgresql.conf', $log_conf . "listen_addresses = '127.0.0.1'\n");

# the black hole of scenario 4: a listener that never accepts
my $hole = IO::Socket::INET->new(
	Listen    => 16,
	LocalAddr => '127.0.0.1',
	LocalPort => 0,
	Proto     => 'tcp',
	ReuseAddr => 1) or die "listener: $!";
my $hole_port = $hole->sockport;

my $badhost = 'bgwtap-no-such-host.invalid';

my $proxy = PostgreSQL::Test::Cluster->new('proxy5');
$proxy->init;
$proxy->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'bgw_proxy'
bgw_proxy.workers = 1
# scenario shut holds three connections of one pool at once
bgw_proxy.max_pool_connections = 8
log_line_prefix = '%m [%p] %b %a '
});
$proxy->start;

my ($rhost, $rport) = ($remote->host, $remote->port);
my $lport = $late->port;
sub remote_conn
{
	my ($s, $db) = @_;
	return "host=$rhost port=$rport dbname=$db application_name=bgwproxy_$s";
}
my %conn = (
	refused => "host=127.0.0.1 port=$lport dbname=postgres application_name=bgwproxy_refused",
	pw      => remote_conn('pw', 'postgres'),
	nodb    => remote_conn('nodb', 'bgwtap_nodb'),
	slow    => "host=127.0.0.1 port=$hole_port dbname=postgres application_name=bgwproxy_slow",
	healthy => remote_conn('healthy', 'postgres'),
	dns     => "host=$badhost port=5432 dbname=postgres application_name=bgwproxy_dns",
	shut    => remote_conn('shut', 'postgres'));
# slow: long enough that the checks made while its connect hangs (a healthy
# call, a look at pg_stat_activity) fit in it on a loaded machine
my %connect_timeout = (slow => 15);

$proxy->safe_psql('postgres', 'CREATE EXTENSION bgw_proxy');
for my $s (sort keys %conn)
{
	my $ct = $connect_timeout{$s} // 30;
	$proxy->safe_psql(
		'postgres', qq{
CREATE SERVER c_$s FOREIGN DATA WRAPPER bgw_proxy
    OPTIONS (p0 '$conn{$s}', connect_timeout '$ct');
CREATE FUNCTION ping_$s(i int) RETURNS int
    AS \$\$ CLUSTER 'c_$s'; RUN ON 0; SELECT \$1::int; \$\$ LANGUAGE bgw_proxy;
});
}
$proxy->safe_psql(
	'postgres', q{
CREATE USER MAPPING FOR PUBLIC SERVER c_pw OPTIONS (user 'pw_user', password 'wrong_pw');
CREATE FUNCTION who_pw() RETURNS text
    AS $$ CLUSTER 'c_pw'; RUN ON 0; SELECT current_user::text; $$ LANGUAGE bgw_proxy;
CREATE FUNCTION nap_shut(s float8) RETURNS int
    AS $$ CLUSTER 'c_shut'; RUN ON 0; SELECT 1 FROM pg_sleep($1); $$ LANGUAGE bgw_proxy;
-- waits on the remote until the test lets go of advisory lock 5 there
CREATE FUNCTION gate_shut() RETURNS int
    AS $$ CLUSTER 'c_shut'; RUN ON 0; SELECT 1 FROM pg_advisory_xact_lock_shared(5); $$ LANGUAGE bgw_proxy;
});

# ---------------------------------------------------------------- helpers

sub outstanding
{
	return $proxy->safe_psql('postgres',
		'SELECT submitted - completed FROM pg_stat_bgw_proxy_queue');
}

# calls|errors|conns_open of the cluster's pool row
sub pool_row
{
	my ($s) = @_;
	return $proxy->safe_psql('postgres',
		"SELECT calls, errors, conns_open FROM pg_stat_bgw_proxy WHERE cluster = 'c_$s'");
}

sub remote_sessions
{
	my ($node, $s) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'bgwproxy_$s'");
}

# The error of a failed connect: SQLSTATE, message, libpq's reason in
# DETAIL, and the function, partition and database in CONTEXT.
sub check_connect_error
{
	my ($label, $rc, $err, $fn, $db, $detail_re) = @_;
	isnt($rc, 0, "$label: the call failed");
	like($err, qr/^ERROR:  08001: could not connect to the remote server$/m,
		"$label: 08001 could not connect to the remote server");
	like($err, qr/^DETAIL:  .*$detail_re/m, "$label: DETAIL gives the reason ($detail_re)");
	like(
		$err,
		qr/^CONTEXT:  bgw_proxy function public\.$fn, partition 0, database "$db"$/m,
		"$label: CONTEXT names function $fn, partition 0, database \"$db\"")
	  or diag("stderr: $err");
}

sub count_matches
{
	my ($text, $re) = @_;
	my $n = () = $text =~ /$re/g;
	return $n;
}

# The remote's log after $off, $settle seconds after the last call (so a
# pool retrying in the background would show up too).
sub remote_log_after
{
	my ($off, $settle) = @_;
	sleep($settle);
	return slurp_file($remote->logfile, $off);
}

sub pool_last_error
{
	my ($s) = @_;
	return $proxy->safe_psql('postgres',
		"SELECT last_error FROM pg_stat_bgw_proxy WHERE cluster = 'c_$s'");
}

# Accept what reached the silent listener of scenario 4 (waiting up to 2 s
# for the first connection, 1 s for each further one) and read each until
# EOF, for at most $eof_secs in all. Returns (accepted, closed by the peer).
sub hole_connections
{
	my ($eof_secs) = @_;
	my $sel = IO::Select->new($hole);
	my @accepted;
	while ($sel->can_read(@accepted ? 1 : 2))
	{
		my $c = $hole->accept or last;
		push @accepted, $c;
	}
	my $deadline = time() + $eof_secs;
	my $closed = 0;
	for my $c (@accepted)
	{
		my $csel = IO::Select->new($c);
		while (time() < $deadline)
		{
			next unless $csel->can_read(0.2);
			my $n = sysread($c, my $buf, 4096);
			if (!defined $n || $n == 0) { $closed++; last; }
		}
		close $c;
	}
	return (scalar @accepted, $closed);
}

sub begin_scenario
{
	my ($s, $title) = @_;
	note("---- scenario $s: $title");
	return (outstanding(), -s $proxy->logfile);
}

sub after_checks
{
	my ($s, $baseline, $log_offset) = @_;
	ok( poll_until(
			$proxy,
			'SELECT sum(requests_in_flight) FROM pg_stat_bgw_proxy_workers',
			'0'),
		"$s: no request in flight in the worker");
	ok( poll_until(
			$proxy,
			'SELECT submitted - completed FROM pg_stat_bgw_proxy_queue',
			$baseline),
		"$s: every submitted request completed (submitted - completed = $baseline as before)");
	my @bad = grep { /$crash_re/ } split /\n/, slurp_file($proxy->logfile, $log_offset);
	ok(!@bad, "$s: no crash in the proxy's log") or diag(join "\n", @bad);
}

ok(poll_until($proxy, 'SELECT count(pid) FROM pg_stat_bgw_proxy_workers', '1'),
	'the one worker is running');

# ------------------------------------------------------- 1. connection refused
{
	my ($base, $logpos) = begin_scenario('refused', 'nothing listens on the port');
	for my $i (1 .. $ncalls)
	{
		my ($rc, $out, $err, $secs) =
		  run_sql($proxy, 'tap_refused', ["SELECT ping_refused($i)"]);
		check_connect_error("refused call $i", $rc, $err, 'ping_refused', 'postgres',
			qr/Connection refused/);
		cmp_ok($secs, '<', 20,
			sprintf('refused call %d: failed fast (%.2fs; connect_timeout is 30s)', $i, $secs));
	}
	is(pool_row('refused'), "$ncalls|$ncalls|0",
		"refused: the pool counts $ncalls calls, $ncalls errors, holds no connection");
	like(pool_last_error('refused'), qr/Connection refused/,
		'refused: last_error of the pool gives the reason');

	$late->start;
	my ($rc, $out, $err) = run_sql($proxy, 'tap_refused', ['SELECT ping_refused(7)']);
	is($out, '7', 'refused: once a server listens on the port, the next call works')
	  or diag("stderr: $err");
	is(remote_sessions($late, 'refused'), '1',
		'refused: the new server has exactly one session of the pool');
	after_checks('refused', $base, $logpos);
}

# ---------------------------------------------------------- 2. bad password
{
	my ($base, $logpos) = begin_scenario('pw', 'wrong password in the user mapping');
	my $roff = -s $remote->logfile;
	for my $i (1 .. $ncalls)
	{
		my ($rc, $out, $err) = run_sql($proxy, 'tap_pw', ["SELECT ping_pw($i)"]);
		check_connect_error("pw call $i", $rc, $err, 'ping_pw', 'postgres',
			qr/password authentication failed for user "pw_user"/);
	}
	my $log = remote_log_after($roff, 2);
	is(count_matches($log, qr/LOG:  connection received: /), $ncalls,
		"pw: the remote saw exactly $ncalls connection attempts for $ncalls calls (no retries)");
	is( count_matches($log, qr/FATAL:  password authentication failed for user "pw_user"/),
		$ncalls, "pw: the remote logged $ncalls authentication failures");
	is(pool_row('pw'), "$ncalls|$ncalls|0",
		"pw: the pool counts $ncalls calls, $ncalls errors, holds no connection");
	like(pool_last_error('pw'), qr/password authentication failed/,
		'pw: last_error of the pool gives the reason');
	is(remote_sessions($remote, 'pw'), '0', 'pw: no session of the pool on the remote');

	$proxy->safe_psql('postgres',
		"ALTER USER MAPPING FOR PUBLIC SERVER c_pw OPTIONS (SET password 'right_pw')");
	my ($rc, $out, $err) = run_sql($proxy, 'tap_pw', ['SELECT who_pw()']);
	is($out, 'pw_user', 'pw: with the right password the call works, as pw_user')
	  or diag("stderr: $err");
	is( $remote->safe_psql(
			'postgres',
			"SELECT string_agg(usename, ',') FROM pg_stat_activity "
			  . "WHERE application_name = 'bgwproxy_pw'"),
		'pw_user',
		'pw: the remote has one session of the pool, as pw_user');
	after_checks('pw', $base, $logpos);
}

# ------------------------------------------------- 3. database does not exist
{
	my ($base, $logpos) = begin_scenario('nodb', 'partition database does not exist');
	my $roff = -s $remote->logfile;
	for my $i (1 .. $ncalls)
	{
		my ($rc, $out, $err) = run_sql($proxy, 'tap_nodb', ["SELECT ping_nodb($i)"]);
		check_connect_error("nodb call $i", $rc, $err, 'ping_nodb', 'bgwtap_nodb',
			qr/database "bgwtap_nodb" does not exist/);
	}
	my $log = remote_log_after($roff, 2);
	is(count_matches($log, qr/LOG:  connection received: /), $ncalls,
		"nodb: the remote saw exactly $ncalls connection attempts for $ncalls calls (no retries)");
	is(count_matches($log, qr/FATAL:  database "bgwtap_nodb" does not exist/),
		$ncalls, "nodb: the remote logged $ncalls failures");
	is(pool_row('nodb'), "$ncalls|$ncalls|0",
		"nodb: the pool counts $ncalls calls, $ncalls errors, holds no connection");
	like(pool_last_error('nodb'), qr/does not exist/,
		'nodb: last_error of the pool gives the reason');

	$remote->safe_psql('postgres', 'CREATE DATABASE bgwtap_nodb');
	my ($rc, $out, $err) = run_sql($proxy, 'tap_nodb', ['SELECT ping_nodb(7)']);
	is($out, '7', 'nodb: once the database exists, the next call works')
	  or diag("stderr: $err");
	after_checks('nodb', $base, $logpos);
}

# ------------------------------ 4. connect_timeout, without blocking the worker
{
	my ($base, $logpos) =
	  begin_scenario('slow', 'remote never answers the connect; another pool of the worker');
	my $timeout = $connect_timeout{slow};
	my $slow = start_call($proxy, 'tap_slow', ['SELECT ping_slow(1)']);
	ok( poll_until(
			$proxy,
			"SELECT conns_connecting FROM pg_stat_bgw_proxy WHERE cluster = 'c_slow'", '1'),
		'slow: the worker is connecting to the silent listener');

	my ($rc, $out, $err, $secs) =
	  run_sql($proxy, 'tap_healthy', ['SELECT ping_healthy(42)']);
	is($out, '42', 'slow: meanwhile a call to a healthy cluster of the same worker works')
	  or diag("stderr: $err");
	note(sprintf('slow: the healthy call took %.2fs', $secs));
	is( $proxy->safe_psql(
			'postgres',
			"SELECT count(*) FROM pg_stat_activity "
			  . "WHERE application_name = 'tap_slow' AND state = 'active'"),
		'1',
		'slow: the slow call was still waiting when the healthy call had finished (the worker did not block)'
	);

	my ($src, $sout, $serr, $ssecs) = finish_call($slow);
	check_connect_error('slow', $src, $serr, 'ping_slow', 'postgres',
		qr/connect_timeout expired/);
	cmp_ok($ssecs, '>=', $timeout - 0.5,
		sprintf('slow: it failed after the connect_timeout (%.2fs, timeout %ds)', $ssecs, $timeout));
	cmp_ok($ssecs, '<', $timeout + 20,
		sprintf('slow: and not much later (%.2fs)', $ssecs));
	is(pool_row('slow'), '1|1|0', 'slow: the pool counts 1 call, 1 error, holds no connection');

	like(pool_last_error('slow'), qr/connect_timeout expired/,
		'slow: last_error of the pool gives the reason');
	my ($got, $closed) = hole_connections($poll_secs);
	is($got, 1, 'slow: exactly one connection attempt reached the listener');
	is($closed, 1, 'slow: the worker closed that socket (EOF at the listener)');

	# the caller gives up (statement_timeout) before the connect_timeout:
	# the connect it started must still end, closed, at the connect_timeout
	($rc, $out, $err, $secs) = run_sql($proxy, 'tap_slow',
		[ "SET statement_timeout = '1s'", 'SELECT ping_slow(2)' ]);
	like($err, qr/^ERROR:  57014: canceling statement due to statement timeout$/m,
		'slow, abandoned: the caller gets its statement_timeout (57014)');
	cmp_ok($secs, '<', $timeout,
		sprintf('slow, abandoned: before the connect_timeout (%.2fs)', $secs));
	($got, $closed) = hole_connections($timeout + $poll_secs);
	is($got, 1, 'slow, abandoned: one connection attempt reached the listener');
	is($closed, 1, 'slow, abandoned: the worker closed it (EOF at the listener)');
	ok( poll_until(
			$proxy,
			"SELECT conns_open + conns_connecting FROM pg_stat_bgw_proxy WHERE cluster = 'c_slow'",
			'0'),
		'slow, abandoned: the pool holds no connection afterwards');
	after_checks('slow', $base, $logpos);
}

# ------------------------------------------------------------ 5. unknown host
SKIP:
{
	# the .invalid TLD never resolves; make sure the resolver says so quickly
	my ($gout, $gerr) = ('', '');
	my ($answered, $resolved) = (0, 0);
	eval {
		IPC::Run::run([ 'getent', 'hosts', $badhost ],
			'<', \undef, '>', \$gout, '2>', \$gerr, IPC::Run::timeout(3));
		$resolved = ($? == 0);
		$answered = 1;
	};
	skip "the resolver did not answer for $badhost within 3s; not testing unknown hosts here", 1
	  unless $answered;
	skip "$badhost resolves here ($gout)", 1 if $resolved;

	my ($base, $logpos) = begin_scenario('dns', 'host name that does not resolve');
	for my $i (1 .. $ncalls)
	{
		my ($rc, $out, $err, $secs) = run_sql($proxy, 'tap_dns', ["SELECT ping_dns($i)"]);
		check_connect_error("dns call $i", $rc, $err, 'ping_dns', 'postgres',
			qr/could not translate host name "\Q$badhost\E" to address/);
		cmp_ok($secs, '<', 20,
			sprintf('dns call %d: failed fast (%.2fs; connect_timeout is 30s)', $i, $secs));
	}
	is(pool_row('dns'), "$ncalls|$ncalls|0",
		"dns: the pool counts $ncalls calls, $ncalls errors, holds no connection");
	like(pool_last_error('dns'), qr/could not translate host name/,
		'dns: last_error of the pool gives the reason');
	my ($rc, $out, $err) = run_sql($proxy, 'tap_dns', ['SELECT ping_healthy(5)']);
	is($out, '5', 'dns: other pools of the worker still work') or diag("stderr: $err");
	after_checks('dns', $base, $logpos);
}

# ------------------------------------------------------- 6. clean shutdown
{
	note('---- scenario shut: proxy stopped with idle pooled connections');
	my %off = (remote => -s $remote->logfile, late => -s $late->logfile);

	# positive control: a client that vanishes without a Terminate message
	# leaves the line the check below looks for
	my $in = '';
	my ($cout, $cerr) = ('', '');
	my $ctl = IPC::Run::start(
		[ 'psql', '-XAtq', '-d', $remote->connstr('postgres') . ' application_name=tap_control' ],
		'<', \$in, '>', \$cout, '2>', \$cerr, IPC::Run::timeout($psql_secs));
	ok( poll_until(
			$remote,
			"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tap_control'",
			'1'),
		'shut: control session connected');
	my $cpid = $remote->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE application_name = 'tap_control'");
	$ctl->signal('KILL');
	eval { $ctl->finish; };
	my $seen = 0;
	for (1 .. $poll_secs * 10)
	{
		my $log = slurp_file($remote->logfile, $off{remote});
		if ($log =~ /\[$cpid\] .*(?:$eof_re)/) { $seen = 1; last; }
		usleep(100_000);
	}
	ok($seen, "shut: control: a killed client leaves \"unexpected EOF\" in the remote's log");

	# three idle connections in the scenario's pool: three calls held on the
	# remote at once (behind an advisory lock a session of the test holds)
	my $gate = start_call($remote, 'tap_shut_gate', [ 'SELECT pg_advisory_lock(5)', 'SELECT pg_sleep(3600)' ]);
	ok( poll_until(
			$remote,
			"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tap_shut_gate' "
			  . "AND wait_event = 'PgSleep'",
			'1'),
		'shut: the test holds the gate');
	my @h = map { start_call($proxy, "tap_shut_$_", ['SELECT gate_shut()']) } 1 .. 3;
	ok( poll_until(
			$remote,
			"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'bgwproxy_shut' "
			  . "AND wait_event = 'advisory'",
			'3'),
		'shut: three calls wait at the gate, each on its own connection');
	$remote->safe_psql('postgres',
		"SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'tap_shut_gate'");
	finish_call($gate);
	for my $i (0 .. 2)
	{
		my ($rc, $out, $err) = finish_call($h[$i]);
		is($out, '1', 'shut: concurrent call ' . ($i + 1) . ' works') or diag("stderr: $err");
	}
	ok( poll_until(
			$remote,
			"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'bgwproxy_shut' "
			  . "AND state = 'idle'",
			'3'),
		'shut: the pool holds 3 idle connections to the remote');

	is(outstanding(), '0', 'overall: submitted = completed on the proxy');

	# and one call in flight on one of them
	my $busy = start_call($proxy, 'tap_shut_busy', ['SELECT nap_shut(3600)']);
	ok( poll_until(
			$remote,
			"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'bgwproxy_shut' "
			  . "AND state = 'active' AND query LIKE '%pg_sleep%'",
			'1'),
		'shut: a call is running on one of them');
	my $busy_pid = $remote->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE application_name = 'bgwproxy_shut' "
		  . "AND state = 'active'");

	# every session of the proxy on both remotes
	my $ours = "application_name LIKE 'bgwproxy\\_%' OR application_name = 'bgw_proxy'";
	my $pids_sql =
	  "SELECT string_agg(pid::text, ' ' ORDER BY pid) FROM pg_stat_activity WHERE $ours";
	my %pids = (
		remote => [ split / /, $remote->safe_psql('postgres', $pids_sql) ],
		late   => [ split / /, $late->safe_psql('postgres', $pids_sql) ]);
	note("shut: proxy sessions: remote @{$pids{remote}}; late @{$pids{late}}");
	cmp_ok(scalar @{ $pids{remote} }, '>=', 3, 'shut: the proxy has sessions on the remote');
	is(scalar @{ $pids{late} }, 1, 'shut: and one on "late"');

	$proxy->stop('fast');
	my ($brc, $bout, $berr) = finish_call($busy);
	isnt($brc, 0, 'shut: the call in flight ended with the server')
	  or diag("stdout: $bout");

	for my $n ([ 'remote', $remote ], [ 'late', $late ])
	{
		my ($name, $node) = @$n;
		ok(poll_until($node, "SELECT count(*) FROM pg_stat_activity WHERE $ours", '0'),
			"shut: $name: no session of the proxy left after the stop");
		my @pids = @{ $pids{$name} };
		my $log;
		# disconnection lines are written as the sessions end
		for (1 .. $poll_secs * 10)
		{
			$log = slurp_file($node->logfile, $off{$name});
			last unless grep { $log !~ /\[$_\] .*LOG:  disconnection: / } @pids;
			usleep(100_000);
		}
		my @no_disc = grep { $log !~ /\[$_\] .*LOG:  disconnection: / } @pids;
		ok(!@no_disc, "shut: $name: every session of the proxy logged its disconnection")
		  or diag("no disconnection line for pids @no_disc");
		my @eof = grep {
			my $l = $_;
			grep { $l =~ /\[$_\] / } @pids
		} grep { /$eof_re/ } split /\n/, $log;
		ok(!@eof, "shut: $name: no \"unexpected EOF\" / \"could not receive data\" from the proxy's sessions")
		  or diag(join "\n", @eof);
		# (ok, not like: a failure would print the whole log)
		ok($log =~ /\[$busy_pid\] .*ERROR:  canceling statement due to user request/,
			'shut: remote: the statement in flight was cancelled')
		  if $name eq 'remote';
	}

	my @crashes = grep { /$crash_re/ } split /\n/, slurp_file($proxy->logfile);
	ok(!@crashes, "overall: no crash in the proxy's log") or diag(join "\n", @crashes);
}

close $hole;
$late->stop;
$remote->stop;
note(sprintf('runtime %.1fs', time() - $t_start));
done_testing();
