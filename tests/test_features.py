"Features on the real NBA data: the leakage rule, season resets, rosters that follow trades, no dead columns."
import numpy as np, pandas as pd, pytest
from setrank.config import TrainingConfig
from setrank.targets import season_dates, horizon_as_of
from setrank.features import compute_features, build_features, FOUR_FACTOR_DEFAULTS

CFG = TrainingConfig()               # the default windows [15, 30] and roster size 12
SUBSET = ['2019-20', '2020-21']      # two seasons: the bubble, the short season, and the Harden trade
from setrank.data import BOX_SCORE_COLUMNS


def read_tables(path, seasons=None):
    "The canonical tables straight from the shared parquet files, optionally only some seasons."
    tables = {'teams': pd.read_csv(path/'teams.csv'), 'team_games': pd.read_parquet(path/'team_games.parquet'),
              'player_games': pd.read_parquet(path/'player_games.parquet'),
              'player_dnp': pd.read_parquet(path/'player_dnp.parquet')}
    for name in ['team_games', 'player_games', 'player_dnp']:
        t = tables[name]
        t['game_date'] = pd.to_datetime(t.game_date)
        if seasons is not None: tables[name] = t[t.season.isin(seasons)].reset_index(drop=True)
    return tables


@pytest.fixture(scope='module')
def subset(nba_dir): return read_tables(nba_dir, SUBSET)

@pytest.fixture(scope='module')
def subset_features(subset): return compute_features(subset, CFG)

@pytest.fixture(scope='module')
def all_features(nba_dir): return compute_features(read_tables(nba_dir), CFG)


def scramble_from(tables, as_of, seed):
    "Copy of `tables` where every game on or after `as_of` is changed: scores, box scores, who played, DNPs."
    rng = np.random.default_rng(seed)
    out = {k: v.copy() for k, v in tables.items()}
    tg = out['team_games']; late = (tg.game_date >= as_of).to_numpy()
    tg.loc[late, 'pts'] = rng.integers(70, 140, late.sum())
    tg.loc[late, 'opp_pts'] = rng.integers(70, 140, late.sum())
    tg.loc[late, 'win'] = tg.loc[late, 'pts'] > tg.loc[late, 'opp_pts']
    pg = out['player_games']; late = (pg.game_date >= as_of).to_numpy()
    pg.loc[late, 'player_id'] = rng.permutation(pg.loc[late, 'player_id'].to_numpy())   # new rosters, trades
    for c in BOX_SCORE_COLUMNS: pg.loc[late, c] = rng.integers(0, 20, late.sum()).astype('int16')
    pg.loc[late, 'minutes'] = rng.uniform(0, 48, late.sum())
    pg.loc[late, 'plus_minus'] = pd.array(rng.integers(-30, 30, late.sum()), dtype='Int16')
    out['player_games'] = pg[~late | (rng.random(len(pg)) > 0.1)]                      # and drop some rows
    dnp = out['player_dnp']; late = (dnp.game_date >= as_of).to_numpy()
    dnp.loc[late, 'player_id'] = rng.permutation(dnp.loc[late, 'player_id'].to_numpy())
    out['player_dnp'] = dnp
    return out


@pytest.mark.parametrize('season,h', [('2019-20', 0.25), ('2020-21', 0.5), ('2020-21', 0.9)])
def test_features_ignore_games_on_or_after_the_cut(subset, subset_features, season, h):
    as_of = horizon_as_of(season_dates(subset['team_games'])[season], h)
    fs, changed = subset_features, compute_features(scramble_from(subset, as_of, seed=int(h*100)), CFG)
    before = (fs.rows.as_of <= as_of).to_numpy()
    assert before.sum() > 30 and (fs.rows.as_of == as_of).sum() == 30
    for name in ['player_ids', 'player_x', 'minutes', 'mask']:
        np.testing.assert_array_equal(getattr(changed, name)[before], getattr(fs, name)[before], err_msg=name)
    np.testing.assert_array_equal(changed.team_x()[before], fs.team_x()[before])
    pd.testing.assert_frame_equal(changed.rows.loc[before, ['team_id', 'games_played']],
                                  fs.rows.loc[before, ['team_id', 'games_played']])
    at = (fs.rows.as_of == as_of).to_numpy()
    assert not np.allclose(changed.rows.y_rest_of_season[at], fs.rows.y_rest_of_season[at])  # the labels did change
    assert not np.array_equal(changed.player_x[~before], fs.player_x[~before])              # and later features too


def test_season_to_date_features_reset_at_each_seasons_first_game(all_features):
    fs, schema = all_features, all_features.schema
    first = (fs.rows.date_index == 0).to_numpy()
    assert first.sum() == 9*30
    opening = fs.rows[first]
    assert (opening.games_played == 0).all() and (opening.win_pct == 0.5).all()
    assert (opening.point_diff == 0).all() and (opening.srs == 0).all()
    for k, v in FOUR_FACTOR_DEFAULTS.items(): assert (opening[k] == v).all() and (opening[f'opp_{k}'] == v).all()
    season_player = [schema.player_features.index(c) for c in ['season_games', 'season_minutes_share']]
    real = ~fs.mask[first]
    assert real.sum() > 8*30*10                                   # rosters carried over the summer are not empty
    assert (fs.player_x[first][..., season_player][real] == 0).all()
    second = fs.rows[(fs.rows.date_index == 1).to_numpy()]
    assert set(second.games_played) == {0, 1} and (second.games_played == 1).sum() >= 2
    assert (fs.rows.elo[first & (fs.rows.season != '2015-16').to_numpy()] != 0).all()   # Elo carries over, regressed


def test_roster_is_the_team_of_each_players_latest_game(subset, subset_features):
    fs = subset_features
    slots = np.argwhere(~fs.mask)
    pairs = pd.DataFrame({'as_of': fs.rows.as_of.to_numpy()[slots[:, 0]], 'player_id': fs.player_ids[~fs.mask],
                          'team_id': fs.rows.team_id.to_numpy()[slots[:, 0]]}).sort_values('as_of')
    games = subset['player_games'][['game_date', 'player_id', 'team_id']].sort_values('game_date')
    games['game_date'] = games.game_date.astype('datetime64[ns]')
    latest = pd.merge_asof(pairs, games.rename(columns={'game_date': 'as_of', 'team_id': 'latest_team'}),
                           on='as_of', by='player_id', allow_exact_matches=False, direction='backward')
    assert (latest.latest_team == latest.team_id).all()


def test_traded_player_joins_new_team_only_after_his_first_game_for_it(subset, subset_features):
    fs, pg = subset_features, subset['player_games']
    first_for_bkn = pg[(pg.player_id == 'hardeja01') & (pg.team == 'BKN')].game_date.min()
    assert first_for_bkn == pd.Timestamp('2021-01-16')
    rows = fs.rows.assign(has_harden=(fs.player_ids == 'hardeja01').any(axis=1))
    season = rows[rows.season == '2020-21']
    bkn, hou = season[season.team == 'BKN'], season[season.team == 'HOU']
    assert not bkn[bkn.as_of <= first_for_bkn].has_harden.any()
    assert bkn[bkn.as_of > first_for_bkn].has_harden.all()        # injured for weeks later on, still on the roster
    assert hou[hou.as_of <= first_for_bkn].has_harden.all() and not hou[hou.as_of > first_for_bkn].has_harden.any()


def test_no_feature_is_constant_zero_for_teams_that_played(all_features):
    fs = all_features
    played = (fs.rows.games_played > 0).to_numpy()
    dead = [n for n, col in zip(fs.schema.team_features, fs.team_x()[played].T) if not (col != 0).any()]
    assert not dead, dead
    real = ~fs.mask & played[:, None]
    dead = [n for i, n in enumerate(fs.schema.player_features) if not (fs.player_x[..., i][real] != 0).any()]
    assert not dead, dead
    assert np.isfinite(fs.player_x).all() and np.isfinite(fs.team_x()).all()
    assert (fs.player_x[fs.mask] == 0).all() and (fs.minutes[fs.mask] == 0).all() and (fs.player_ids[fs.mask] == '').all()


def test_every_season_and_both_conferences_in_every_list(all_features, nba_dir):
    rows = all_features.rows
    assert sorted(rows.season.unique()) == [f'{y}-{(y + 1) % 100:02d}' for y in range(2015, 2024)]
    per_cut = rows.groupby(['season', 'as_of']).conference.value_counts().unstack()
    assert (per_cut.East == 15).all() and (per_cut.West == 15).all()
    cuts = rows.groupby('season').agg(cuts=('date_index', 'nunique'), n=('n_dates', 'first'))
    assert (cuts.cuts == cuts.n + 1).all()                        # every game date plus the end of the season
    end = (rows.date_index == rows.n_dates).to_numpy()
    assert rows.y_rest_of_season[end].isna().all()                # nothing left to play at the end of a season
    tg = read_tables(nba_dir)['team_games'].query('season_type == "regular"')
    last_game = tg.groupby(['season', 'team_id']).game_date.max().astype('datetime64[ns]').rename('last_game')
    done = rows.join(last_game, on=['season', 'team_id']).eval('as_of > last_game').to_numpy()
    np.testing.assert_array_equal(rows.y_rest_of_season.isna().to_numpy(), done)   # unknown exactly when none remain
    restart = rows[(rows.as_of == '2020-07-30').to_numpy()]
    assert restart.y_rest_of_season.isna().sum() == 8             # the 8 teams left out of the 2020 bubble
    assert rows.y_final_rank.notna().all() and (rows.y_playoff_outcome >= 0).groupby(
        [rows.season, rows.as_of]).sum().eq(16).all()


def test_cached_features_equal_a_fresh_build(subset, subset_features, tmp_path):
    first = build_features(subset, CFG, cache_dir=tmp_path)
    again = build_features(subset, CFG, cache_dir=tmp_path)
    assert len(list(tmp_path.iterdir())) == 1
    pd.testing.assert_frame_equal(again.rows, subset_features.rows)
    np.testing.assert_array_equal(again.player_x, subset_features.player_x)
    np.testing.assert_array_equal(again.player_ids, first.player_ids)
