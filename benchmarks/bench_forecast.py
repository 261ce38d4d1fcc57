"""`setrank forecast` on the real data cut at 2024-01-15 (a season in progress), from nothing: wall time and checks.

The shared real data (SETRANK_NBA_DATA, read-only) is cut at the date into a scratch folder: every game on or after it
dropped from every table, the dropped 2023-24 regular-season games written as schedule.parquet. Then, in that folder:

1. `setrank data import` of the cut folder;
2. `setrank forecast --data db` without --run (it trains the pipeline on the seasons before 2023-24): timed;
3. checks: projected wins sum to the season's games (1,230), title odds to 1, playoff odds to 16; the RMSE of the
   projected final wins against the real 2023-24 final wins, beside the two baselines (W-L extrapolation, regressed
   point differential: same game model link, same calibration seasons, same simulations);
4. with --run-check, `setrank run --data db` on the cut data: it must finish and evaluate no 2023-24 number.

    python benchmarks/bench_forecast.py [--work DIR] [--as-of 2024-01-15] [--sims 10000] [--run-check] [--json FILE]

With --json FILE it also writes the checks and the RMSEs as JSON (`setrank report readme --in-progress FILE` puts them in the
README's forecast table).

Timings are wall-clock seconds on this machine; say whether it was loaded when you quote them.
"""
import argparse, json, os, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np, pandas as pd

REPO = Path(__file__).resolve().parents[1]
SETRANK = str(Path(sys.executable).parent/'setrank')

def setrank(*args, cwd):
    start = time.perf_counter()
    r = subprocess.run([SETRANK, *args], cwd=cwd, capture_output=True, text=True)
    if r.returncode: sys.exit(f'setrank {" ".join(args)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}')
    return time.perf_counter() - start, r.stdout

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--work', help='scratch folder (default: a new temporary one)')
    ap.add_argument('--as-of', default='2024-01-15')
    ap.add_argument('--sims', type=int, default=10000)
    ap.add_argument('--run-check', action='store_true', help='also `setrank run --data db` on the cut data')
    ap.add_argument('--json', help='also write the checks and RMSEs to this JSON file')
    args = ap.parse_args()
    from setrank.data import read_folder
    from setrank.forecast import (tables_before, write_folder, feature_as_of, baseline_game_models, baseline_strength,
                                  forecast_season, calibration_seasons)
    from setrank.simulate import season_state, games_after, RemainingSchedule, match_ratings
    src = Path(os.environ.get('SETRANK_NBA_DATA', REPO.parent/'shared'/'data'/'nba'))
    work = Path(args.work or tempfile.mkdtemp(prefix='bench_forecast_')); work.mkdir(parents=True, exist_ok=True)
    as_of = pd.Timestamp(args.as_of)
    full, _ = read_folder(src)
    t0 = time.perf_counter()
    cut = tables_before(full, as_of)
    write_folder(cut, work/'nba_cut')
    cut_s = time.perf_counter() - t0
    import_s, _ = setrank('data', 'import', str(work/'nba_cut'), cwd=work)
    forecast_s, out = setrank('forecast', '--data', 'db', '--quiet', '--sims', str(args.sims), cwd=work)
    folder = work/'runs'/f'forecast_2023-24_{as_of.date()}'
    doc = json.loads((folder/'forecast.json').read_text())
    teams = pd.DataFrame(doc['teams']).set_index('team_id')

    # the real final wins, and the two baselines through the same link
    season = doc['season']
    tg = full['team_games']
    final = tg[(tg.season == season) & (tg.season_type == 'regular')].groupby('team_id').win.sum()
    from setrank.config import load_config
    from setrank.pipeline import load_league, run_features
    cfg = load_config(overrides={'data.source': 'db', 'paths.db': str(work/'data/setrank.duckdb'),
                                 'paths.cache': str(work/'data/cache')})
    tables, fingerprint = load_league(cfg)
    rows = run_features(cfg, tables, fingerprint).rows
    run_dir = sorted((work/'runs').glob('run_*'))[-1]
    calibrate_on = calibration_seasons(pd.read_parquet(run_dir/'oof.parquet'))   # the run's out-of-fold seasons, as setrank's
    state = season_state(tables, season, as_of)
    games = tables['schedule'][tables['schedule'].season == season]
    remaining = RemainingSchedule(pd.DataFrame({'home_team_id': games.home_team_id.to_numpy(), 'away_team_id': games.away_team_id.to_numpy(),
                                                'neutral_site': False}), 'schedule', '')
    cutday = feature_as_of(rows, season, as_of)
    at = rows[(rows.season == season) & (rows.as_of == cutday)].set_index('team_id').reindex(state.teams.team_id).reset_index()
    rmse = {'setrank': float(np.sqrt(((teams.projected_wins - final.reindex(teams.index))**2).mean()))}
    for method, gm in baseline_game_models(tables['team_games'], rows[rows.season.isin(calibrate_on)]).items():
        strength = baseline_strength(at, method, gm.regression_games)
        rating = match_ratings(gm.win_pct(strength), state, remaining, gm.home_advantage, cfg.forecast.rating_prior_weight)
        fc = forecast_season(state, remaining, rating, gm.home_advantage, args.sims, cfg.repro.seed)
        rmse[method] = float(np.sqrt(((fc.teams.projected_wins.to_numpy() - final.reindex(state.teams.team_id).to_numpy())**2).mean()))

    print(f'forecast of {season} as of {doc["as_of"]} on the real data cut there ({doc["schedule"]["games_left"]} games '
          f'left, schedule from {doc["schedule"]["source"]}); work folder {work}; {os.cpu_count()} CPUs; load {os.getloadavg()[0]:.2f}')
    print(f'{"step":<44}{"seconds":>9}')
    for step, s in [('cut the data (read, cut, write parquet)', cut_s), ('setrank data import', import_s),
                    (f'setrank forecast --data db (trains; {args.sims:,} sims)', forecast_s)]:
        print(f'{step:<44}{s:9.1f}')
    print(f'\n{"check":<44}{"value":>12}{"expected":>12}')
    for name, value, want in [('projected wins, sum', teams.projected_wins.sum(), 1230), ('title odds, sum', teams.title_odds.sum(), 1),
                              ('playoff odds, sum', teams.playoff_odds.sum(), 16)]:
        print(f'{name:<44}{value:12.4f}{want:>12}')
    print(f'\n{"projected final wins vs real 2023-24":<44}{"RMSE":>12}')
    for m, v in rmse.items(): print(f'{m:<44}{v:12.3f}')
    print(f'setrank below both baselines: {rmse["setrank"] < min(rmse["win_pct"], rmse["point_diff_regressed"])}')
    if args.json:
        from setrank.files import write_json
        write_json(args.json, {'season': season, 'as_of': doc['as_of'], 'games_left': doc['schedule']['games_left'],
                               'simulations': args.sims, 'seed': cfg.repro.seed, 'wins_rmse': rmse,
                               'sums': {'projected_wins': float(teams.projected_wins.sum()),
                                        'title_odds': float(teams.title_odds.sum()),
                                        'playoff_odds': float(teams.playoff_odds.sum())},
                               'forecast_seconds': round(forecast_s, 1)})
    if args.run_check:
        run_s, _ = setrank('run', '--data', 'db', '--quiet', cwd=work)
        last = sorted((work/'runs').glob('run_*'))[-1]
        report = json.loads((last/'eval_report.json').read_text())
        print(f'\nsetrank run --data db on the cut data: {run_s:.1f} s, {last.name}; forecast season '
              f'{report.get("forecast_season")}, evaluated seasons {report.get("evaluated_seasons")}, '
              f'{len(report["results"])} test results; predictions_{season}.json written: {(last/f"predictions_{season}.json").exists()}')

if __name__ == '__main__':
    main()
