"""Rolling-origin backtest on the real data: the final accuracy table (DESIGN §3), time and peak memory.

    python benchmarks/bench_backtest.py --config cfg.yaml --seasons 2019-20:2023-24   # runs it (~6-10 min on 2 cores)
    python benchmarks/bench_backtest.py --from runs/backtest_2019-20_2023-24          # only prints a finished one

The config must point `paths.db` at a store filled by `setrank data import ../shared/data/nba`.
"""
import argparse, json, resource, sys, time
from pathlib import Path
import pandas as pd

def summary(table:pd.DataFrame)->str:
    "Ensemble vs the best simple baselines, per horizon, mean ± sd over test seasons, plus per-season flags."
    t = table[(table.metric == 'spearman') & (table.teams == 'league')]
    out = []
    for target, h, methods in [('rest_of_season', [0.25, 0.5, 0.75], ['ensemble', 'prior', 'model_a', 'xgb', 'rf', 'point_diff', 'win_pct']),
                               ('playoff_outcome', [1.0], ['ensemble', 'prior', 'win_pct', 'point_diff'])]:
        for hz in h:
            at = t[(t.target == target) & (t.horizon == hz)]
            cells = []
            for m in methods:
                v = at[at.method == m].value
                if len(v): cells.append(f'{m} {v.mean():.3f} ± {v.std(ddof=1):.3f}')
            out.append(f'{target:16s} {"end" if hz >= 1 else f"{hz:.0%}":>4s}  ' + ' | '.join(cells))
    hi = t[(t.target == 'rest_of_season') & (t.method == 'ensemble') & (t.value > 0.9)]
    out.append('seasons with ensemble rest_of_season Spearman > 0.9: ' +
               (', '.join(f'{r.season} {r.horizon:.0%} ({r.value:.3f})' for r in hi.itertuples()) or 'none'))
    return '\n'.join(out)

if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--config'); ap.add_argument('--seasons', default='2019-20:2023-24'); ap.add_argument('--from', dest='src')
    a = ap.parse_args()
    start = time.perf_counter()
    if a.src:
        folder = Path(a.src); table = pd.read_csv(folder/'backtest_results.csv')
    else:
        from setrank.config import load_config, season_range
        from setrank.pipeline import backtest
        cfg = load_config(a.config, overrides={'data.source': 'db'})
        seasons = season_range(a.seasons)
        folder, table = backtest(cfg, seasons, progress=False)
    from setrank.pipeline import format_backtest
    print(format_backtest(table)); print(); print(summary(table))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024
    print(f'\n{folder}: {time.perf_counter() - start:.0f} s, peak memory {peak:.0f} MB')
