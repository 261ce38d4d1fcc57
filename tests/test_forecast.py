"Forecasting a season in progress: the schedule table, in-progress seasons, the rules, the odds, the CLI end to end."
import contextlib, hashlib, io, json, os, subprocess, sys
from pathlib import Path
import numpy as np, pandas as pd
import pytest
from setrank.config import SetrankError, TrainingConfig
from setrank.data import import_folder, load_tables, write_store, SCHEDULE_SCHEMA
from setrank.nba_stats import schedule_from_league_schedule
from setrank.forecast import tables_before, write_folder, forecast_season, run_strength, forecast_document, forecast_markdown
from setrank.simulate import (season_state, remaining_schedule, match_ratings, conference_standings, play_in, tiebreak_order,
                              SeasonState, RemainingSchedule)
from setrank.synthetic import synth_league
from setrank.targets import in_progress_seasons

FIXTURES = Path(__file__).parent/'fixtures'/'nba_api'
SCHEDULE = Path(__file__).parent/'fixtures'/'nba_api_schedule'/'scheduleleaguev2_2023-24.json'
SETRANK = str(Path(sys.executable).parent/'setrank')
SMALL = ('stacking: {oof_seasons: 1}\nmodel_a: {epochs: 3}\nmodel_b: {rf: {n_estimators: 30}}\n'
         'output: {odds_simulations: 2000}\nforecast: {simulations: 2000}\n')

def setrank(*args, cwd):
    return subprocess.run([SETRANK, *args], cwd=cwd, capture_output=True, text=True)

def sha(path): return hashlib.sha256(Path(path).read_bytes()).hexdigest()

@pytest.fixture(scope='module')
def league():
    return synth_league(n_seasons=4, seed=7)

@pytest.fixture(scope='module')
def mid(league):
    "The last synthetic season's middle game date: the cut."
    tg = league['team_games']
    last = max(tg.season.unique())
    dates = np.sort(tg[(tg.season == last) & (tg.season_type == 'regular')].game_date.unique())
    return last, pd.Timestamp(dates[len(dates)//2])

# --- the schedule table ---------------------------------------------------------------------------------------------

def test_schedule_import_errors_name_file_column_and_row_and_keep_the_store(league, mid, tmp_path):
    folder = write_folder(tables_before(league, mid[1]), tmp_path/'cut')
    db = tmp_path/'s.duckdb'
    assert import_folder(folder, db).rows['schedule'] > 0
    before = sha(db)
    good = pd.read_parquet(folder/'schedule.parquet')
    for bad, message in [(good.assign(away_team_id=good.away_team_id.where(good.index != 3, 99)),
                          f"{folder/'schedule.parquet'}: column 'away_team_id' has team ids not in"),
                         (good.assign(game_id=good.game_id.iloc[0]), 'duplicate rows for (game_id), e.g. game_id='),
                         (good.drop(columns='home_team_id'), "missing column 'home_team_id'"),
                         (good.assign(season_type='exhibition'), "column 'season_type' must be one of")]:
        bad.to_parquet(folder/'schedule.parquet')
        r = setrank('data', 'import', str(folder), '--db', str(db), cwd=tmp_path)
        assert r.returncode == 2 and message in r.stderr and 'Traceback' not in r.stderr, r.stderr
        assert 'e.g.' in r.stderr or 'missing column' in r.stderr
        assert sha(db) == before

def test_nba_api_schedule_fixture_maps_to_the_canonical_table():
    payload = json.loads(SCHEDULE.read_text())
    from nba_api.stats.endpoints._parsers.scheduleleaguev2 import NBAStatsScheduleLeagueV2Parser
    assert len(NBAStatsScheduleLeagueV2Parser(payload).get_data_sets()['SeasonGames']['data']) == 14  # nba_api reads it
    s = schedule_from_league_schedule(payload, 'fixture')
    assert list(s.columns) == list(SCHEDULE_SCHEMA) and len(s) == 11       # preseason, All-Star, TBD playoff slot dropped
    assert s.season.unique().tolist() == ['2023-24']
    assert s.season_type.value_counts().to_dict() == {'regular': 10, 'cup_final': 1}
    opening = s.set_index('game_id').loc['0022300061']
    assert (opening.home_team_id, opening.away_team_id, str(opening.game_date.date())) == (1610612743, 1610612747, '2023-10-24')
    assert s.game_date.max() == pd.Timestamp('2024-01-15')

def test_fetched_schedule_against_box_scores_finds_the_games_left():
    "The fixture's schedule and the LeagueGameLog fixtures number games the same way: the two played games are matched."
    from setrank.nba_stats import tables_from_game_logs, game_log_frame
    from setrank.targets import unplayed_games
    logs = {k: json.loads((FIXTURES/f'leaguegamelog_2023-24_regular_{k}.json').read_text()) for k in ('team', 'player')}
    tables = tables_from_game_logs(game_log_frame(logs['team']), game_log_frame(logs['player']))
    sched = schedule_from_league_schedule(json.loads(SCHEDULE.read_text()))
    left = unplayed_games(tables['team_games'], sched)
    assert '0022300061' not in set(left.game_id) and len(left) == 8           # 10 regular games, 2 in the box scores

# --- seasons in progress ----------------------------------------------------------------------------------------------

def test_a_season_in_progress_has_unknown_labels_and_the_others_keep_theirs():
    from setrank.features import compute_features
    full = synth_league(n_seasons=3, seed=5)
    tg = full['team_games']
    dates = np.sort(tg[(tg.season == '2020-21') & (tg.season_type == 'regular')].game_date.unique())
    cut = tables_before(full, dates[len(dates)//2])
    assert in_progress_seasons(tg) == [] and in_progress_seasons(cut['team_games']) == ['2020-21']
    assert in_progress_seasons(cut['team_games'], cut['schedule']) == ['2020-21']
    a, b = compute_features(full, TrainingConfig()).rows, compute_features(cut, TrainingConfig()).rows
    labels = ['y_rest_of_season', 'y_final_rank', 'y_playoff_outcome']
    assert b[b.season == '2020-21'][labels].isna().all().all()
    keep = lambda r: r[r.season == '2019-20'].reset_index(drop=True)[labels]
    pd.testing.assert_frame_equal(keep(a), keep(b))

# --- the rules on hand-made standings ---------------------------------------------------------------------------------

def tiny_state(h2h, divisions, conferences):
    n = len(divisions)
    teams = pd.DataFrame({'team_id': np.arange(1, n + 1), 'team': [f'T{i}' for i in range(n)], 'conference': conferences,
                          'division': divisions})
    return SeasonState('2023-24', pd.Timestamp('2024-04-15'), teams, np.array(h2h), np.zeros((n, n), int), np.zeros(n))

def test_a_division_leader_wins_a_three_way_tie_over_a_better_head_to_head():
    # East: division A = {0, 1}, B = {2, 3}; teams 0, 1, 2 finish 3-2, team 3 0-3
    # 1 leads A (it beat 0 two of three), 2 leads B; among 0, 1, 2 team 0 has the best record (3-2), but leads nothing
    h2h = [[0, 1, 2, 0], [2, 0, 0, 1], [0, 1, 0, 2], [0, 0, 0, 0]]
    state = tiny_state(h2h, ['A', 'A', 'B', 'B'], ['East']*4)
    order = conference_standings(state, np.array(h2h)[None], np.full((1, 4), 0.5))['East'][0].tolist()
    h = np.array(h2h)
    assert h.sum(1)[:3].tolist() == [3, 3, 3] and h.sum(0)[:3].tolist() == [2, 2, 2]
    assert order == [1, 2, 0, 3]

def test_two_tied_teams_go_by_head_to_head_before_the_division_leader():
    one = lambda x: np.array(x, dtype=float)[None]
    order = tiebreak_order(one([0.6, 0.6]), np.array([[[0, 3], [1, 0]]]), np.array(['A', 'B']), one([0.4, 0.7]),
                           one([0.5, 0.5]), one([0, 10]), np.array([[False, True]]), one([0.1, 0.9]))
    assert order[0].tolist() == [0, 1]

def test_play_in_seeds_follow_the_games():
    standing = np.arange(10)[None]                           # team k finished (k + 1)th
    strength = np.zeros(10); strength[9] = 100.0; strength[7] = 50.0
    seeds = play_in(standing, strength, 1.0, 0.0, np.random.default_rng(0))[0].tolist()
    # 8 beats 7 (7th seed); 10 beats 9, then beats the loser 7 for the 8th seed
    assert seeds[:6] == [0, 1, 2, 3, 4, 5] and seeds[6:] == [7, 9]

# --- the forecast itself ----------------------------------------------------------------------------------------------

def test_forecast_odds_add_up_and_follow_strength(league, mid):
    season, as_of = mid
    cut = tables_before(league, as_of)
    state = season_state(cut, season, as_of)
    remaining = remaining_schedule(cut, state)
    assert remaining.source == 'schedule'
    p = np.linspace(0.25, 0.75, 30)
    fc = forecast_season(state, remaining, match_ratings(p, state, remaining, 0.3, prior_weight=1.0), 0.3, 3000, seed=1, strength=p)
    t = fc.teams
    assert abs(t.projected_wins.sum() - 1230) < 1e-6 and abs(t.title_odds.sum() - 1) < 1e-9
    assert abs(t.playoff_odds.sum() - 16) < 1e-9 and abs(fc.seed_odds.sum(1) - t.playoff_odds).max() < 1e-12
    assert np.corrcoef(p, t.projected_wins - t.wins)[0, 1] > 0.9
    left = t.projected_wins - t.wins
    games_left = 82 - t.wins - t.losses
    assert np.abs(left/games_left - p).max() < 0.02          # the games left come out at each team's predicted win %

def test_without_a_schedule_the_formula_is_used_and_flagged(league, mid):
    season, as_of = mid
    cut = {k: v for k, v in tables_before(league, as_of).items() if k != 'schedule'}
    remaining = remaining_schedule(cut, season_state(cut, season, as_of))
    assert remaining.approximated and 'approximated' in remaining.note
    assert len(remaining.games) == (tables_before(league, as_of)['schedule'].season_type == 'regular').sum()
    state = season_state(cut, season, as_of)
    fc = forecast_season(state, remaining, np.zeros(30), 0.3, 200, seed=0)
    doc = forecast_document(fc)
    assert doc['schedule']['source'] == 'formula' and doc['schedule']['approximated'] is True
    assert '**Approximated schedule**' in forecast_markdown(fc)

def test_a_run_trained_on_the_forecast_season_is_refused(tmp_path):
    run = tmp_path/'run_009'; run.mkdir()
    (run/'manifest.json').write_text(json.dumps({'split': {'train': ['2019-20', '2020-21'], 'validation': ['2021-22'], 'test': '2022-23'}}))
    with pytest.raises(SetrankError, match='would have seen the season they forecast'):
        run_strength(run, '2021-22', '2022-01-15')

# --- the command, end to end on the synthetic league cut mid-season --------------------------------------------------

@pytest.fixture(scope='module')
def cli(league, mid, tmp_path_factory):
    "A store cut mid-season (schedule given), `setrank forecast` without --run, then twice with --run."
    work = tmp_path_factory.mktemp('forecast')
    write_store(tables_before(league, mid[1]), work/'data'/'setrank.duckdb', 'synthetic cut')
    (work/'small.yaml').write_text(SMALL)
    first = setrank('forecast', '--data', 'db', '--config', 'small.yaml', '--quiet', cwd=work)
    assert first.returncode == 0, first.stderr[-3000:]
    out = work/'runs'/f'forecast_{mid[0]}_{mid[1].date()}'
    results = {'first': (first, (out/'forecast.json').read_bytes())}
    for name in ('again', 'third'):
        r = setrank('forecast', '--data', 'db', '--config', 'small.yaml', '--run', 'run_001', '--quiet', cwd=work)
        assert r.returncode == 0, r.stderr[-3000:]
        results[name] = (r, (out/'forecast.json').read_bytes())
    return work, out, results

def test_forecast_writes_the_three_files_with_every_field(cli, mid):
    work, out, results = cli
    for name in ('forecast.json', 'forecast.md', 'forecast.png'): assert (out/name).exists(), name
    doc = json.loads((out/'forecast.json').read_text(), parse_constant=lambda c: pytest.fail(f'JSON has {c}'))
    assert (doc['season'], doc['as_of'], doc['simulations']) == (mid[0], str(mid[1].date()), 2000)
    assert doc['schedule'] == {**doc['schedule'], 'source': 'schedule', 'approximated': False}
    assert len(doc['teams']) == 30
    for t in doc['teams']:
        assert {'team', 'rank', 'strength', 'wins', 'losses', 'projected_wins', 'projected_wins_p10', 'projected_wins_p90',
                'playoff_odds', 'seed_odds', 'title_odds'} <= set(t)
        assert t['projected_wins_p10'] <= t['projected_wins'] <= t['projected_wins_p90']
    assert abs(sum(t['title_odds'] for t in doc['teams']) - 1) < 1e-9
    assert abs(sum(t['playoff_odds'] for t in doc['teams']) - 16) < 1e-9
    assert abs(sum(t['projected_wins'] for t in doc['teams']) - 1230) < 1e-6
    md = (out/'forecast.md').read_text()
    assert 'What the numbers mean' in md and 'in progress' in md
    assert 'how wide the season is so far' in md and f"{doc['game_model']['spread']:.2f} points per game" in md
    assert 'projected' in results['first'][0].stdout and 'title' in results['first'][0].stdout
    gm = doc['game_model']                       # strength uncertainty: calibrated on the run's out-of-fold seasons
    assert gm['strength_sd'] > 0 and 'maximum likelihood' in gm['strength_sd_source'] and gm['fitted_on'][0] in gm['strength_sd_source']
    assert gm['spread'] > 0 and gm['spread_slope'] != 0            # the line reads the league's spread, recorded with it
    assert f"σ = {gm['strength_sd']:.2f} logit" in md and f"σ = {gm['strength_sd']:.2f}" in results['first'][0].stdout

def test_same_seed_same_forecast_bit_for_bit(cli):
    _, _, results = cli
    assert results['first'][1] == results['again'][1] == results['third'][1]

def test_strength_uncertainty_widens_the_ranges_and_0_switches_it_off(cli, tmp_path, monkeypatch):
    from setrank.config import load_config
    from setrank.forecast import forecast_command
    work, out, results = cli
    monkeypatch.chdir(work)                      # the run's config names the store relative to its folder's parent
    calibrated = json.loads(results['first'][1])
    fixed = {}
    for name, setting in [('off', 0), ('again', 0)]:
        cfg = load_config('small.yaml', overrides={'data.source': 'db', 'forecast.strength_uncertainty': setting})
        forecast_command(cfg, run='run_001', progress=False, out_dir=tmp_path/name)
        fixed[name] = (tmp_path/name/'forecast.json').read_bytes()
    assert fixed['off'] == fixed['again']
    off = json.loads(fixed['off'])
    assert off['game_model']['strength_sd'] == 0 and 'strengths fixed' in off['game_model']['strength_sd_source']
    assert 'they stay fixed for the rest of the season' in (tmp_path/'off'/'forecast.md').read_text()
    width = lambda doc: np.mean([t['projected_wins_p90'] - t['projected_wins_p10'] for t in doc['teams']])
    assert width(calibrated) > width(off)                                      # uncertain strengths: wider ranges
    assert max(t['title_odds'] for t in calibrated['teams']) < max(t['title_odds'] for t in off['teams'])
    for doc in (calibrated, off):
        assert abs(sum(t['projected_wins'] for t in doc['teams']) - 1230) < 1e-6
        assert abs(sum(t['title_odds'] for t in doc['teams']) - 1) < 1e-9 and abs(sum(t['playoff_odds'] for t in doc['teams']) - 16) < 1e-9

def test_bad_as_of_is_a_clear_error(cli):
    work, _, _ = cli
    for as_of, message in [('soon', "is not a date"), ('2010-01-01', 'before the first regular-season game'),
                           ('2031-01-01', 'after the day after the last game in the store')]:
        r = setrank('forecast', '--data', 'db', '--as-of', as_of, '--run', 'run_001', cwd=work)
        assert r.returncode == 2 and message in r.stderr and 'Traceback' not in r.stderr, r.stderr

def test_a_finished_season_forecasts_its_postseason_and_says_who_won(league, tmp_path):
    "On a store whose last season is over, the default date is after the regular season: only the play-in and playoffs"
    " are simulated, from the final standings, and the report says so and names the real champion."
    from setrank.forecast import season_truth
    write_store(league, tmp_path/'data'/'setrank.duckdb', 'synthetic, whole')
    (tmp_path/'small.yaml').write_text(SMALL)
    r = setrank('forecast', '--data', 'db', '--config', 'small.yaml', '--quiet', cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    out, = (tmp_path/'runs').glob('forecast_*')
    doc = json.loads((out/'forecast.json').read_text())
    assert all(t['projected_wins'] == t['wins'] for t in doc['teams'])          # no regular-season game left to play
    assert abs(sum(t['title_odds'] for t in doc['teams']) - 1) < 1e-9
    state = season_state(league, doc['season'], pd.Timestamp(doc['as_of']))
    _, _, champion = season_truth(league['team_games'], state)
    note = f"the real postseason (won by {state.teams.team.iloc[champion]}) is not used"
    assert note in (out/'forecast.md').read_text() and any(note in n for n in doc['notes'])

def test_a_run_on_a_season_in_progress_evaluates_no_number_of_it(cli, mid):
    work, _, _ = cli
    r = setrank('run', '--data', 'db', '--config', 'small.yaml', '--quiet', cwd=work)
    assert r.returncode == 0, r.stderr[-3000:]
    run = sorted((work/'runs').glob('run_*'))[-1]
    report = json.loads((run/'eval_report.json').read_text())
    assert report['forecast_season'] == mid[0] and report['results'] == [] and report['evaluated_seasons'] == []
    assert f'Forecast season: {mid[0]}' in (run/'eval_report.md').read_text()
    manifest = json.loads((run/'manifest.json').read_text())
    assert manifest['forecast_season'] == mid[0] and all(v is None for v in manifest['test'].values())
    assert (run/f'predictions_{mid[0]}.json').exists()

@pytest.mark.slow
def test_forecast_backtest_end_to_end_on_the_synthetic_league(tmp_path):
    (tmp_path/'small.yaml').write_text(SMALL + 'data: {synth_seasons: 5}\n')
    r = setrank('backtest', '--config', 'small.yaml', '--seasons', '2022-23:2022-23', '--quiet', cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    r = setrank('forecast', 'backtest', '--config', 'small.yaml', '--seasons', '2022-23:2022-23', '--sims', '500', '--quiet', cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    table = pd.read_csv(tmp_path/'runs'/'backtest_2022-23_2022-23'/'forecast_backtest.csv')
    assert set(table.method) == {'setrank', 'win_pct', 'point_diff_regressed'} and set(table.date) == {'12-01', '01-15', '03-01'}
    assert (table.wins_rmse > 0).all() and table.game_accuracy.between(0.5, 1).all()
    assert (table.strength_sd > 0).all() and table.wins_in_p10_p90.between(0, 1).all()   # each method its own calibrated σ
    assert 'wins_rmse' in r.stdout
    # the report notebook runs on it through papermill
    papermill = Path(sys.executable).parent/'papermill'
    nb = Path(__file__).resolve().parents[1]/'nbs'/'reports'/'forecast.ipynb'
    p = subprocess.run([str(papermill), str(nb), str(tmp_path/'report.ipynb'), '-k', 'python3', '--cwd', str(tmp_path),
                        '-p', 'backtest_dir', 'runs/backtest_2022-23_2022-23'], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    assert 'mid-January RMSE: setrank' in (tmp_path/'report.ipynb').read_text()

# --- real data: the season in progress on 2024-01-15 ------------------------------------------------------------------

@pytest.mark.slow
def test_real_data_cut_at_2024_01_15(nba_dir, tmp_path):
    from setrank.data import read_folder
    full, _ = read_folder(nba_dir)
    write_folder(tables_before(full, '2024-01-15'), tmp_path/'cut')
    assert setrank('data', 'import', str(tmp_path/'cut'), cwd=tmp_path).returncode == 0
    r = setrank('forecast', '--data', 'db', '--sims', '2000', '--quiet', cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads((tmp_path/'runs'/'forecast_2023-24_2024-01-15'/'forecast.json').read_text())
    assert (doc['season'], doc['schedule']['source'], doc['schedule']['games_left']) == ('2023-24', 'schedule', 646)
    t = pd.DataFrame(doc['teams'])
    assert abs(t.projected_wins.sum() - 1230) < 1e-6 and abs(t.title_odds.sum() - 1) < 1e-9 and abs(t.playoff_odds.sum() - 16) < 1e-9
    assert (t.wins + t.losses).sum() == 2*(1230 - 646)
    run = sorted((tmp_path/'runs').glob('run_*'))[-1]
    assert json.loads((run/'manifest.json').read_text())['forecast_season'] == '2023-24'
