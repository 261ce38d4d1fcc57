"""Benchmark the synthetic league: wall time and peak memory of `synth_league` by number of seasons.

Budget (DESIGN §10 and the synthetic-league issue): 6 seasons in < 20 s on the 2-core CI machine.
Each size runs in a fresh subprocess so that its peak resident memory is its own.

    python benchmarks/bench_synthetic.py            # 1, 3, 6 and 12 seasons
    python benchmarks/bench_synthetic.py 6 6 6      # repeat a size
"""
import json, subprocess, sys

CHILD = r'''
import json, resource, sys, time, tracemalloc
from setrank.synthetic import synth_league, describe_league
n = int(sys.argv[1])
rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024
base = rss()
t = time.perf_counter()
tables = synth_league(n_seasons=n, seed=7)
seconds = time.perf_counter() - t                      # timed without tracing (tracemalloc slows numpy a lot)
peak = rss()
del tables
tracemalloc.start()
tables = synth_league(n_seasons=n, seed=7)
_, traced = tracemalloc.get_traced_memory()
tracemalloc.stop()
summary = describe_league(tables)
print(json.dumps(dict(
    seasons=n, seconds=round(seconds, 2), traced_peak_mb=round(traced/2**20, 1),
    rss_peak_mb=round(peak, 1), rss_added_mb=round(peak - base, 1), player_rows=len(tables['player_games']),
    pts_per_team_game=round(float(summary.pts_per_team_game.mean()), 1),
    margin_sd=round(float(summary.margin_sd.mean()), 2),
    truth_vs_win_pct=round(float(summary.truth_vs_win_pct.mean()), 3))))
'''

def run(n:int)->dict:
    "Time one `synth_league(n)` call in a fresh Python process."
    out = subprocess.run([sys.executable, '-c', CHILD, str(n)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])

def main(sizes:list[int]):
    rows = [run(n) for n in sizes]
    cols = ['seasons', 'seconds', 'traced_peak_mb', 'rss_peak_mb', 'rss_added_mb', 'player_rows', 'pts_per_team_game',
            'margin_sd', 'truth_vs_win_pct']
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in cols]
    print('synth_league (seed 7): time and peak memory; budget 6 seasons < 20 s')
    print('  '.join(c.rjust(w) for c, w in zip(cols, widths)))
    for r in rows: print('  '.join(str(r[c]).rjust(w) for c, w in zip(cols, widths)))
    print('seconds: one untraced call; traced_peak_mb: peak Python/numpy allocations during a second call '
          '(tracemalloc); rss_peak_mb: process peak RSS after the first call, imports included; rss_added_mb: its '
          'growth during that call')

if __name__ == '__main__':
    main([int(a) for a in sys.argv[1:]] or [1, 3, 6, 12])
