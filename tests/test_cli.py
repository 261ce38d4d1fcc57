"The `setrank` command end to end, as a user runs it (a subprocess of the installed console script)."
import re, subprocess, sys
from pathlib import Path
import pytest

REPO = Path(__file__).resolve().parents[1]
SETRANK = str(Path(sys.executable).parent/'setrank')

def setrank(*args, cwd=None):
    return subprocess.run([SETRANK, *map(str, args)], capture_output=True, text=True, cwd=cwd)

def test_help_explains_every_command():
    r = setrank('--help')
    assert r.returncode == 0
    assert 'Rank NBA teams' in r.stdout and 'config' in r.stdout

def test_config_show_prints_locked_defaults_with_provenance():
    r = setrank('config', 'show')
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for line in ['rolling_windows: [15, 30]', 'epochs: 23', 'max_depth: 3', 'learning_rate: 0.087',
                 'n_estimators: 235', 'n_estimators: 232', 'min_samples_leaf: 5']:
        assert line in out, line
    assert 'optuna_3trial' in out and 'Spearman 0.2116' in out
    defaults = (REPO/'setrank'/'defaults.yaml').read_text()
    assert 'optuna_3trial' in defaults and 'trial 2' in defaults

def test_config_validate_names_the_bad_key(tmp_path):
    f = tmp_path/'bad.yaml'; f.write_text('model_a: {epochs: many}\n')
    r = setrank('config', 'validate', f)
    assert r.returncode == 2
    assert 'model_a.epochs' in r.stderr and "'many'" in r.stderr and 'Traceback' not in r.stderr

def test_config_validate_suggests_the_near_key(tmp_path):
    f = tmp_path/'typo.yaml'; f.write_text('model_a: {epoch: 5}\n')
    r = setrank('config', 'validate', f)
    assert r.returncode == 2 and "did you mean 'model_a.epochs'" in r.stderr

def test_config_validate_accepts_a_good_file(tmp_path):
    f = tmp_path/'ok.yaml'; f.write_text('model_b:\n  xgb: {max_depth: 4}\n')
    r = setrank('config', 'validate', f)
    assert r.returncode == 0, r.stderr
    assert 'max_depth: 4' in setrank('config', 'show', '--config', f).stdout

def test_ci_runs_the_readme_commands():
    "The README's setup and test commands are the ones .ci/run executes."
    readme, ci = (REPO/'README.md').read_text(), (REPO/'.ci'/'run').read_text()
    assert 'pip install -e ".[dev]"' in readme and 'pip install -q -e ".[dev]"' in ci
    assert re.search(r'^\. \.venv/bin/activate && pytest$', readme, re.M) and re.search(r'^pytest$', ci, re.M)

def test_data_import_of_an_empty_folder_is_a_clean_error(tmp_path):
    (tmp_path/'empty').mkdir()
    r = setrank('data', 'import', tmp_path/'empty', '--db', tmp_path/'s.duckdb')
    assert r.returncode == 2 and 'Traceback' not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and 'empty' in r.stderr
    assert not (tmp_path/'s.duckdb').exists()

def test_data_synth_then_info(tmp_path):
    db = tmp_path/'syn.duckdb'
    r = setrank('data', 'synth', '--seasons', 3, '--seed', 3, '--db', db)
    assert r.returncode == 0, r.stderr
    r = setrank('data', 'info', '--db', db)
    assert r.returncode == 0, r.stderr
    assert 'regular' in r.stdout and 'playoffs' in r.stdout and 'fingerprint' in r.stdout

def test_data_info_without_a_store_says_what_to_do(tmp_path):
    r = setrank('data', 'info', '--db', tmp_path/'none.duckdb')
    assert r.returncode == 2 and 'setrank data import' in r.stderr

@pytest.fixture(scope='module')
def small_synthetic_config(tmp_path_factory):
    "A config for a 3-season synthetic league whose store and caches live in a temp folder."
    d = tmp_path_factory.mktemp('small')
    cfg = d/'config.yaml'
    cfg.write_text(f'paths: {{cache: {d/"cache"}, runs: {d/"runs"}, db: {d/"store.duckdb"}}}\n'
                   f'data: {{synth_seasons: 3}}\n')
    return cfg

def test_features_build_says_what_it_built_and_caches(small_synthetic_config):
    r = setrank('features', 'build', '--config', small_synthetic_config)
    assert r.returncode == 0, r.stderr
    assert 'team rows' in r.stdout and '3 seasons' in r.stdout and 'player features' in r.stdout
    assert list((small_synthetic_config.parent/'cache'/'features').glob('features_*/schema.json'))

def test_baselines_prints_metrics_beside_random(small_synthetic_config):
    r = setrank('baselines', '--config', small_synthetic_config, '--target', 'rest_of_season')
    assert r.returncode == 0, r.stderr
    for word in ['random', 'point_diff', 'win_pct', 'srs', 'spearman', 'kendall_b', 'ndcg_at_8', 'rank_mae', '25%', '50%', '75%']:
        assert word in r.stdout, word

def test_run_on_db_without_store_is_a_clean_error(tmp_path):
    r = setrank('features', 'build', '--data', 'db', cwd=tmp_path)
    assert r.returncode == 2 and 'setrank data import' in r.stderr and 'Traceback' not in r.stderr

def test_explain_unknown_combo_exits_2_with_a_clear_message(tmp_path):
    (tmp_path/'runs'/'sweeps'/'b1'/'combo_0001'/'outputs').mkdir(parents=True)
    r = setrank('explain', 'combo_0042', '--runs-root', tmp_path/'runs')
    assert r.returncode == 2 and 'combo_0042' in r.stderr and 'Traceback' not in r.stderr
