"""How uncertain are the strengths? σ (logit) fitted on each backtest fold's validation season, by share of the season.

For each fold of a `setrank backtest` folder, the fold's game models (setrank's ensemble on its out-of-fold scores, the
W-L extrapolation, the regressed point differential, each fitted here on the fold's validation season alone, so that
every season is read once; `setrank forecast backtest` fits them on all the run's out-of-fold seasons) rate the teams at every second cut of that validation season; `fit_strength_sd` then finds
the σ that best explains the results after the cuts, in tenths of the season, per season and pooled over the folds.
Only validation seasons are read (never a test season's results), so this is what the notebook's choice of a
season-stage window (`STRENGTH_WINDOW`) rests on.

    python benchmarks/bench_strength_sd.py [--data db] [--backtest runs/backtest_2019-20_2023-24]

Run it in the folder that holds the store and the backtest (the one `setrank backtest --data db` ran in).
"""
import argparse, json, time
from pathlib import Path
import numpy as np, pandas as pd

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--data', default='db')
    ap.add_argument('--backtest', default='runs/backtest_2019-20_2023-24')
    ap.add_argument('--bins', type=int, default=10, help='stages of the season (equal shares of the games played)')
    args = ap.parse_args()
    from setrank.config import load_config
    from setrank.pipeline import load_league, run_features
    from setrank.forecast import (ensemble_game_model, baseline_game_models, calibration_scores, calibration_games,
                                  fit_strength_sd, FORECAST_METHODS)
    start = time.perf_counter()
    cfg = load_config(overrides={'data.source': args.data})
    tables, fingerprint = load_league(cfg)
    tg, rows = tables['team_games'], run_features(cfg, tables, fingerprint).rows
    bt, games = Path(args.backtest), []
    for fold in sorted(p for p in bt.iterdir() if (p/'oof.parquet').exists()):
        validation = json.loads((fold/'manifest.json').read_text())['split']['validation']
        oof = pd.read_parquet(fold/'oof.parquet')
        models = {'setrank': ensemble_game_model(tg, oof, rows, validation),
                  **baseline_game_models(tg, rows[rows.season.isin(validation)])}
        for m in FORECAST_METHODS:
            cal = calibration_games(tables, calibration_scores(m, validation, models[m], oof=oof, rows=rows), models[m])
            games.append(cal.assign(method=m))
    games = pd.concat(games, ignore_index=True)
    edges = np.linspace(0, 1, args.bins + 1)
    games['stage'] = pd.cut(games.fraction, edges, include_lowest=True)
    per_season, pooled = {}, {}
    for (m, stage), g in games.groupby(['method', 'stage'], observed=True):
        pooled[(m, str(stage))] = fit_strength_sd(g)
        for s, gs in g.groupby('season'): per_season[(m, str(stage), s)] = fit_strength_sd(gs)
    pd.set_option('display.width', 200)
    print(f'σ (logit) on the validation seasons {sorted(games.season.unique())}, every second cut; {time.perf_counter() - start:.0f} s\n')
    print('pooled over the validation seasons, by share of the season played:')
    print(pd.Series(pooled).unstack(0)[list(FORECAST_METHODS)].round(3).to_string())
    table = pd.Series(per_season).unstack(2)
    print('\nper validation season (its sd over seasons in the last column):')
    print(table.assign(sd=table.std(axis=1, ddof=1)).round(3).to_string())
    print('\nall cuts of a season at once:')
    whole = {(m, s): fit_strength_sd(g) for (m, s), g in games.groupby(['method', 'season'])}
    print(pd.Series(whole).unstack(0)[list(FORECAST_METHODS)].round(3).to_string())

if __name__ == '__main__':
    main()
