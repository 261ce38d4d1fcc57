"The simple baselines on the real NBA data reproduce the reference points measured in DESIGN.md §3."
import numpy as np, pandas as pd, pytest
from setrank.baselines import baselines_table, format_baselines_table, evaluate_baselines, BASELINES


def read_tables(path):
    return {'teams': pd.read_csv(path/'teams.csv'), 'team_games': pd.read_parquet(path/'team_games.parquet'),
            'player_games': pd.read_parquet(path/'player_games.parquet'),
            'player_dnp': pd.read_parquet(path/'player_dnp.parquet')}


@pytest.fixture(scope='module')
def table(nba_dir): return baselines_table(read_tables(nba_dir))


def value(table, baseline, target, horizon, metric='spearman', teams='league'):
    row = table[(table.baseline == baseline) & (table.target == target) & (table.horizon == horizon)
                & (table.metric == metric) & (table.teams == teams)]
    assert len(row) == 1, (baseline, target, horizon, metric, teams)
    return row.iloc[0]


@pytest.mark.parametrize('baseline,reference', [('point_diff', [0.669, 0.694, 0.653]), ('win_pct', [0.651, 0.665, 0.643])])
def test_rest_of_season_baselines_match_design_reference(table, baseline, reference):
    for h, ref in zip([0.25, 0.5, 0.75], reference):
        row = value(table, baseline, 'rest_of_season', h)
        assert row.n_seasons == 9
        assert abs(row['mean'] - ref) <= 0.02, (baseline, h, row['mean'], ref)


def test_playoff_series_won_vs_final_win_pct_among_playoff_teams(table):
    row = value(table, 'win_pct', 'playoff_outcome', 1.0, teams='playoff')
    assert row.n_seasons == 9 and abs(row['mean'] - 0.665) <= 0.02, row['mean']


def test_srs_lands_near_point_differential(table):
    for h in [0.25, 0.5, 0.75]:
        srs, pdiff = value(table, 'srs', 'rest_of_season', h)['mean'], value(table, 'point_diff', 'rest_of_season', h)['mean']
        assert abs(srs - pdiff) <= 0.02, (h, srs, pdiff)


def test_current_roster_ratings_beat_last_seasons_record(table):
    "The prior-season player ratings follow players to their current team; last season's win % cannot."
    for h in [0.25, 0.5, 0.75]:
        ratings = value(table, 'prior_player_rating', 'rest_of_season', h)
        record = value(table, 'prev_season_win_pct', 'rest_of_season', h)
        assert ratings.n_seasons == record.n_seasons == 8          # the first season has no previous season
        assert ratings['mean'] > record['mean'] + 0.03, (h, ratings['mean'], record['mean'])


def test_every_baseline_beats_the_random_order(table):
    for (target, teams, h, metric), g in table.groupby(['target', 'teams', 'horizon', 'metric']):
        rnd = g[g.baseline == 'random']['mean'].item()
        others = g[g.baseline != 'random'].set_index('baseline')['mean']
        assert set(others.index) == set(BASELINES)
        assert (others < rnd).all() if metric == 'rank_mae' else (others > rnd).all(), (target, teams, h, metric)
    assert value(table, 'random', 'rest_of_season', 0.5)['mean'] == 0.0


def test_table_is_tidy_and_prints(table):
    assert list(table.columns) == ['baseline', 'target', 'teams', 'horizon', 'metric', 'mean', 'sd', 'n_seasons']
    assert set(table.target) == {'rest_of_season', 'final_rank', 'playoff_outcome'}
    assert table['mean'].notna().all() and (table.n_seasons >= 8).all()
    assert 1.0 not in set(table[table.target == 'rest_of_season'].horizon)
    text = format_baselines_table(table)
    assert 'point_diff' in text and '±' in text and len(text.splitlines()) == 1 + len(table.groupby(
        ['target', 'teams', 'horizon', 'baseline']))
