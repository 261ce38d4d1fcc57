"The data layer on the real box scores: import counts, standings, bad inputs that must fail cleanly, nba_api payloads."
import hashlib, json, os, shutil, subprocess, sys
from pathlib import Path
from urllib.parse import urlparse
import pandas as pd
import pytest
import requests
import setrank.data as data
from setrank import synthetic
from setrank.config import SetrankError
from setrank.data import (SCHEMA, PLAY_IN_CUP_TABLE, import_folder, load_tables, data_fingerprint, store_info,
                          write_store, tables_fingerprint, validate_tables)
from setrank.nba_stats import game_log_frame, tables_from_game_logs, fetch_seasons, cache_path

FIXTURES = Path(__file__).parent/'fixtures'/'nba_api'

# Player-game rows (games) per season and season type, from ../shared/data/nba/SOURCE.md.
SOURCE_COUNTS = {
    '2015-16': ((26078, 1230), (1900, 86)), '2016-17': ((26138, 1230), (1737, 79)),
    '2017-18': ((26107, 1230), (1729, 82)), '2018-19': ((26101, 1230), (1761, 82)),
    '2019-20': ((22393, 1059), (1694, 83)), '2020-21': ((23054, 1080), (1864, 85)),
    '2021-22': ((26039, 1230), (1891, 87)), '2022-23': ((25894, 1230), (1728, 84)),
    '2023-24': ((26400, 1230), (1685, 82))}
CHAMPIONS = ['CLE', 'GSW', 'GSW', 'TOR', 'LAL', 'MIL', 'GSW', 'DEN', 'BOS']

def sha256(path:Path)->str: return hashlib.sha256(Path(path).read_bytes()).hexdigest()

# ---------------------------------------------------------------------------------------------------------------
# The real data, imported once per module

@pytest.fixture(scope='module')
def real_db(nba_dir, tmp_path_factory):
    db = tmp_path_factory.mktemp('real')/'setrank.duckdb'
    summary = import_folder(nba_dir, db)
    return db, summary

@pytest.fixture(scope='module')
def real_tables(real_db):
    return load_tables(real_db[0])

def test_real_import_has_source_row_counts_per_season_and_type(real_db):
    db, summary = real_db
    assert summary.rows == {'player_dnp': 51399, 'player_games': 244193, PLAY_IN_CUP_TABLE: 536,
                            'team_games': 23050, 'teams': 30}
    info = store_info(db).set_index(['season', 'season_type'])
    for season, ((reg_rows, reg_games), (po_rows, po_games)) in SOURCE_COUNTS.items():
        assert tuple(info.loc[(season, 'regular'), ['player_games', 'games']]) == (reg_rows, reg_games), season
        assert tuple(info.loc[(season, 'playoffs'), ['player_games', 'games']]) == (po_rows, po_games), season
    assert (info.team_games == 2*info.games).all()
    # play-in and cup-final player rows come from the extra table, their games from team_games
    assert info.xs('play_in', level='season_type').player_games.sum() + info.loc[('2023-24', 'cup_final'), 'player_games'] == 536

def test_2023_24_standings_from_the_store_put_bos_first_at_64_18(real_tables):
    tg = real_tables['team_games']
    reg = tg[(tg.season == '2023-24') & (tg.season_type == 'regular')]
    standings = reg.groupby('team').win.agg(wins='sum', games='size').assign(losses=lambda d: d.games - d.wins)
    standings = standings.sort_values('wins', ascending=False)
    assert standings.index[0] == 'BOS'
    assert tuple(standings.loc['BOS', ['wins', 'losses']]) == (64, 18)
    assert (standings.games == 82).all() and len(standings) == 30

def test_champions_have_16_playoff_wins_and_won_the_last_game(real_tables):
    tg = real_tables['team_games']
    po = tg[tg.season_type == 'playoffs']
    for season, champion in zip(SOURCE_COUNTS, CHAMPIONS):
        games = po[po.season == season]
        wins = games.groupby('team').win.sum()
        assert list(wins[wins == 16].index) == [champion], season
        last = games[games.game_date == games.game_date.max()]
        assert last.loc[last.win, 'team'].tolist() == [champion], season

def test_loaded_tables_have_the_canonical_columns_and_dtypes(real_tables):
    for name, schema in SCHEMA.items():
        df = real_tables[name]
        assert {c: str(t) for c, t in df.dtypes.items()} == schema, name
    pg = real_tables['player_games']
    assert (pg.game_date == pg.game_date.dt.normalize()).all()
    assert pg.game_date.min() == pd.Timestamp('2015-10-27') and pg.game_date.max() == pd.Timestamp('2024-06-17')
    assert pg.plus_minus.isna().sum() == 230 and pg.player_id.nunique() <= 1349
    assert str(real_tables[PLAY_IN_CUP_TABLE].plus_minus.dtype) == 'Int16'

def test_fingerprint_is_content_based_and_stable_across_processes(real_db, real_tables):
    db, summary = real_db
    assert data_fingerprint(db) == summary.fingerprint == tables_fingerprint(real_tables)
    code = 'import sys; from setrank.data import *; print(tables_fingerprint(load_tables(sys.argv[1])))'
    for seed in ('1', '2'):
        out = subprocess.run([sys.executable, '-c', code, str(db)], capture_output=True, text=True,
                             env={**os.environ, 'PYTHONHASHSEED': seed}, check=True).stdout.strip()
        assert out == summary.fingerprint
    changed = real_tables | {'teams': real_tables['teams'].assign(name=lambda d: d.name.str.upper())}
    assert tables_fingerprint(changed) != summary.fingerprint

# ---------------------------------------------------------------------------------------------------------------
# A small sample of the real files, and inputs that must fail with one clear line and leave the store untouched

@pytest.fixture(scope='module')
def sample_dir(nba_dir, tmp_path_factory):
    "The real files cut to the first two nights of 2023-24 (13 games)."
    out = tmp_path_factory.mktemp('sample')
    cut = lambda df: df[(df.season == '2023-24') & (df.game_date < pd.Timestamp('2023-10-26').date())]
    for name in ['team_games', 'player_games', 'player_dnp']:
        cut(pd.read_parquet(nba_dir/f'{name}.parquet', filters=[('season', '=', '2023-24')])).to_parquet(out/f'{name}.parquet')
    shutil.copy(nba_dir/'teams.csv', out/'teams.csv')
    return out

@pytest.fixture
def work(sample_dir, tmp_path):
    "A fresh copy of the sample folder and a store already holding it."
    folder = tmp_path/'input'
    shutil.copytree(sample_dir, folder)
    db = tmp_path/'db'/'setrank.duckdb'
    import_folder(sample_dir, db)
    return folder, db

def _edit(folder:Path, name:str, change):
    path = folder/f'{name}.parquet'
    change(pd.read_parquet(path)).to_parquet(path)

def _first_player_row_plus(df, **delta):
    df = df.copy()
    for col, d in delta.items(): df.loc[df.index[0], col] += d
    return df

BAD_INPUTS = {
    'missing_column': (lambda f: _edit(f, 'player_games', lambda d: d.drop(columns='minutes')),
                       ['player_games.parquet', "missing column 'minutes'"]),
    'wrong_dtype': (lambda f: _edit(f, 'team_games', lambda d: d.assign(pts=d.pts.astype(str))),
                    ['team_games.parquet', "column 'pts' should be whole numbers (int64), got str", 'game_id=']),
    'fractional_points': (lambda f: _edit(f, 'player_games', lambda d: d.assign(pts=d.pts + 0.5)),
                          ['player_games.parquet', "column 'pts'", 'fractions']),
    'duplicate_rows': (lambda f: _edit(f, 'player_games', lambda d: pd.concat([d, d.iloc[[5]]])),
                       ['player_games.parquet', 'duplicate rows for (game_id, player_id)', 'game_id=', 'player_id=']),
    'corrupt_parquet': (lambda f: (f/'player_games.parquet').write_bytes(b'PAR1 this is not parquet'),
                        ['player_games.parquet', 'not a readable parquet file']),
    'truncated_parquet': (lambda f: (f/'team_games.parquet').write_bytes((f/'team_games.parquet').read_bytes()[:500]),
                          ['team_games.parquet', 'not a readable parquet file']),
    'unknown_team_id': (lambda f: (f/'teams.csv').write_text(''.join(l for l in (f/'teams.csv').read_text().splitlines(True)
                                                                   if ',DEN,' not in l)),
                        ['team_games.parquet', "column 'team_id' has team ids not in", 'teams.csv', 'team_id=1610612743']),
    'points_do_not_add_up': (lambda f: _edit(f, 'player_games', lambda d: _first_player_row_plus(d, pts=2)),
                             ['player_games.parquet', "player points do not add up to the team's pts", 'team_games.parquet',
                              'game_id=', "but its players' pts sum to"]),
    'negative_minutes': (lambda f: _edit(f, 'player_games', lambda d: _first_player_row_plus(d, minutes=-99.0)),
                         ['player_games.parquet', "column 'minutes' has negative values", 'player_id=', 'minutes=']),
    'bad_season': (lambda f: _edit(f, 'team_games', lambda d: d.assign(season='2023-2024')),
                   ['team_games.parquet', "column 'season'", "'2023-2024'"]),
    'missing_table': (lambda f: (f/'player_dnp.parquet').unlink(), ['missing table file player_dnp.parquet']),
    'empty_csv': (lambda f: (f/'teams.csv').write_text(''), ['teams.csv', 'not a readable CSV file']),
    'empty_folder': (lambda f: [p.unlink() for p in f.iterdir()], ['no table files']),
}

@pytest.mark.parametrize('case', BAD_INPUTS)
def test_bad_input_fails_with_one_clear_line_and_leaves_the_store_unchanged(work, case):
    folder, db = work
    break_it, expected = BAD_INPUTS[case]
    break_it(folder)
    before, files_before = sha256(db), sorted(p.name for p in db.parent.iterdir())
    with pytest.raises(SetrankError) as err:
        import_folder(folder, db)
    msg = str(err.value)
    assert '\n' not in msg, msg
    for part in expected: assert part in msg, f'{part!r} not in {msg!r}'
    assert sha256(db) == before
    assert sorted(p.name for p in db.parent.iterdir()) == files_before  # no temp files left behind

def test_a_good_import_replaces_the_store_atomically(work, nba_dir):
    folder, db = work
    old = data_fingerprint(db)
    _edit(folder, 'player_dnp', lambda d: d.iloc[:3])
    summary = import_folder(folder, db)
    assert summary.rows['player_dnp'] == 3 and data_fingerprint(db) == summary.fingerprint != old
    assert sorted(p.name for p in db.parent.iterdir()) == ['setrank.duckdb']

def test_csv_folder_imports_to_the_same_content_as_parquet(work, tmp_path):
    folder, db = work
    csv = tmp_path/'csv'; csv.mkdir()
    for p in folder.glob('*.parquet'): pd.read_parquet(p).to_csv(csv/f'{p.stem}.csv', index=False)
    shutil.copy(folder/'teams.csv', csv/'teams.csv')
    assert import_folder(csv, tmp_path/'csv.duckdb').fingerprint == data_fingerprint(db)

def test_extra_tables_are_stored_and_loaded_with_the_rest(work, tmp_path):
    folder, db = work
    tables = load_tables(db)
    teams = tables['teams'].team_id
    truth = {'truth_team_strength': pd.DataFrame({'season': '2023-24', 'as_of': pd.Timestamp('2023-10-24'),
                                                  'team_id': teams, 'strength': range(len(teams))}),
             'truth_player_impact': pd.DataFrame({'player_id': ['a', 'b'], 'offense': [1.0, -1.0]})}
    out = tmp_path/'synthetic.duckdb'
    summary = write_store(tables | truth, out, 'synthetic')
    back = load_tables(out)
    assert list(back)[:4] == list(SCHEMA) and set(truth) <= set(back)
    pd.testing.assert_frame_equal(back['truth_player_impact'], truth['truth_player_impact'].astype({'player_id': 'str'}))
    assert back['truth_team_strength'].as_of.dtype == 'datetime64[us]'
    assert tables_fingerprint(back) == summary.fingerprint
    with pytest.raises(SetrankError, match="truth_team_strength.*team_id"):
        write_store(tables | {'truth_team_strength': truth['truth_team_strength'].assign(team_id=42)}, out, 'synthetic')

def test_synthetic_league_round_trips_through_the_store(tmp_path):
    tables = synthetic.synth_league(n_seasons=3, seed=7)
    summary = write_store(tables, tmp_path/'synthetic.duckdb', 'synthetic')
    back = load_tables(tmp_path/'synthetic.duckdb')
    assert {t for t in tables if t.startswith('truth_')} <= set(back) and set(back) == set(tables)
    assert tables_fingerprint(back) == summary.fingerprint == data_fingerprint(tmp_path/'synthetic.duckdb')
    for name, schema in SCHEMA.items():
        assert {c: str(t) for c, t in back[name].dtypes.items()} == schema, name
        assert len(back[name]) == len(tables[name])

# ---------------------------------------------------------------------------------------------------------------
# nba_api: recorded stats.nba.com LeagueGameLog payloads (tests/fixtures/nba_api)

def _fixture_tables():
    logs = {kind: pd.concat([game_log_frame(json.loads(p.read_text()), p.name)
                             for p in sorted(FIXTURES.glob(f'leaguegamelog_*_{kind}.json'))], ignore_index=True)
            for kind in ('team', 'player')}
    return tables_from_game_logs(logs['team'], logs['player'])

def test_game_log_payloads_map_to_valid_tables_that_agree_with_the_real_box_scores(nba_dir):
    tables = validate_tables(_fixture_tables(), 'fixtures')
    tg, pg = tables['team_games'], tables['player_games']
    assert tg.groupby('season_type').game_id.nunique().to_dict() == {'playoffs': 2, 'regular': 2}
    assert set(tg.season) == {'2023-24'} and tg.game_id.str.match(r'^00[24]2300\d{3}$').all()
    finals5 = tg[tg.game_id == '0042300405'].set_index('team')
    assert finals5.loc['BOS', ['is_home', 'win', 'pts', 'opp_pts', 'opponent']].tolist() == [True, True, 106, 88, 'DAL']
    assert tg.loc[tg.team == 'LAL', ['opponent', 'is_home', 'win']].values.tolist() == [['DEN', False, False]]
    assert pg.player_id.str.match(r'^nba:\d+$').all() and (pg.player_id == 'nba:' + pg.nba_player_id.astype(str)).all()
    assert len(tables[PLAY_IN_CUP_TABLE]) == 0 and len(tables['player_dnp']) == 0
    # every player's points and rebounds equal the real data's for the same game and person id
    real = pd.read_parquet(nba_dir/'player_games.parquet', filters=[('season', '=', '2023-24')])
    real = real.assign(game_date=pd.to_datetime(real.game_date))
    real = real[real.game_date.isin(pg.game_date.unique())]
    merged = pg.merge(real, on=['nba_player_id', 'game_date'], suffixes=('', '_real'))
    assert len(merged) == len(pg)
    assert (merged.pts == merged.pts_real).all() and (merged.reb == merged.reb_real).all()
    assert (merged.team_id == merged.team_id_real).all() and (merged.is_home == merged.is_home_real).all()
    assert ((merged.minutes - merged.minutes_real).abs() <= 0.5).all()

def test_fetch_seasons_uses_cached_payloads_without_the_network(tmp_path):
    cache = tmp_path/'cache'
    shutil.copytree(FIXTURES, cache)
    def no_network(*args): raise AssertionError(f'network call {args}')
    summary = fetch_seasons('2023-24', tmp_path/'api.duckdb', cache, fetcher=no_network)
    assert summary.rows['team_games'] == 8 and summary.rows['player_games'] == len(_fixture_tables()['player_games'])
    info = store_info(tmp_path/'api.duckdb')
    assert info[['season_type', 'games']].values.tolist() == [['regular', 2], ['playoffs', 2]]

def test_fetch_seasons_paces_requests_retries_with_backoff_and_caches(tmp_path, monkeypatch):
    sleeps, calls = [], []
    monkeypatch.setattr(data.time, 'sleep', lambda s: sleeps.append(s))
    def flaky(season, season_type, kind):
        calls.append((season, season_type, kind))
        if len(calls) <= 2: raise ConnectionError('Read timed out. (read timeout=30)')
        return json.loads(cache_path(FIXTURES, season, season_type, kind).read_text())
    cache = tmp_path/'cache'
    summary = fetch_seasons(['2023-24'], tmp_path/'api.duckdb', cache, pause_s=0.6, backoff_s=2.0, fetcher=flaky)
    assert len(calls) == 6 and summary.rows['team_games'] == 8
    assert [s for s in sleeps if s >= 1] == [2.0, 4.0]           # exponential backoff after each failure
    assert sum(0 < s <= 0.6 for s in sleeps) >= 3                # later requests wait out the pause
    assert sorted(p.name for p in cache.iterdir()) == sorted(p.name for p in FIXTURES.glob('*.json'))
    def refused(*args): raise ConnectionError('Connection refused')
    before = sha256(tmp_path/'api.duckdb')
    with pytest.raises(SetrankError, match=r"season=2022-23 season_type='Regular Season' player_or_team=T: failed after 3 tries \(ConnectionError"):
        fetch_seasons(['2022-23'], tmp_path/'api.duckdb', cache, retries=3, fetcher=refused)
    assert sha256(tmp_path/'api.duckdb') == before

class _RecordedResponse:
    "What `requests` returns, holding a recorded stats.nba.com response."
    def __init__(self, url, text): self.url, self.status_code, self.text = url, 200, text

def test_nba_api_requests_answered_by_recorded_responses_map_to_the_store(tmp_path, monkeypatch):
    """The real fetch path, offline: nba_api's LeagueGameLog builds each request, its HTTP call gets the recorded
    response (tests/fixtures/nba_api), nba_api parses it, setrank maps it and stores it."""
    asked = []
    def recorded(session, url, params, **kwargs):
        p = dict(params)
        asked.append((urlparse(url).path, p['Season'], p['SeasonType'], p['PlayerOrTeam']))
        kind = {'T': 'team', 'P': 'player'}[p['PlayerOrTeam']]
        slug = {'Regular Season': 'regular', 'Playoffs': 'playoffs'}[p['SeasonType']]
        return _RecordedResponse(url, (FIXTURES/f'leaguegamelog_{p["Season"]}_{slug}_{kind}.json').read_text())
    monkeypatch.setattr(requests.Session, 'get', recorded)
    summary = fetch_seasons('2023-24', tmp_path/'api.duckdb', tmp_path/'cache', pause_s=0)
    assert asked == [('/stats/leaguegamelog', '2023-24', season_type, kind)
                     for season_type in ('Regular Season', 'Playoffs') for kind in ('T', 'P')]
    tables = load_tables(tmp_path/'api.duckdb')
    tg, pg = tables['team_games'], tables['player_games']
    assert summary.rows == {'teams': 30, 'team_games': 8, 'player_games': len(pg), 'player_dnp': 0, PLAY_IN_CUP_TABLE: 0}
    assert tg.groupby('season_type').game_id.nunique().to_dict() == {'playoffs': 2, 'regular': 2}
    finals5 = tg[tg.game_id == '0042300405'].set_index('team')
    assert finals5.loc['BOS', ['is_home', 'win', 'pts', 'opp_pts', 'opponent']].tolist() == [True, True, 106, 88, 'DAL']
    assert tg.loc[tg.team == 'LAL', ['opponent', 'is_home', 'win', 'game_date']].values.tolist() == [
        ['DEN', False, False, pd.Timestamp('2023-10-24')]]
    assert (pg.groupby(['game_id', 'team_id']).pts.sum() == tg.set_index(['game_id', 'team_id']).pts).all()
    assert pg.player_id.str.match(r'^nba:\d+$').all() and (pg.player_id == 'nba:' + pg.nba_player_id.astype(str)).all()
    assert sorted(p.name for p in (tmp_path/'cache').iterdir()) == sorted(p.name for p in FIXTURES.glob('*.json'))

def test_fetch_without_nba_api_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, 'nba_api.stats.endpoints', None)   # as if nba_api were not installed
    with pytest.raises(SetrankError, match='pip install nba_api'):
        fetch_seasons('2023-24', tmp_path/'api.duckdb', tmp_path/'empty_cache')

def test_malformed_payload_is_rejected_before_it_is_cached(tmp_path):
    bad = json.loads((FIXTURES/'leaguegamelog_2023-24_regular_team.json').read_text())
    bad['resultSets'][0]['rowSet'][0][6] = 'LAL at DEN'
    cache = tmp_path/'cache'; shutil.copytree(FIXTURES, cache)
    (cache/'leaguegamelog_2023-24_regular_team.json').write_text(json.dumps(bad))
    with pytest.raises(SetrankError, match="MATCHUP 'LAL at DEN'"):
        fetch_seasons('2023-24', tmp_path/'api.duckdb', cache)
    with pytest.raises(SetrankError, match='no LeagueGameLog result set'):
        fetch_seasons('2022-23', tmp_path/'api.duckdb', cache, retries=1, fetcher=lambda *a: {'message': 'error'})
    assert not list(cache.glob('leaguegamelog_2022-23_*'))
