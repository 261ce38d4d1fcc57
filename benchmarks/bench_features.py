"""Benchmark the feature build on the real data: every regular-season game date of the nine seasons, cold and cached.

Budget (DESIGN §10): full feature build < 30 s cold, < 3 s from the cache, peak memory < 4 GB.
Each phase runs in a fresh subprocess so its peak resident memory is its own; the cache lives in a temporary folder.

    python benchmarks/bench_features.py                 # default windows [15, 30], roster 12
    python benchmarks/bench_features.py --windows 5 15 30 --repeat 2
"""
import argparse, json, os, subprocess, sys, tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r'''
import json, resource, sys, time
t0 = time.perf_counter()
import numpy as np, pandas as pd
from pathlib import Path
from setrank.config import TrainingConfig
from setrank.data import tables_fingerprint
from setrank.features import build_features
phase, data, cache, windows = sys.argv[1], Path(sys.argv[2]), sys.argv[3], [int(w) for w in sys.argv[4].split(',')]
rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024
imports = time.perf_counter() - t0
base = rss()
t = time.perf_counter()
tables = {'teams': pd.read_csv(data/'teams.csv'), 'team_games': pd.read_parquet(data/'team_games.parquet'),
          'player_games': pd.read_parquet(data/'player_games.parquet'),
          'player_dnp': pd.read_parquet(data/'player_dnp.parquet')}
read = time.perf_counter() - t
t = time.perf_counter()
fingerprint = tables_fingerprint(tables)
fingerprint_s = time.perf_counter() - t
t = time.perf_counter()
fs = build_features(tables, TrainingConfig(rolling_windows=windows), fingerprint, cache_dir=cache)
build = time.perf_counter() - t
print(json.dumps(dict(phase=phase, build_s=round(build, 2), fingerprint_s=round(fingerprint_s, 2),
    read_s=round(read, 2), import_s=round(imports, 2), rss_peak_mb=round(rss(), 1), rss_added_mb=round(rss() - base, 1),
    rows=len(fs), cuts=int(fs.rows.groupby(['season', 'as_of']).ngroups), seasons=int(fs.rows.season.nunique()),
    player_features=len(fs.schema.player_features), team_features=len(fs.schema.team_features),
    real_slots=int((~fs.mask).sum()), cache_mb=round(sum(f.stat().st_size for f in Path(cache).rglob('*') if f.is_file())/2**20, 1))))
'''

def run(phase:str, data:Path, cache:str, windows:list[int])->dict:
    "One build in a fresh Python process."
    out = subprocess.run([sys.executable, '-c', CHILD, phase, str(data), cache, ','.join(map(str, windows))],
                         capture_output=True, text=True, cwd=REPO)
    if out.returncode: sys.exit(f'{phase} build failed:\n{out.stderr}')
    return json.loads(out.stdout.strip().splitlines()[-1])

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--data', default=os.environ.get('SETRANK_NBA_DATA', REPO.parent/'shared'/'data'/'nba'))
    ap.add_argument('--windows', type=int, nargs='+', default=[15, 30])
    ap.add_argument('--repeat', type=int, default=1, help='cold/cached pairs to run')
    args = ap.parse_args()
    rows = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as cache:
            rows += [run('cold', Path(args.data), cache, args.windows), run('cached', Path(args.data), cache, args.windows)]
    cols = ['phase', 'build_s', 'fingerprint_s', 'read_s', 'import_s', 'rss_peak_mb', 'rss_added_mb', 'rows', 'cuts',
            'seasons', 'player_features', 'team_features', 'real_slots', 'cache_mb']
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in cols]
    print(f'feature build, real data, windows {args.windows}: budget cold < 30 s, cached < 3 s, peak memory < 4 GB')
    print('  '.join(c.rjust(w) for c, w in zip(cols, widths)))
    for r in rows: print('  '.join(str(r[c]).rjust(w) for c, w in zip(cols, widths)))
    print('build_s: build_features (cold: compute + atomic cache write; cached: load); fingerprint_s: tables_fingerprint; '
          'read_s: reading the parquet files; rss_peak_mb: process peak RSS, imports and tables included')

if __name__ == '__main__':
    main()
