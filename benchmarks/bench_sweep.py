"""Seconds per sweep trial on the real data (the whole pipeline per combo), and the batch's fixed costs.

Budget (DESIGN §10): one sweep trial < 90 s on 2 CPU cores, peak memory < 4 GB.

The real NBA data (../shared/data/nba or $SETRANK_NBA_DATA) is imported into a temporary DuckDB store; the features
of the default windows are built once (the batch's shared feature cache), then a seeded Optuna batch of `--trials`
combos runs over the default search space (`sweep.space` of the packaged defaults, or `--config FILE`). A combo whose
swept `training.rolling_windows` is new to the cache builds its features inside its trial: the table shows each
trial's stage seconds (from its manifest) so that cost is visible. Everything runs in one process; peak memory is its
max RSS.

    python benchmarks/bench_sweep.py                  # 3 trials, default space
    python benchmarks/bench_sweep.py --trials 5 --keep /tmp/sweep_bench
    python benchmarks/bench_sweep.py --set output.plots=false   # without the run's plots
"""
import argparse, json, os, resource, shutil, sys, tempfile, time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUDGET_S = 90

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--data', default=os.environ.get('SETRANK_NBA_DATA', REPO.parent/'shared'/'data'/'nba'))
    ap.add_argument('--trials', type=int, default=3, help='combos in the batch')
    ap.add_argument('--config', default=None, help='YAML merged over the defaults (e.g. a smaller sweep.space)')
    ap.add_argument('--set', nargs='*', default=[], metavar='KEY=VALUE',
                    help='config overrides on dotted keys, YAML values (e.g. output.plots=false model_a.epochs=10)')
    ap.add_argument('--keep', default=None, help='work folder to keep (default: a temporary folder, removed)')
    args = ap.parse_args()
    data = Path(args.data)
    if not (data/'team_games.parquet').exists(): sys.exit(f'real data not found at {data} (set SETRANK_NBA_DATA)')

    from setrank.config import load_config
    from setrank.data import import_folder
    from setrank.pipeline import load_league, run_features
    from setrank.sweep import pipeline_trial, run_sweep

    work = Path(args.keep or tempfile.mkdtemp(prefix='bench_sweep_')); work.mkdir(parents=True, exist_ok=True)
    rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024
    try:
        t = time.perf_counter(); import_folder(data, work/'nba.duckdb'); import_s = time.perf_counter() - t
        from ruamel.yaml import YAML
        extra = {k: YAML(typ='safe', pure=True).load(v) for k, _, v in (kv.partition('=') for kv in args.set)}
        cfg = load_config(args.config, overrides={'data.source': 'db', 'paths.db': str(work/'nba.duckdb'),
                                                  'paths.cache': str(work/'cache'), 'paths.runs': str(work/'runs'), **extra})
        t = time.perf_counter(); run_features(cfg, *load_league(cfg)); features_s = time.perf_counter() - t
        t = time.perf_counter()
        res = run_sweep(cfg, 'bench', n_trials=args.trials, run_trial=pipeline_trial, progress=True)
        sweep_s = time.perf_counter() - t
        rows = []
        for r in res.results.itertuples():
            manifest = res.batch_dir/r.combo/'outputs'/'manifest.json'
            stages = json.loads(manifest.read_text())['stage_seconds'] if manifest.exists() else {}
            rows.append((r.combo, r.state, r.duration_s, r.validation_spearman, r.test_spearman, stages))
    finally:
        if not args.keep: shutil.rmtree(work, ignore_errors=True)

    print(f'\nsweep benchmark on {data} ({args.trials} trials, {len(cfg.sweep.space)} swept keys, '
          f'{os.cpu_count()} CPUs, torch threads {__import__("torch").get_num_threads()})')
    print(f'fixed costs: import {import_s:.1f} s, features (default windows, cold) {features_s:.1f} s')
    stage_names = ['data', 'features', 'out_of_fold', 'stack', 'final_models', 'predict', 'evaluate']
    print(f"{'combo':<11} {'state':<9} {'seconds':>8} {'val rho':>8} {'test rho':>8}  " + ' '.join(f'{s[:10]:>10}' for s in stage_names))
    for combo, state, secs, val, test, stages in rows:
        fmt = lambda v: '—' if v is None or v != v else f'{v:.3f}'
        print(f'{combo:<11} {state:<9} {secs:>8.1f} {fmt(val):>8} {fmt(test):>8}  ' +
              ' '.join(f"{stages.get(s, float('nan')):>10.1f}" for s in stage_names))
    done = [secs for _, state, secs, *_ in rows if state == 'COMPLETE']
    if done:
        mean = sum(done)/len(done)
        print(f'seconds per trial: mean {mean:.1f}, max {max(done):.1f} (budget < {BUDGET_S} s: '
              f"{'within' if max(done) < BUDGET_S else 'OVER'}); batch wall time {sweep_s:.1f} s")
    print(f'peak memory (max RSS of this process): {rss():.0f} MB (budget < 4096 MB)')

if __name__ == '__main__':
    main()
