#!/usr/bin/env perl
# check_includes.pl — the include rules of src/, checked on every test run.
#
# Folders are layers; a file may include only its own folder and the layers
# below it:
#
#   common/   PostgreSQL headers wrapper, C++ boundary, GUC variables
#   shared/   the segment, its contracts, the queue, the slot protocol
#   pool/     connections (pure C++ + libpq: of common/, only pure headers)
#   backend/  code run by a backend process      -> shared/, common/
#   worker/   code run by a worker process       -> pool/, shared/, common/
#   src/*.cpp module load: may include any layer
#
# A file that includes pure_cxx.h must not include a server header wrapper.
# The include graph must have no cycle. Prints one "ok"/"not ok" line per
# check and ends with "N passed, M failed".
use strict;
use warnings;
use File::Basename;

my $src = shift // 'src';
my %allowed = (
    common  => [qw(common)],
    shared  => [qw(shared common)],
    pool    => [qw(pool common)],   # and of common/, only pure files (below)
    backend => [qw(backend shared common)],
    worker  => [qw(worker pool shared common)],
);
my $server_wrappers = qr{^common/(pg_headers\.h|cxx_boundary\.h|guc\.h)$};

my (%graph, %pure, @problems);
my @files = (glob("$src/*.cpp"), glob("$src/*/*.{h,hpp,cpp}"));
for my $path (@files) {
    open my $fh, '<', $path or die "$path: $!";
    (my $rel = $path) =~ s{^\Q$src\E/}{};
    $pure{$rel} = 1 if grep { /^\s*#\s*include\s+"common\/pure_cxx\.h"/ } <$fh>;
    close $fh;
}
$pure{'common/pure_cxx.h'} = 1;
for my $path (@files) {
    (my $rel = $path) =~ s{^\Q$src\E/}{};
    my $layer = $rel =~ m{^([^/]+)/} ? $1 : '';
    open my $fh, '<', $path or die "$path: $!";
    my ($pure, @incs) = (0);
    while (my $line = <$fh>) {
        next unless $line =~ /^\s*#\s*include\s+"([^"]+)"/;
        my $inc = $1;
        $pure = 1 if $inc eq 'common/pure_cxx.h';
        next unless -f "$src/$inc";   # a PostgreSQL or libpq header
        push @incs, $inc;
    }
    close $fh;
    $graph{$rel} = [@incs];
    for my $inc (@incs) {
        if ($pure && $inc =~ $server_wrappers) {
            push @problems, "$rel: pure C++ file includes $inc";
        }
        next if $layer eq '';          # module load sees every layer
        push @problems, "$rel: unknown layer $layer" and next unless $allowed{$layer};
        my $ok = grep { $inc eq $_ || index($inc, "$_/") == 0 } @{ $allowed{$layer} };
        $ok = 0 if $layer eq 'pool' && $inc =~ m{^common/} && !$pure{$inc};
        push @problems, "$rel: $layer/ may not include $inc" unless $ok;
    }
}
for my $inc (map { @$_ } values %graph) {
    push @problems, "include of $inc not found under $src" unless exists $graph{$inc};
}

# cycles: depth-first search, grey = on the current path
my (%colour, @path);
sub visit {
    my ($n) = @_;
    $colour{$n} = 1;
    push @path, $n;
    for my $m (@{ $graph{$n} // [] }) {
        if (($colour{$m} // 0) == 1) {
            my @cycle = (@path[(grep { $path[$_] eq $m } 0 .. $#path)[0] .. $#path], $m);
            push @problems, "include cycle: " . join(' -> ', @cycle);
        } elsif (!$colour{$m}) {
            visit($m);
        }
    }
    pop @path;
    $colour{$n} = 2;
}
visit($_) for sort grep { !$colour{$_} } keys %graph;

my %seen;
@problems = grep { !$seen{$_}++ } @problems;
my $n = scalar(keys %graph);
if (@problems) {
    print "not ok - $_\n" for @problems;
    print "0 passed, ", scalar(@problems), " failed\n";
    exit 1;
}
print "ok - $n files follow the layer rules, no include cycle\n";
print "1 passed, 0 failed\n";
