"The synthetic league looks like the NBA, keeps every box-score identity, and its ground truth is real and usable."
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pandas.testing import assert_frame_equal

from setrank.config import SetrankError
from setrank.synthetic import synth_league, describe_league, TEAMS, GAME_DATE_DTYPE

SEASONS = 3


@pytest.fixture(scope='module')
def league():
    return synth_league(n_seasons=SEASONS, seed=11)


@pytest.fixture(scope='module')
def regular(league):
    tg = league['team_games']
    return tg[tg.season_type == 'regular']


@pytest.fixture(scope='module')
def team_minutes(league):
    "Per team-game: total seconds played and the number of overtimes implied by the game's length."
    pg = league['player_games']
    out = pg.groupby(['game_id', 'team_id']).agg(seconds=('seconds', 'sum'), longest=('seconds', 'max'),
                                                 pts=('pts', 'sum'), plus_minus=('plus_minus', 'sum'),
                                                 starters=('starter', 'sum')).reset_index()
    out['overtimes'] = (out.seconds - 14400)//1500
    return out


def test_scoring_margins_and_home_edge_look_like_the_nba(league):
    summary = describe_league(league)
    assert len(summary) == SEASONS
    assert summary.pts_per_team_game.between(100, 120).all()
    assert summary.margin_sd.between(12.5, 15.5).all()
    assert summary.home_win_pct.between(0.52, 0.64).all()
    assert summary.overtime_share.between(0.02, 0.10).all()
    assert summary.strength_sd.between(3, 7).all()


def test_team_minutes_are_240_plus_25_per_overtime(team_minutes):
    assert ((team_minutes.seconds - 14400) % 1500 == 0).all()
    assert (team_minutes.overtimes >= 0).all() and (team_minutes.overtimes > 0).any()
    both = team_minutes.groupby('game_id').overtimes.agg(['min', 'max'])
    assert (both['min'] == both['max']).all()                       # both teams played the same game length
    assert (team_minutes.longest <= 60*(48 + 5*team_minutes.overtimes)).all()
    assert (team_minutes.starters == 5).all()


def test_box_score_identities_hold(league):
    pg = league['player_games']
    assert (pg.pts == 2*pg.fgm + pg.fg3m + pg.ftm).all()
    assert (pg.reb == pg.oreb + pg.dreb).all()
    assert ((pg.fgm <= pg.fga) & (pg.fg3m <= pg.fg3a) & (pg.fg3m <= pg.fgm) & (pg.fg3a <= pg.fga)
            & (pg.ftm <= pg.fta) & (pg.pf <= 6)).all()
    assert np.allclose(pg.minutes, pg.seconds/60) and (pg.seconds > 0).all()
    assert pg.plus_minus.notna().all()


def test_team_points_equal_player_points_and_scores_agree(league, team_minutes):
    tg = league['team_games'].merge(team_minutes, on=['game_id', 'team_id'], suffixes=('', '_players'))
    assert len(tg) == len(league['team_games'])
    assert (tg.pts == tg.pts_players).all()
    assert (tg.plus_minus == 5*(tg.pts - tg.opp_pts)).all()
    opp = tg.merge(tg[['game_id', 'team_id', 'pts']], left_on=['game_id', 'opponent_team_id'],
                   right_on=['game_id', 'team_id'], suffixes=('', '_opp'))
    assert (opp.opp_pts == opp.pts_opp).all()
    assert (tg.win == (tg.pts > tg.opp_pts)).all() and (tg.pts != tg.opp_pts).all()
    per_game = tg.groupby('game_id').agg(rows=('team_id', 'size'), wins=('win', 'sum'), homes=('is_home', 'sum'))
    assert (per_game == 1).drop(columns='rows').all().all() and (per_game.rows == 2).all()


def test_player_rows_are_unique_and_rosters_complete(league):
    pg, dnp = league['player_games'], league['player_dnp']
    assert not pg.duplicated(['game_id', 'player_id']).any()
    assert not dnp.duplicated(['game_id', 'player_id']).any()
    listed = pd.concat([pg[['game_id', 'team_id', 'player_id']], dnp[['game_id', 'team_id', 'player_id']]])
    assert not listed.duplicated(['game_id', 'player_id']).any()     # nobody both played and did not play
    assert (listed.groupby(['game_id', 'team_id']).size() == 15).all()
    assert pg.groupby(['game_id', 'team_id']).size().between(8, 15).all()


def test_schedule_is_82_games_41_at_home_one_game_a_day(regular):
    per_team = regular.groupby(['season', 'team_id']).agg(games=('game_id', 'size'), home=('is_home', 'sum'))
    assert (per_team.games == 82).all() and (per_team.home == 41).all()
    assert not regular.duplicated(['team_id', 'game_date']).any()
    assert regular.game_date.dt.month.isin([10, 11, 12, 1, 2, 3, 4]).all()
    home = regular[regular.is_home]
    bref = {t[0]: t[5] for t in TEAMS}
    expected = home.game_date.dt.strftime('%Y%m%d') + '0' + home.team_id.map(bref)
    assert (home.game_id == expected).all()


def test_playoff_bracket_is_valid(league, regular):
    tg = league['team_games']
    conference = {t[0]: t[3] for t in TEAMS}
    win_pct = regular.groupby(['season', 'team_id']).win.mean()
    for season, po in tg[tg.season_type == 'playoffs'].groupby('season'):
        assert po.game_date.min() > regular[regular.season == season].game_date.max()
        teams = set(po.team_id)
        assert len(teams) == 16 and sum(conference[t] == 'East' for t in teams) == 8
        for conf in ('East', 'West'):                                     # the top eight by record got in
            pct = win_pct[season][[t for t in win_pct[season].index if conference[t] == conf]]
            assert pct[list(teams & set(pct.index))].min() >= pct.drop(list(teams & set(pct.index))).max()
        po = po.assign(pair=[tuple(sorted(p)) for p in zip(po.team_id, po.opponent_team_id)])
        record = regular[regular.season == season].assign(diff=lambda d: d.pts - d.opp_pts).groupby('team_id').agg(
            win_pct=('win', 'mean'), diff=('diff', 'mean'))
        openers = po[po.is_home].sort_values('game_date').groupby('pair').head(1)       # game 1 of each series
        host, guest = record.loc[openers.team_id].to_numpy(), record.loc[openers.opponent_team_id].to_numpy()
        assert all(tuple(h) >= tuple(g) for h, g in zip(host, guest))                   # home court: better record
        wins = po[po.win].groupby(['pair', 'team_id']).size().unstack(fill_value=0)
        assert len(wins) == 15
        assert (wins.max(axis=1) == 4).all() and (np.sort(wins.to_numpy(), 1)[:, -2] < 4).all()
        series_won = (wins == 4).sum()
        assert sorted(series_won[series_won > 0].tolist()) == [1]*4 + [2]*2 + [3] + [4]   # 8 first-round winners...
        assert (series_won == 4).sum() == 1                                                # ...one champion


def test_traded_players_switch_teams_at_first_game_for_new_team(league):
    trades, tg = league['truth_trades'], league['team_games']
    assert len(trades) >= SEASONS*5*2
    cols = ['season', 'game_date', 'team_id', 'player_id']
    listed = pd.concat([league['player_games'][cols], league['player_dnp'][cols]])   # on a box score: played or DNP
    for t in trades.itertuples():
        own = trades[(trades.season == t.season) & (trades.player_id == t.player_id)].trade_date
        start = own[own < t.trade_date].max() if (own < t.trade_date).any() else pd.Timestamp.min
        end = own[own > t.trade_date].min() if (own > t.trade_date).any() else pd.Timestamp.max
        rows = listed[(listed.season == t.season) & (listed.player_id == t.player_id)]
        before = rows[rows.game_date.between(start, t.trade_date, inclusive='left')]
        after = rows[rows.game_date.between(t.trade_date, end, inclusive='left')]
        assert (before.team_id == t.from_team_id).all() and (after.team_id == t.to_team_id).all()
        new_team = tg[(tg.season == t.season) & (tg.team_id == t.to_team_id)
                      & tg.game_date.between(t.trade_date, end, inclusive='left')]
        assert sorted(after.game_date) == sorted(new_team.game_date)   # every new-team game from the next one
    pg = league['player_games']
    moved = pg[pg.season_type == 'regular'].groupby(['season', 'player_id']).team_id.nunique()
    assert set(moved[moved > 1].index) <= set(zip(trades.season, trades.player_id))


def test_dnp_rows_exist_with_real_reasons(league):
    dnp = league['player_dnp']
    assert set(dnp.dnp_reason) == {'Did Not Play', 'Not With Team'}
    assert (dnp.season_type == 'regular').any() and (dnp.season_type == 'playoffs').any()
    assert len(dnp)/len(league['team_games']) > 1


def test_truth_tables_are_present_and_sane(league, regular):
    impact = league['truth_player_impact']
    assert (impact.groupby('season').size() == 450).all() and not impact.duplicated(['season', 'player_id']).any()
    assert np.allclose(impact.impact, impact.off_impact + impact.def_impact)
    assert impact.impact.max() > 4 and impact.impact.median() < 0         # a few stars, most players below average
    assert (impact.groupby(['season', 'team_id']).size() == 15).all()
    assert impact.groupby(['season', 'team_id']).expected_minutes.sum().round(6).eq(240).all()
    strength = league['truth_team_strength']
    assert np.allclose(strength.strength, strength.off_strength + strength.def_strength)
    assert (strength.groupby(['season', 'game_date']).size() == 30).all()
    assert set(league['team_games'].game_date) == set(strength.game_date)
    mean = strength[strength.season_type == 'regular'].groupby(['season', 'team_id']).strength.mean()
    both = pd.DataFrame(dict(strength=mean, win_pct=regular.groupby(['season', 'team_id']).win.mean()))
    for season, d in both.groupby('season'):
        assert d.strength.corr(d.win_pct, method='spearman') > 0.7, season


def test_margins_follow_truth_strength_plus_home_advantage(league, regular):
    strength = league['truth_team_strength'][['game_date', 'team_id', 'strength']]
    home = regular[regular.is_home].merge(strength, on=['game_date', 'team_id'])
    home = home.merge(strength.rename(columns={'team_id': 'opponent_team_id', 'strength': 'opp_strength'}),
                      on=['game_date', 'opponent_team_id'])
    slope, intercept = np.polyfit(home.strength - home.opp_strength, home.pts - home.opp_pts, 1)
    assert 0.85 < slope < 1.15 and 1.5 < intercept < 3.5


def test_stars_score_more_and_have_better_plus_minus(league):
    pg = league['player_games']
    per = pg.groupby(['season', 'player_id']).agg(pts=('pts', 'sum'), pm=('plus_minus', 'sum'),
                                                  minutes=('minutes', 'sum'))
    per = per[per.minutes > 500].join(league['truth_player_impact'].set_index(['season', 'player_id']))
    assert per.off_impact.corr(per.pts/per.minutes, method='spearman') > 0.3
    assert per.impact.corr(per.pm/per.minutes, method='spearman') > 0.3
    assert per.impact.corr(per.minutes, method='spearman') > 0.4


def test_same_seed_same_tables_different_seed_different():
    a, b, c = synth_league(1, seed=5), synth_league(1, seed=5), synth_league(1, seed=6)
    for name in a: assert_frame_equal(a[name], b[name])
    assert not a['team_games'].equals(c['team_games'])
    assert not a['truth_player_impact'].impact.equals(c['truth_player_impact'].impact)


def test_first_season_and_bad_arguments():
    league = synth_league(1, seed=1, first_season='2010-11')
    assert set(league['team_games'].season) == {'2010-11'}
    assert league['team_games'].game_date.min() == pd.Timestamp('2010-10-19')
    with pytest.raises(SetrankError, match='2010-2011'): synth_league(1, first_season='2010-2011')
    with pytest.raises(SetrankError, match='n_seasons'): synth_league(0)


def _real_dtypes(path):
    "Column dtypes pandas gives a real parquet file (read from its first rows), game_date as loaded in pandas."
    batch = next(pq.ParquetFile(path).iter_batches(batch_size=5))
    dtypes = pa.Table.from_batches([batch]).to_pandas().dtypes
    dtypes['game_date'] = np.dtype(GAME_DATE_DTYPE)
    return dtypes


@pytest.mark.parametrize('name', ['team_games', 'player_games', 'player_dnp'])
def test_columns_and_dtypes_match_real_data(league, nba_dir, name):
    real = _real_dtypes(nba_dir/f'{name}.parquet')
    ours = league[name].dtypes
    assert list(ours.index) == list(real.index)
    assert ours.to_dict() == real.to_dict()


def test_teams_match_real_teams(league, nba_dir):
    assert_frame_equal(league['teams'], pd.read_csv(nba_dir/'teams.csv'))
