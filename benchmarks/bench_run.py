"""Benchmark `setrank run` end to end: stage timings and peak memory, cold (empty caches) in a fresh process.

Budgets (DESIGN §10): the synthetic default < 90 s; the real data < 5 min cold; peak memory < 4 GB.

    python benchmarks/bench_run.py                  # both: synthetic default and the real data
    python benchmarks/bench_run.py --only synthetic
    python benchmarks/bench_run.py --only real      # needs ../shared/data/nba or $SETRANK_NBA_DATA
"""
import argparse, json, os, subprocess, sys, tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get('SETRANK_NBA_DATA', REPO.parent/'shared'/'data'/'nba'))

CHILD = r'''
import json, resource, sys, time
from pathlib import Path
t0 = time.perf_counter()
from setrank.config import load_config
from setrank.pipeline import run_pipeline
work, source, data = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
over = {'paths.cache': str(work/'cache'), 'paths.runs': str(work/'runs'), 'paths.db': str(work/'store.duckdb'),
        'data.source': source}
if source == 'db':
    from setrank.data import import_folder
    t = time.perf_counter(); import_folder(data, work/'store.duckdb'); imported = time.perf_counter() - t
else: imported = 0.0
result = run_pipeline(load_config(overrides=over), progress=False)
print(json.dumps(dict(stages=result.timings, import_s=round(imported, 2), total_s=round(time.perf_counter() - t0, 1),
                      peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024),
                      validation=result.validation, test=result.test, split=result.split.model_dump())))
'''

def bench(source:str)->dict:
    with tempfile.TemporaryDirectory() as work:
        out = subprocess.run([sys.executable, '-c', CHILD, work, source, str(DATA)], capture_output=True, text=True, cwd=work)
        if out.returncode: raise SystemExit(f'{source} run failed:\n{out.stderr[-3000:]}')
        return json.loads(out.stdout.strip().splitlines()[-1])

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--only', choices=['synthetic', 'real'])
    args = ap.parse_args()
    cases = [('synthetic', 'synthetic', 90), ('real', 'db', 300)]
    print(f"{'data':<10} {'stage':<14} {'seconds':>8}")
    for name, source, budget in cases:
        if args.only and args.only != name: continue
        if source == 'db' and not (DATA/'team_games.parquet').exists(): print(f'{name:<10} skipped: no data at {DATA}'); continue
        r = bench(source)
        if r['import_s']: print(f"{name:<10} {'import':<14} {r['import_s']:>8.1f}")
        for stage, s in r['stages'].items(): print(f'{name:<10} {stage:<14} {s:>8.1f}')
        print(f"{name:<10} {'TOTAL':<14} {r['total_s']:>8.1f}   budget {budget} s, peak memory {r['peak_rss_mb']} MB (budget 4096)")
        print(f"{name:<10} validation {r['validation']}\n{name:<10} test {r['test']}  split {r['split']}")

if __name__ == '__main__':
    main()
