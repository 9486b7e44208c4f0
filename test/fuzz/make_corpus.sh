#!/usr/bin/env bash
# Rebuilds the seed corpus of the fuzz targets (test/fuzz/corpus/<target>/):
#   body_parser    every bgw_proxy / plproxy function body of sql/*.sql,
#                  and the bodies test/unit/test_body_parser.cpp parses
#   slot_protocol  the messages the harness's seed mode encodes (one of each
#                  kind, a request, batches), with the real encoders
#   conninfo       test/fuzz/conninfo_seeds.txt, one connection string a line
# Seeds are named by their content's hash, so a rerun adds nothing twice.
# Needs the slot_protocol harness built (make test/fuzz/fuzz_slot_protocol).
set -euo pipefail
cd "$(dirname "$0")/../.."

corpus=test/fuzz/corpus
mkdir -p "$corpus/body_parser" "$corpus/slot_protocol" "$corpus/conninfo"

# One file per body: between the dollar quotes of AS $tag$...$tag$ before
# LANGUAGE bgw_proxy or plproxy.
{
perl -0777 -ne '
    while (/AS\s+\$(\w*)\$(.*?)\$\1\$\s*LANGUAGE\s+(?:bgw_proxy|plproxy)/gsi) {
        print $2, "\0";
    }' sql/*.sql
# The unit tests' bodies are C string literals: OK("..."), ERR("...", ...).
perl -ne '
    my %esc = (n => "\n", t => "\t", r => "\r", 0 => "\0");
    while (/\b(?:OK|ERR|parse)\("((?:[^"\\]|\\.)*)"/g) {
        (my $s = $1) =~ s/\\(.)/exists $esc{$1} ? $esc{$1} : $1/ge;
        print $s, "\0";
    }' test/unit/test_body_parser.cpp
} |
while IFS= read -r -d '' body; do
    printf '%s' "$body" > "$corpus/body_parser/tmp"
    mv "$corpus/body_parser/tmp" "$corpus/body_parser/$(sha1sum < "$corpus/body_parser/tmp" | cut -c1-16)"
done

BGW_FUZZ_SEEDS="$corpus/slot_protocol" test/fuzz/fuzz_slot_protocol

while IFS= read -r line; do
    printf '%s' "$line" > "$corpus/conninfo/tmp"
    mv "$corpus/conninfo/tmp" "$corpus/conninfo/$(sha1sum < "$corpus/conninfo/tmp" | cut -c1-16)"
done < test/fuzz/conninfo_seeds.txt

for t in body_parser slot_protocol conninfo; do
    echo "$t: $(ls "$corpus/$t" | wc -l) seeds"
done
