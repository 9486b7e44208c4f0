# 002_loading.pl — bgw_proxy only works when preloaded.
#
# On a node without shared_preload_libraries, CREATE EXTENSION and LOAD fail
# with a clear message and a hint, and leave nothing behind. On a preloaded
# node, bgw_proxy.workers workers are running.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $crash_re =
  qr/terminated by signal|was terminated by|server process .* exited with exit code [^01]/;

# ------------------------------------------------ not preloaded
my $plain = PostgreSQL::Test::Cluster->new('plain');
$plain->init;
$plain->start;

my $msg = qr/ERROR:  55000: bgw_proxy must be loaded via shared_preload_libraries/;
my $hint = qr/HINT:  .*shared_preload_libraries/;

my ($rc, $out, $err) = (0, '', '');
$rc = $plain->psql(
	'postgres', 'CREATE EXTENSION bgw_proxy',
	stdout => \$out,
	stderr => \$err,
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
isnt($rc, 0, 'CREATE EXTENSION fails without shared_preload_libraries');
like($err, $msg, 'CREATE EXTENSION: says it must be preloaded (55000)');
like($err, $hint, 'CREATE EXTENSION: the hint mentions shared_preload_libraries');

is( $plain->safe_psql(
		'postgres',
		"SELECT (SELECT count(*) FROM pg_extension WHERE extname = 'bgw_proxy') + "
		  . "(SELECT count(*) FROM pg_language WHERE lanname = 'bgw_proxy') + "
		  . "(SELECT count(*) FROM pg_proc WHERE proname LIKE '%bgw_proxy%')"),
	'0',
	'the failed CREATE EXTENSION left nothing behind');

# LOAD, twice in one session (the second attempt must not be taken as
# "already loaded"), and once more in a fresh session
$rc = $plain->psql(
	'postgres', "LOAD 'bgw_proxy'; LOAD 'bgw_proxy';",
	stdout => \$out,
	stderr => \$err,
	on_error_stop => 0,
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
my @load_errors = ($err =~ /$msg/g);
is(scalar @load_errors, 2, 'LOAD fails both times in one session, with the same message')
  or diag($err);
like($err, $hint, 'LOAD: the hint mentions shared_preload_libraries');

$rc = $plain->psql(
	'postgres', "LOAD 'bgw_proxy'",
	stdout => \$out,
	stderr => \$err,
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
isnt($rc, 0, 'LOAD fails in a new session too');
like($err, $msg, 'LOAD in a new session: says it must be preloaded');

# and the server is fine afterwards
is($plain->safe_psql('postgres', 'SELECT 1'), '1', 'the server still works');
my @bad = grep { /$crash_re/ } split /\n/, slurp_file($plain->logfile);
ok(!@bad, 'no crash in the log of the node without preload') or diag(join "\n", @bad);
$plain->stop;

# ------------------------------------------------ preloaded
# 3 workers, not the default 2, so the count really follows the setting
my $pre = PostgreSQL::Test::Cluster->new('preloaded');
$pre->init;
$pre->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'bgw_proxy'
bgw_proxy.workers = 3
});
$pre->start;
$pre->safe_psql('postgres', 'CREATE EXTENSION bgw_proxy');
is( $pre->safe_psql(
		'postgres',
		"SELECT lanname FROM pg_language WHERE lanname = 'bgw_proxy'"),
	'bgw_proxy',
	'CREATE EXTENSION works on a preloaded node');

is($pre->safe_psql('postgres', 'SHOW bgw_proxy.workers'), '3',
	'bgw_proxy.workers = 3');
ok( $pre->poll_query_until(
		'postgres',
		"SELECT count(pid) = current_setting('bgw_proxy.workers')::int "
		  . "AND count(*) = current_setting('bgw_proxy.workers')::int "
		  . "FROM pg_stat_bgw_proxy_workers"),
	'count(pid) in pg_stat_bgw_proxy_workers = bgw_proxy.workers');
my @pids = split /\n/,
  $pre->safe_psql('postgres',
	'SELECT pid FROM pg_stat_bgw_proxy_workers ORDER BY worker');
is(scalar(grep { /^\d+$/ && kill(0, $_) } @pids), 3,
	'the 3 worker pids are live processes') or diag("pids: @pids");
# The workers are meant to be visible in pg_stat_activity as well.
is( $pre->safe_psql(
		'postgres',
		"SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_bgw_proxy_workers w "
		  . "USING (pid) WHERE a.backend_type = 'bgw_proxy worker'"),
	'3',
	'each worker pid is a "bgw_proxy worker" in pg_stat_activity');
ok( $pre->poll_query_until(
		'postgres',
		"SELECT string_agg(worker::text || ':' || state, ',' ORDER BY worker) "
		  . "FROM pg_stat_bgw_proxy_workers",
		'0:idle,1:idle,2:idle'),
	'workers are idle');

@bad = grep { /$crash_re/ } split /\n/, slurp_file($pre->logfile);
ok(!@bad, 'no crash in the log of the preloaded node') or diag(join "\n", @bad);
$pre->stop;

done_testing();
