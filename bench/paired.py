"""Paired differences from a bench/compare-builds.sh log: for each build, the median over
rounds of (build - BASE) in the same round, for p50 and for CPU per request (outbound +
inbound, user + system). This machine moves by tens of microseconds between rounds; pairing
within a round takes most of that out. With 10 or more rounds it also prints a 95 % bootstrap
interval of the median p50 difference and in how many rounds the build was at or below BASE.

usage: bench/paired.py LOG BASE"""
import re,statistics,collections,sys,random
rows=collections.defaultdict(dict)
for l in open(sys.argv[1]):
    m=re.match(r'round (\d+) (\S+)\s+p50 ([\d.]+) ms\s+p99 ([\d.]+) ms\s+out usr/sys ([\d.]+)/([\d.]+) µs\s+in usr/sys ([\d.]+)/([\d.]+)',l)
    if m:
        r,n=int(m[1]),m[2]; v=[float(x) for x in m.groups()[2:]]
        rows[n][r]=(v[0]*1000, v[2]+v[3]+v[4]+v[5])
base=sys.argv[2]
for n in rows:
    if n==base: continue
    rs=[r for r in rows[n] if r in rows[base]]
    d50=[rows[n][r][0]-rows[base][r][0] for r in rs]
    p50pct=[(rows[n][r][0]-rows[base][r][0])/rows[base][r][0]*100 for r in rs]
    dcpu=[(rows[n][r][1]-rows[base][r][1]) for r in rs]
    dcpupct=[(rows[n][r][1]-rows[base][r][1])/rows[base][r][1]*100 for r in rs]
    print('%-9s vs %s: paired p50 %+.0f us (%+.1f %%), cpu %+.1f us (%+.1f %%); medians p50 %.0f us cpu %.1f us' % (n, base, statistics.median(d50), statistics.median(p50pct), statistics.median(dcpu), statistics.median(dcpupct), statistics.median([rows[n][r][0] for r in rs]), statistics.median([rows[n][r][1] for r in rs])))
    if len(d50) >= 10:
        rng=random.Random(1)
        boot=sorted(statistics.median(rng.choices(d50,k=len(d50))) for _ in range(2000))
        print('%-9s    p50 difference 95 %% interval [%+.0f, %+.0f] us; at or below %s in %d of %d rounds' % ('', boot[50], boot[1949], base, sum(d<=0 for d in d50), len(d50)))
