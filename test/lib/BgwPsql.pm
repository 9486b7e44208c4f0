# BgwPsql.pm — psql helpers shared by the TAP tests in test/t.
#
#   run_sql($node, $app, [cmds], on_error_stop => 0|1)
#       -> (exit code, stdout, stderr, seconds); a psql still running after
#          $BgwPsql::psql_secs is killed and reported as exit code -1
#   start_call(...) / finish_call($h)   the same, in the background
#   poll_until($node, $sql, $expected)  true once $sql prints $expected,
#          false (with a diag) after $BgwPsql::poll_secs
#
# Every psql runs with -XAtq, VERBOSITY=verbose (so errors carry their
# SQLSTATE) and application_name=$app (so its sessions can be told apart).
package BgwPsql;

use strict;
use warnings;

use Exporter 'import';
use IPC::Run;
use Test::More;
use Time::HiRes qw(usleep time);

our @EXPORT = qw(run_sql start_call finish_call poll_until);

our $poll_secs = 10;
our $psql_secs = 60;

sub psql_cmd
{
	my ($node, $app, $cmds, %opt) = @_;
	my $stop = defined $opt{on_error_stop} ? $opt{on_error_stop} : 1;
	return [
		'psql', '-XAtq',
		'-v', 'VERBOSITY=verbose',
		'-v', "ON_ERROR_STOP=$stop",
		'-d', $node->connstr('postgres') . " application_name=$app",
		map { ('-c', $_) } @$cmds
	];
}

sub run_sql
{
	my ($node, $app, $cmds, %opt) = @_;
	my ($out, $err) = ('', '');
	my $rc;
	my $t0 = time();
	eval {
		IPC::Run::run(psql_cmd($node, $app, $cmds, %opt),
			'<', \undef, '>', \$out, '2>', \$err,
			IPC::Run::timeout($psql_secs));
		$rc = $? >> 8;
	};
	if ($@)
	{
		$err .= "\n[psql did not finish: $@]";
		$rc = -1;
	}
	chomp $out;
	return ($rc, $out, $err, time() - $t0);
}

sub start_call
{
	my ($node, $app, $cmds, %opt) = @_;
	my $h = { out => '', err => '', t0 => time() };
	$h->{run} = IPC::Run::start(psql_cmd($node, $app, $cmds, %opt),
		'<', \undef, '>', \$h->{out}, '2>', \$h->{err},
		IPC::Run::timeout($psql_secs));
	return $h;
}

sub finish_call
{
	my ($h) = @_;
	my $rc;
	eval {
		$h->{run}->finish;
		$rc = $h->{run}->result(0);
	};
	if ($@)
	{
		$h->{err} .= "\n[psql did not finish: $@]";
		eval { $h->{run}->kill_kill; };
		$rc = -1;
	}
	chomp $h->{out};
	return ($rc, $h->{out}, $h->{err}, time() - $h->{t0});
}

sub poll_until
{
	my ($node, $sql, $expected) = @_;
	my $deadline = time() + $poll_secs;
	my ($rc, $out, $err);
	while (1)
	{
		($rc, $out, $err) = run_sql($node, 'tap_poll', [$sql]);
		return 1 if $rc == 0 && $out eq $expected;
		last if time() > $deadline;
		usleep(100_000);
	}
	diag("poll gave up after ${poll_secs}s: $sql\n"
		  . "expected: $expected\nlast output: $out\nstderr: $err");
	return 0;
}

1;
