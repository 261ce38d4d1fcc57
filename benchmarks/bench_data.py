"""Benchmark the data layer on the real box scores: import (read + validate + fingerprint + write), load, info.

Budget (DESIGN §10): importing the nine real seasons < 15 s on the 2-core CI machine.
Each repeat runs in a fresh subprocess so its peak resident memory is its own.

    python benchmarks/bench_data.py              # 3 repeats, data from $SETRANK_NBA_DATA or ../shared/data/nba
    python benchmarks/bench_data.py 5            # 5 repeats
"""
import json, os, statistics, subprocess, sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NBA = Path(os.environ.get('SETRANK_NBA_DATA', REPO.parent/'shared'/'data'/'nba'))

CHILD = r'''
import json, resource, sys, tempfile, time
from pathlib import Path
from setrank.data import (read_folder, validate_tables, tables_fingerprint, Store, import_folder, load_tables,
                          data_fingerprint, store_info)
folder = sys.argv[1]
rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024
out, base = {}, rss()
with tempfile.TemporaryDirectory() as tmp:
    db = Path(tmp)/'setrank.duckdb'
    def timed(name, f):
        t = time.perf_counter(); r = f(); out[name] = time.perf_counter() - t; return r
    summary = timed('import_folder', lambda: import_folder(folder, db))   # the whole thing, as `setrank data import`
    out['rss_peak_import_mb'] = rss()
    tables, labels = timed('  read files', lambda: read_folder(folder))    # ... and its stages, again, one by one
    valid = timed('  validate', lambda: validate_tables(tables, folder, labels))
    timed('  fingerprint', lambda: tables_fingerprint(valid))
    timed('  write duckdb', lambda: Store(db).write(valid, folder))
    loaded = timed('load_tables', lambda: load_tables(db))
    timed('data_fingerprint', lambda: data_fingerprint(db))
    timed('store_info', lambda: store_info(db))
    out['rss_peak_mb'], out['rss_base_mb'] = rss(), base
    out['db_mb'] = db.stat().st_size/2**20
    out['rows'] = sum(summary.rows.values())
print(json.dumps(out))
'''

def run(folder:Path)->dict:
    "One import + load in a fresh Python process."
    r = subprocess.run([sys.executable, '-c', CHILD, str(folder)], capture_output=True, text=True)
    if r.returncode: sys.exit(r.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])

def main(repeats:int=3):
    if not (NBA/'team_games.parquet').exists(): sys.exit(f'real data not found at {NBA} (set SETRANK_NBA_DATA)')
    runs = [run(NBA) for _ in range(repeats)]
    stages = [k for k in runs[0] if not k.endswith('_mb') and k != 'rows']
    print(f'setrank.data on {NBA} ({runs[0]["rows"]:,} rows in 5 tables), {repeats} runs in fresh processes; '
          'budget: import < 15 s')
    print(f'{"stage":<20}{"median s":>10}{"min s":>10}{"max s":>10}')
    for k in stages:
        xs = [r[k] for r in runs]
        print(f'{k:<20}{statistics.median(xs):>10.2f}{min(xs):>10.2f}{max(xs):>10.2f}')
    for k, what in [('rss_peak_import_mb', 'peak RSS after import_folder (MB, imports included)'),
                    ('rss_peak_mb', 'peak RSS after everything (MB)'), ('rss_base_mb', 'RSS after imports (MB)'),
                    ('db_mb', 'DuckDB file size (MB)')]:
        print(f'{k:<20}{statistics.median(r[k] for r in runs):>10.0f}   {what}')
    verdict = 'within' if statistics.median(r['import_folder'] for r in runs) < 15 else 'OVER'
    print(f'import_folder median {statistics.median(r["import_folder"] for r in runs):.2f} s: {verdict} the 15 s budget')

if __name__ == '__main__':
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
