"""Issue #19: bad input, bad configs, kill -9 and hostile names lose nothing; a broken run folder says which file.

Everything goes through the `setrank` command, as a user runs it. Bad data is imported on top of a store that
already holds the tiny league (tests/fixtures/tiny_league, the league of the data notebook), and the store must come
out byte for byte as it went in. Sweep kill -9 / resume and two workers on one study are in tests/test_sweep.py."""
import hashlib, json, os, shutil, signal, subprocess, sys, time
from pathlib import Path

import pandas as pd
import pytest

from setrank.config import load_config
from setrank.data import Store, data_fingerprint, import_folder, load_tables, write_store
from setrank.synthetic import synth_league

SETRANK = str(Path(sys.executable).parent/'setrank')
TINY = Path(__file__).parent/'fixtures'/'tiny_league'

def setrank(*args, cwd=None, timeout=300)->subprocess.CompletedProcess:
    return subprocess.run([SETRANK, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout)

def sha256(path:Path)->str: return hashlib.sha256(Path(path).read_bytes()).hexdigest()

def assert_one_clear_line(r:subprocess.CompletedProcess, *parts:str):
    "Exit status 2, one `setrank: error:` line on stderr holding every part, no traceback."
    assert r.returncode == 2, (r.returncode, r.stdout[-500:], r.stderr[-2000:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('setrank: error: '), r.stderr
    assert 'Traceback' not in r.stderr
    for part in parts: assert part in lines[0], f'{part!r} not in {lines[0]!r}'

def tree(root:Path)->dict:
    "Every file and folder under `root` with its size and modification time."
    return {str(p.relative_to(root)): (p.is_dir(), p.lstat().st_size, p.lstat().st_mtime_ns) for p in sorted(root.rglob('*'))}

# ---------------------------------------------------------------------------------------------------------------
# 1. Bad data, imported on top of a populated store

def _csv(folder:Path, name:str, change):
    path = folder/f'{name}.csv'
    change(pd.read_csv(path, dtype=str, keep_default_na=False)).to_csv(path, index=False)

def _set(df, row:int, **values):
    df = df.copy()
    for col, v in values.items(): df.loc[row, col] = v
    return df

def _to_parquet(folder:Path, name:str)->Path:
    "Replace `name`.csv by the same table as parquet (read with setrank's own dtypes)."
    path = folder/f'{name}.parquet'
    import_folder(folder, folder.parent/'scratch.duckdb')
    load_tables(folder.parent/'scratch.duckdb', [name])[name].to_parquet(path)
    (folder/f'{name}.csv').unlink()
    return path

def _truncate(path:Path): path.write_bytes(path.read_bytes()[:len(path.read_bytes())//2])

def _latin1_name(folder:Path):
    path = folder/'player_games.csv'
    path.write_bytes(path.read_bytes().replace(b'BBB 1', 'Jokić'.encode('cp1250')))

BAD_DATA = {
    'missing_column': (lambda f: _csv(f, 'player_games', lambda d: d.drop(columns='minutes')),
                       ['player_games.csv', "missing column 'minutes'"]),
    'wrong_dtype': (lambda f: _csv(f, 'team_games', lambda d: _set(d, 2, pts='twenty-five')),
                    ['team_games.csv', "column 'pts' should be whole numbers", 'game_id=g2 team_id=3 pts=twenty-five']),
    'duplicate_keys': (lambda f: _csv(f, 'player_games', lambda d: pd.concat([d, d.iloc[[5]]])),
                       ['player_games.csv', 'duplicate rows for (game_id, player_id)', 'game_id=g2 player_id=ccc1']),
    'truncated_parquet': (lambda f: _truncate(_to_parquet(f, 'player_games')),
                          ['player_games.parquet', 'not a readable parquet file']),
    'empty_folder': (lambda f: [p.unlink() for p in f.iterdir()], ['input', 'no table files']),
    'header_only_file': (lambda f: _csv(f, 'player_games', lambda d: d.iloc[:0]),
                         ['player_games.csv', 'no rows (a header only?)']),
    'unknown_team': (lambda f: _csv(f, 'teams', lambda d: d[d.team_id != '3']),
                     ['team_games.csv', "column 'team_id' has team ids not in", 'teams.csv', 'game_id=g2 team_id=3']),
    'points_do_not_add_up': (lambda f: _csv(f, 'player_games', lambda d: _set(d, 0, pts='20')),
                             ['player_games.csv', "player points do not add up to the team's pts in", 'team_games.csv',
                              'game_id=g1 team_id=1 pts=30', "players' pts sum to 32"]),
    'negative_minutes': (lambda f: _csv(f, 'player_games', lambda d: _set(d, 3, minutes='-5.0')),
                         ['player_games.csv', "column 'minutes' has negative values", 'game_id=g1 player_id=bbb1 minutes=-5.0']),
    'absurd_minutes': (lambda f: _csv(f, 'player_games', lambda d: _set(d, 3, minutes='300.0')),
                       ['player_games.csv', "column 'minutes' has values above 80", 'game_id=g1 player_id=bbb1 minutes=300.0']),
    'null_key': (lambda f: _csv(f, 'player_games', lambda d: _set(d, 1, game_id='')),
                 ['player_games.csv', "column 'game_id' has missing values", 'row 2 game_id=null player_id=aaa1']),
    'game_outside_its_season': (lambda f: _csv(f, 'team_games', lambda d: _set(_set(d, 0, game_date='2019-10-24'), 1, game_date='2019-10-24')),
                                ['team_games.csv', "column 'game_date' is outside its season",
                                 'game_id=g1 team_id=1 game_date=2019-10-24 season=2023-24']),
    'player_on_two_teams': (lambda f: _csv(f, 'player_games', lambda d: pd.concat([d, _set(d.iloc[[0]], 0, team_id='2', team='BBB')])),
                            ['player_games.csv', 'a player is listed for two teams in one game', 'game_id=g1 player_id=aaa0 team_id=1']),
    'dnp_for_the_other_team': (lambda f: _csv(f, 'player_dnp', lambda d: _set(d, 0, player_id='aaa0')),
                               ['player_dnp.csv', 'a player is listed for two teams in one game', 'game_id=g1 player_id=aaa0',
                                'player_games.csv (team_id=1)', 'player_dnp.csv (team_id=2)']),
    'non_utf8_bytes': (_latin1_name, ['player_games.csv', 'not UTF-8 text: byte 0xe6', "column 'player_name'",
                                      "row 4 (line 5)", 'save the file as UTF-8']),
    'bad_season_key': (lambda f: _csv(f, 'team_games', lambda d: d.assign(season='2023-2024')),
                       ['team_games.csv', "column 'season' has a bad season key '2023-2024'", 'game_id=g1 team_id=1']),
}

@pytest.fixture(scope='module')
def tiny_store(tmp_path_factory)->Path:
    "A store holding the tiny league."
    db = tmp_path_factory.mktemp('tiny')/'setrank.duckdb'
    import_folder(TINY, db)
    return db

def test_the_tiny_league_imports_cleanly(tmp_path):
    r = setrank('data', 'import', TINY, '--db', tmp_path/'s.duckdb')
    assert r.returncode == 0, r.stderr
    assert '3 teams, 4 team_games, 8 player_games, 1 player_dnp' in r.stdout

@pytest.mark.parametrize('case', BAD_DATA)
def test_bad_data_is_refused_in_one_line_and_the_store_is_unchanged(case, tiny_store, tmp_path):
    folder = tmp_path/'input'; shutil.copytree(TINY, folder)
    db = tmp_path/'store'/'setrank.duckdb'; db.parent.mkdir(); shutil.copy(tiny_store, db)
    break_it, expected = BAD_DATA[case]
    break_it(folder)
    before, files = sha256(db), sorted(p.name for p in db.parent.iterdir())
    r = setrank('data', 'import', folder, '--db', db)
    assert_one_clear_line(r, *expected)
    assert sha256(db) == before                                            # byte for byte
    assert sorted(p.name for p in db.parent.iterdir()) == files            # no temporary file left behind
    assert len(load_tables(db)['player_games']) == 8

# ---------------------------------------------------------------------------------------------------------------
# 2. Bad configs: a clear error before any heavy work

@pytest.fixture
def workdir(tmp_path)->Path:
    (tmp_path/'work').mkdir()
    return tmp_path/'work'

def _config(workdir:Path, text:str)->Path:
    "A user config: the given YAML over a 3-season synthetic league whose caches and runs stay in `workdir`."
    path = workdir/'my.yaml'
    path.write_text(f'paths: {{cache: {workdir}/cache, runs: {workdir}/runs, db: {workdir}/store.duckdb}}\n'
                    f'data: {{synth_seasons: 3}}\n{text}\n')
    return path

BAD_CONFIGS = {
    'yaml_syntax_error': ('model_a: {epochs: 3', ['my.yaml: not valid YAML (line']),
    'unknown_key': ('model_a: {epoch: 3}', ["my.yaml: unknown key 'model_a.epoch'; did you mean 'model_a.epochs'?"]),
    'wrong_type': ('model_a: {epochs: "23"}', ['my.yaml: model_a.epochs', "(got '23')"]),
    'negative_learning_rate': ('model_a: {learning_rate: -0.001}', ['my.yaml: model_a.learning_rate', 'greater than 0', '-0.001']),
    'zero_epochs': ('model_a: {epochs: 0}', ['my.yaml: model_a.epochs', 'greater than or equal to 1', '(got 0)']),
    'test_season_not_in_the_data': ('seasons: {test: "1999-00"}', ["seasons.test: season '1999-00' is not in the data",
                                                                  '2018-19, 2019-20, 2020-21']),
    'train_after_test': ('seasons: {first: "2020-21", test: "2019-20"}',
                         ['my.yaml: seasons: first (2020-21, the earliest training season) must come before test (2019-20)']),
    'validation_after_test': ('seasons: {validation: ["2020-21"], test: "2019-20"}', ['must come before test (2019-20)']),
    'grace_shorter_than_heartbeat': ('sweep: {heartbeat_s: 30, grace_s: 10}', ['my.yaml: sweep: grace_s (10) must be longer']),
}

@pytest.mark.parametrize('case', BAD_CONFIGS)
def test_bad_config_fails_before_any_feature_is_built(case, workdir):
    text, expected = BAD_CONFIGS[case]
    r = setrank('run', '--config', _config(workdir, text), '--quiet', cwd=workdir)
    assert_one_clear_line(r, *expected)
    assert not (workdir/'cache'/'features').exists() and not (workdir/'runs').exists()   # no features, no run folder

def test_a_missing_config_file_is_named(workdir):
    assert_one_clear_line(setrank('run', '--config', workdir/'nope.yaml', cwd=workdir), 'config file not found', 'nope.yaml')
    assert sorted(workdir.iterdir()) == []

@pytest.mark.parametrize('command', [('backtest', '--seasons', '1998-99:1999-00'), ('train-a',), ('sweep', '--batch-id', 'b')])
def test_every_training_command_checks_the_seasons_first(command, workdir):
    cfg = _config(workdir, 'seasons: {test: "1999-00"}' if command[0] != 'backtest' else '')
    r = setrank(*command, '--config', cfg, cwd=workdir)
    assert_one_clear_line(r, 'seasons.test: season', "-99' is not in the data" if command[0] == 'backtest' else "'1999-00' is not")
    assert not (workdir/'cache'/'features').exists() and not (workdir/'runs').exists()

# ---------------------------------------------------------------------------------------------------------------
# 3. kill -9 during `setrank data import`

@pytest.fixture(scope='module')
def two_leagues(tmp_path_factory):
    "A store holding one synthetic league (the old data) and a folder holding another (the new)."
    root = tmp_path_factory.mktemp('kill')
    old, new = synth_league(n_seasons=4, seed=1), synth_league(n_seasons=4, seed=2)
    db = root/'old.duckdb'
    old_fp = write_store(old, db, 'old').fingerprint
    folder = root/'new'; folder.mkdir()
    for name, df in new.items(): df.to_parquet(folder/f'{name}.parquet')
    new_fp = write_store(new, root/'new.duckdb', 'new').fingerprint
    return db, old_fp, folder, new_fp

def _import_killed(db:Path, folder:Path, when)->bool:
    "Start `setrank data import`; kill -9 it when `when(db)` says so. True when it was killed before it finished."
    proc = subprocess.Popen([SETRANK, 'data', 'import', str(folder), '--db', str(db)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline:
        if when(db):
            proc.send_signal(signal.SIGKILL); proc.wait()
            return True
        time.sleep(0.002)
    proc.wait()
    return False

def _writing(db:Path)->bool:
    "The import is writing its new database: the temporary file beside the store exists."
    return any(db.parent.glob(f'.{db.name}.*.tmp'))

def _holds_one_whole_version(db:Path, fingerprints:set)->str:
    "The store opens, its recorded fingerprint is one of `fingerprints`, and its tables hash to that fingerprint."
    from setrank.data import tables_fingerprint
    fp = data_fingerprint(db)
    assert fp in fingerprints
    assert tables_fingerprint(load_tables(db)) == fp                       # the content is all of that version
    return fp

def test_kill_9_during_import_leaves_the_old_store_or_the_new_never_half(two_leagues, tmp_path):
    source_db, old_fp, folder, new_fp = two_leagues
    db = tmp_path/'setrank.duckdb'; shutil.copy(source_db, db)
    start = time.time()
    killed_early = _import_killed(db, folder, lambda db: time.time() - start > 1.0)     # reading / validating
    assert _holds_one_whole_version(db, {old_fp}) == old_fp and killed_early
    mid_write = False
    for _ in range(5):                                                     # kill while the new file is being written
        mid_write = _import_killed(db, folder, _writing)
        if mid_write: break
        shutil.copy(source_db, db)                                         # it finished first: start over
    assert mid_write, 'the import never showed its temporary file'
    assert _holds_one_whole_version(db, {old_fp}) == old_fp               # the swap had not happened: all old
    assert list(db.parent.glob(f'.{db.name}.*.tmp'))                      # the killed import's half-written file
    r = setrank('data', 'import', folder, '--db', db)                      # re-import works
    assert r.returncode == 0, r.stderr
    assert _holds_one_whole_version(db, {new_fp}) == new_fp
    assert Store(db).meta()['source'] == str(folder)
    assert sorted(p.name for p in db.parent.iterdir()) == [db.name]       # and it removed the dead import's leftovers

def _cpu_ticks(pid:int)->int:
    fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return int(fields[11]) + int(fields[12])                               # utime + stime

def test_an_import_waits_for_a_live_writer_and_spares_its_file(two_leagues, tmp_path):
    """While another writer holds the folder (its temporary file is live), an import waits its turn and touches
    nothing; once the writer is gone, the import removes what it left and swaps in its own store."""
    from setrank.data import _folder_lock
    source_db, old_fp, folder, new_fp = two_leagues
    db = tmp_path/'setrank.duckdb'; shutil.copy(source_db, db)
    live = db.with_name(f'.{db.name}.0live000.tmp')
    with _folder_lock(db.parent):
        live.write_bytes(b'a store being written')
        proc = subprocess.Popen([SETRANK, 'data', 'import', str(folder), '--db', str(db)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        deadline, still = time.time() + 120, 0
        while still < 10:                                                  # blocked: no CPU for a second
            assert proc.poll() is None and time.time() < deadline, proc.stderr.read()
            ticks = _cpu_ticks(proc.pid); time.sleep(0.1)
            still = still + 1 if _cpu_ticks(proc.pid) == ticks else 0
        assert list(db.parent.glob(f'.{db.name}.*')) == [live]            # it waits and writes nothing
        assert _holds_one_whole_version(db, {old_fp}) == old_fp
    assert proc.wait(120) == 0, proc.stderr.read()
    assert _holds_one_whole_version(db, {new_fp}) == new_fp
    assert sorted(p.name for p in db.parent.iterdir()) == [db.name]       # the gone writer's file was removed

# ---------------------------------------------------------------------------------------------------------------
# 4. Names from users never escape runs/

HOSTILE = ['../../etc', '/etc/passwd', 'combo_0001/../../x', 'a; touch {sentinel}']

@pytest.fixture
def hostile_layout(tmp_path):
    """runs/ with a sweep batch (combo_0001, no models), and outside it a decoy run folder and batch folder that a
    name escaping runs/ would find."""
    work = tmp_path/'work'; runs = work/'runs'
    (runs/'sweeps'/'b1'/'combo_0001'/'outputs').mkdir(parents=True)
    for decoy in (tmp_path/'outside'/'run_001', tmp_path/'outside'/'sweeps'/'b1'):
        decoy.mkdir(parents=True)
        (decoy/'config.yaml').write_text('{}\n'); (decoy/'summary.json').write_text('{}\n')
    cfg = work/'my.yaml'
    cfg.write_text(f'paths: {{runs: {runs}, cache: {work}/cache}}\n')
    return tmp_path, work, runs, cfg

def _names(tmp_path:Path)->list[str]:
    return [n.format(sentinel=tmp_path/'pwned') for n in HOSTILE] + ['../outside/run_001', str(tmp_path/'outside'/'run_001')]

def test_hostile_names_are_refused_and_nothing_outside_runs_is_touched(hostile_layout):
    tmp_path, work, runs, cfg = hostile_layout
    before = tree(tmp_path)
    for name in _names(tmp_path):
        for command in [('explain', name, '--runs-root', runs), ('explain', 'combo_0001', '--batch', name, '--runs-root', runs),
                        ('sweep', '--batch-id', name, '--config', cfg), ('sweep', 'analyze', name, '--config', cfg),
                        ('sweep', 'lock-best', name, '--into', work/'copy.yaml', '--config', cfg),
                        ('evaluate', name, '--config', cfg)]:
            r = setrank(*command, cwd=work)
            assert_one_clear_line(r)
            msg = r.stderr
            assert any(why in msg for why in ('refused', 'bad batch id', 'bad sweep batch', 'outside the runs folder')), (command, msg)
            assert 'missing' not in msg and 'not found' not in msg, (command, msg)  # refused, not looked up
    assert tree(tmp_path) == before                                        # nothing written anywhere
    assert not (tmp_path/'pwned').exists()

@pytest.mark.slow
def test_papermill_config_parameter_refuses_hostile_names(hostile_layout):
    "The explain report run by papermill directly: its `config` parameter goes through the same checks."
    tmp_path, work, runs, cfg = hostile_layout
    papermill = Path(sys.executable).parent/'papermill'
    report = Path(__file__).resolve().parents[1]/'nbs'/'reports'/'explain.ipynb'
    out = tmp_path/'executed'; out.mkdir()
    before = {k: v for k, v in tree(tmp_path).items() if not k.startswith('executed')}
    for i, name in enumerate(_names(tmp_path)[:4]):
        r = subprocess.run([str(papermill), str(report), str(out/f'{i}.ipynb'), '-k', 'python3', '-p', 'config', name,
                            '-p', 'runs_root', str(runs)], capture_output=True, text=True, cwd=work, timeout=180)
        assert r.returncode != 0
        assert 'SetrankError' in r.stderr + r.stdout and ('refused' in r.stderr + r.stdout or 'outside the runs folder' in r.stderr + r.stdout)
    assert {k: v for k, v in tree(tmp_path).items() if not k.startswith('executed')} == before
    assert not (tmp_path/'pwned').exists()

# ---------------------------------------------------------------------------------------------------------------
# 5. A run folder with a deleted or corrupted file: evaluate and explain say which file and why

@pytest.fixture(scope='module')
def finished_run(tmp_path_factory)->Path:
    "One real run of the pipeline on a small synthetic league."
    from setrank.pipeline import run_pipeline
    root = tmp_path_factory.mktemp('finished')
    cfg = load_config(overrides={'paths.cache': str(root/'cache'), 'paths.runs': str(root/'runs'), 'data.synth_seasons': 4,
                                 'stacking.oof_seasons': 1, 'model_a.epochs': 2, 'model_a.device': 'cpu',
                                 'model_b.rf.n_estimators': 20, 'model_b.xgb.n_estimators': 30,
                                 'output.odds_simulations': 500, 'output.plots': False})
    return run_pipeline(cfg, progress=False).run_dir

def _garble(path:Path): path.write_bytes(b'\x00garbage\xff' + path.read_bytes()[len(path.read_bytes())//2:])

BROKEN_RUNS = {  # what breaks, the command that must say so, and what it says
    'deleted_predictions': (lambda r: next(r.glob('predictions_*.json')).unlink(), 'evaluate', ['predictions_', '.json is missing']),
    'corrupt_predictions': (lambda r: _garble(next(r.glob('predictions_*.json'))), 'evaluate', ['predictions_', 'not valid JSON']),
    'corrupt_scores': (lambda r: _garble(r/'scores.parquet'), 'evaluate', ['scores.parquet: not a readable parquet file']),
    'corrupt_manifest': (lambda r: _garble(r/'manifest.json'), 'evaluate', ['manifest.json: not valid JSON']),
    'deleted_model_a': (lambda r: (r/'models'/'model_a.pt').unlink(), 'explain', ['missing models', 'models/model_a.pt not found']),
    'corrupt_model_a': (lambda r: _garble(r/'models'/'model_a.pt'), 'explain', ['model_a.pt: not a readable Model A checkpoint (UnpicklingError']),
    'corrupt_forest': (lambda r: _garble(r/'models'/'model_b'/'rf.joblib'), 'explain',
                       ['rf.joblib does not match the hash recorded in', 'model_b.json']),
    'deleted_xgboost': (lambda r: (r/'models'/'model_b'/'xgb.json').unlink(), 'explain', ['missing models', 'xgb.json not found']),
    'corrupt_run_manifest_for_explain': (lambda r: _garble(r/'manifest.json'), 'explain', ['manifest.json: not valid JSON']),
}

@pytest.mark.slow
@pytest.mark.parametrize('case', BROKEN_RUNS)
def test_a_broken_run_folder_names_the_file_and_why(case, finished_run, tmp_path):
    runs = tmp_path/'runs'; run = runs/finished_run.name
    shutil.copytree(finished_run, run)
    break_it, command, expected = BROKEN_RUNS[case]
    break_it(run)
    cfg = tmp_path/'my.yaml'; cfg.write_text(f'paths: {{runs: {runs}}}\n')
    args = ('evaluate', run, '--config', cfg) if command == 'evaluate' else ('explain', run, '--runs-root', runs)
    r = setrank(*args, cwd=tmp_path)
    assert_one_clear_line(r, *expected)
    assert not (run/'explain.ipynb').exists() and not list(run.glob('.*tmp*'))  # no report started, nothing half-written
