"""Sweeps end to end: combos, resuming after a kill, several workers on one study (SQLite and PostgreSQL), the papermill
analysis report and lock-best. Trials use `fakes.fake_trial` (instant, deterministic); one slow test runs the real
pipeline."""
import json, os, shutil, signal, subprocess, sys, time, uuid
from functools import partial
from pathlib import Path

import pandas as pd
import pytest
import optuna

from setrank.config import DEFAULTS_PATH, load_config, read_yaml
from setrank.sweep import LOCK_MARK, analyze_batch, combo_name, default_storage, lock_best, run_sweep
from fakes import fake_trial

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
optuna.logging.set_verbosity(optuna.logging.WARNING)

# A sweep worker in its own process, as a second machine (or a killed terminal) would run it.
WORKER = r'''
import json, sys, time
a = json.loads(sys.argv[1])
sys.path.insert(0, a['tests'])
from setrank.config import load_config
from setrank.sweep import run_sweep
from fakes import fake_trial
ran = []
def runner(cfg, out_dir):
    result = fake_trial(cfg, out_dir, delay_s=a['delay'])
    if a.get('hang_after_first') and out_dir.parent.name != 'combo_0000': time.sleep(600)
    if a.get('hang_first') and not ran: time.sleep(600)     # this worker's first trial never ends
    ran.append(out_dir)
    return result
run_sweep(load_config(overrides=a['overrides']), a['batch'], n_trials=a['n'], storage=a.get('storage'),
          run_trial=runner, progress=False, importances=False, poll_s=0.2)
'''

# Dead workers are found by their missing heartbeat: a one-second heartbeat and a two-second grace keep the tests quick.
QUICK_RECOVERY = {'sweep.heartbeat_s': 1, 'sweep.grace_s': 2}

def _overrides(root:Path)->dict:
    return {'paths.runs': str(root/'runs'), 'paths.cache': str(root/'cache'), **QUICK_RECOVERY}

def _worker(root:Path, batch:str, n:int, delay:float=0.0, storage=None, hang_after_first=False,
            hang_first=False)->subprocess.Popen:
    args = dict(overrides=_overrides(root), batch=batch, n=n, delay=delay, storage=storage, hang_after_first=hang_after_first,
                hang_first=hang_first, tests=str(TESTS))
    return subprocess.Popen([sys.executable, '-c', WORKER, json.dumps(args)], cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

def _results(batch_dir:Path)->pd.DataFrame:
    return pd.read_csv(batch_dir/'sweep_results.csv')

def _runs_per_combo(batch_dir:Path)->dict:
    "combo -> the (host, pid) lines its runner wrote: one per time the combo ran."
    return {p.parent.parent.name: p.read_text().splitlines() for p in batch_dir.glob('combo_*/outputs/runs.txt')}

def test_sweep_writes_one_combo_per_trial_with_its_full_config(tmp_path):
    cfg = load_config(overrides={**_overrides(tmp_path), 'sweep.n_trials': 3})
    res = run_sweep(cfg, 'three', run_trial=fake_trial, progress=False)
    combos = sorted(p.name for p in res.batch_dir.glob('combo_*'))
    assert combos == ['combo_0000', 'combo_0001', 'combo_0002']
    frame = _results(res.batch_dir)
    assert frame.state.tolist() == ['COMPLETE']*3 and frame.combo.tolist() == combos
    assert frame['model_a.epochs'].nunique() == 3                          # three different combos were tried
    for _, row in frame.iterrows():
        combo_cfg = load_config(res.batch_dir/row.combo/'config.yaml')
        assert combo_cfg.paths.runs == str(res.batch_dir/row.combo)       # runs go into the combo
        assert combo_cfg.paths.cache == str(tmp_path/'cache')             # the feature cache is the batch's
        assert combo_cfg.model_a.epochs == row['model_a.epochs']          # the combo's config holds its trial's values
        assert combo_cfg.model_b.xgb.max_depth == row['model_b.xgb.max_depth']
        assert (res.batch_dir/row.combo/'outputs'/'eval_report.json').exists()
    summary = json.loads((res.batch_dir/'summary.json').read_text())
    best, chosen = summary['best'], frame.validation_spearman.idxmax()
    assert best['validation']['spearman'] == frame.validation_spearman.max()
    assert best['combo'] == frame.combo[chosen] != frame.combo[frame.test_spearman.idxmax()]   # chosen on validation only
    assert best['params']['model_a.epochs'] == frame.loc[chosen, 'model_a.epochs']
    assert summary['n_trials'] == 3 and summary['complete'] == 3 and summary['importances']

def test_killed_sweep_resumes_without_losing_or_redoing_a_trial(tmp_path):
    """Kill -9 a sweep during its second trial; the same call again (the documented resume) finishes the batch: the
    killed trial's parameters run once more, as a new combo, once its heartbeat is older than the grace period;
    combo_0000 is not touched; every combo folder is a trial of the study and ran exactly once."""
    batch_dir = tmp_path/'runs'/'sweeps'/'killed'
    proc = _worker(tmp_path, 'killed', 3, hang_after_first=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        if (batch_dir/'combo_0001'/'outputs'/'runs.txt').exists() and 'COMPLETE' in _results(batch_dir).state.tolist(): break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    else: pytest.fail('the first trial did not finish in 60 s')
    proc.send_signal(signal.SIGKILL); proc.wait()
    first = batch_dir/'combo_0000'/'outputs'/'eval_report.json'
    mtime = first.stat().st_mtime_ns

    cfg = load_config(overrides=_overrides(tmp_path))
    res = run_sweep(cfg, 'killed', n_trials=3, run_trial=fake_trial, progress=False, poll_s=0.2)
    frame = _results(batch_dir).set_index('number')
    assert res.summary['complete'] == 3 and frame.state.value_counts().to_dict() == {'COMPLETE': 3, 'FAIL': 1}
    assert first.stat().st_mtime_ns == mtime                               # finished combo untouched
    rerun = frame.index[frame.note == 're-runs combo_0001'].tolist()
    assert frame.loc[1, 'state'] == 'FAIL' and len(rerun) == 1             # the killed trial re-ran exactly once
    assert f're-run as {combo_name(rerun[0])}' in frame.loc[1, 'note']
    params = list(cfg.sweep.space)
    assert frame.loc[rerun[0], params].tolist() == frame.loc[1, params].tolist()  # with the killed trial's parameters
    assert frame.loc[rerun[0], 'state'] == 'COMPLETE'
    runs = _runs_per_combo(batch_dir)
    assert sorted(runs) == sorted(frame.combo) == sorted(p.name for p in batch_dir.glob('combo_*'))  # folders = trials
    assert all(len(lines) == 1 for lines in runs.values())                # no combo ran twice
    study = optuna.load_study(study_name='killed', storage=default_storage(batch_dir))
    assert sorted(t.number for t in study.trials) == sorted(frame.index)   # the CSV holds every trial of the study

def test_resume_after_a_kill_in_the_last_trial_says_what_it_waits_for(tmp_path, capsys):
    """Kill -9 the only worker in the batch's last trial: the resumed sweep says it waits for that combo (not silence
    for sweep.grace_s), then re-runs its parameters once and completes."""
    batch_dir = tmp_path/'runs'/'sweeps'/'last'
    proc = _worker(tmp_path, 'last', 1, hang_first=True)
    deadline = time.time() + 60
    while not (batch_dir/'combo_0000'/'outputs'/'runs.txt').exists():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL); proc.wait()
    res = run_sweep(load_config(overrides=_overrides(tmp_path)), 'last', n_trials=1, run_trial=fake_trial, poll_s=0.2,
                    importances=False, explain=False)
    out = capsys.readouterr().out
    assert 'waiting for combo_0000: running in another worker, or its worker was killed' in out, out
    assert 'sweep.grace_s (2 s)' in out and out.count('waiting for') == 1, out
    frame = _results(batch_dir).set_index('number')
    assert res.summary['complete'] == 1 and frame.loc[1, 'note'] == 're-runs combo_0000' and frame.loc[0, 'state'] == 'FAIL'

def test_a_worker_killed_beside_a_live_one_loses_no_trial(tmp_path):
    """Two workers on one SQLite study; one is killed -9 in its first trial. The other keeps going, finds the dead
    trial by its stale heartbeat, re-runs its parameters once, and completes the batch alone."""
    batch_dir = tmp_path/'runs'/'sweeps'/'half'
    doomed = _worker(tmp_path, 'half', 4, hang_first=True)
    deadline = time.time() + 60
    while not list(batch_dir.glob('combo_*/outputs/runs.txt')):
        assert doomed.poll() is None and time.time() < deadline, doomed.communicate()
        time.sleep(0.1)
    survivor = _worker(tmp_path, 'half', 4, delay=0.2)
    time.sleep(1.0)
    doomed.send_signal(signal.SIGKILL); doomed.wait()
    out, err = survivor.communicate(timeout=120)
    assert survivor.returncode == 0 and 'Traceback' not in err and 'locked' not in err, err
    frame = _results(batch_dir).set_index('number')
    assert frame.state.value_counts().to_dict() == {'COMPLETE': 4, 'FAIL': 1}, frame.state
    dead = frame.index[frame.state == 'FAIL'][0]
    rerun = frame.index[frame.note == f're-runs {combo_name(dead)}'].tolist()
    assert len(rerun) == 1 and frame.loc[rerun[0], 'state'] == 'COMPLETE'
    params = list(load_config().sweep.space)
    assert frame.loc[rerun[0], params].tolist() == frame.loc[dead, params].tolist()
    runs = _runs_per_combo(batch_dir)
    assert sorted(runs) == sorted(frame.combo) == sorted(p.name for p in batch_dir.glob('combo_*'))
    assert all(len(v) == 1 for v in runs.values())                         # no combo ran twice
    assert len({v[0] for v in runs.values()}) == 2                          # both workers started trials

def test_interrupted_sweep_resumes_and_n_trials_is_the_batch_total(tmp_path):
    def interrupted(cfg, out_dir):
        if out_dir.parent.name == 'combo_0001': raise KeyboardInterrupt
        return fake_trial(cfg, out_dir)
    cfg = load_config(overrides={**_overrides(tmp_path), 'sweep.n_trials': 3})
    with pytest.raises(KeyboardInterrupt): run_sweep(cfg, 'ctrl_c', run_trial=interrupted, progress=False)
    assert _results(tmp_path/'runs'/'sweeps'/'ctrl_c').state.tolist() == ['COMPLETE', 'FAIL', 'WAITING']  # queued again
    res = run_sweep(cfg, 'ctrl_c', run_trial=fake_trial, progress=False)
    assert res.results.state.tolist() == ['COMPLETE', 'FAIL', 'COMPLETE', 'COMPLETE']
    again = run_sweep(cfg, 'ctrl_c', run_trial=fake_trial, progress=False)  # complete: runs nothing
    assert len(again.results) == 4

def _check_shared_batch(batch_dir:Path, study, n:int):
    states = {t.number: t.state.name for t in study.trials}
    assert list(states.values()).count('COMPLETE') == n, states           # n complete, no overshoot past the budget
    surplus = {t.number for t in study.trials if t.user_attrs.get('surplus')}
    assert all(s == 'COMPLETE' for k, s in states.items() if k not in surplus), states  # nothing failed or left waiting
    combos = sorted(p.name for p in batch_dir.glob('combo_*'))
    assert combos == [combo_name(k) for k in sorted(states) if k not in surplus]   # a folder per complete trial, no other
    runs = _runs_per_combo(batch_dir)
    assert sorted(runs) == combos and all(len(v) == 1 for v in runs.values())  # each combo ran exactly once
    assert len({line for v in runs.values() for line in v}) == 2              # both workers ran trials
    frame = _results(batch_dir)
    assert frame.combo.tolist() == combos and (frame.state == 'COMPLETE').all()   # the CSV lists exactly those

def _run_two_workers(tmp_path, batch, n, storage=None):
    procs = [_worker(tmp_path, batch, n, delay=0.3, storage=storage) for _ in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert 'locked' not in err and 'Traceback' not in err, err          # no lock errors, retried or not

def test_two_workers_share_one_sqlite_study(tmp_path):
    _run_two_workers(tmp_path, 'shared', 6)
    batch_dir = tmp_path/'runs'/'sweeps'/'shared'
    _check_shared_batch(batch_dir, optuna.load_study(study_name='shared', storage=default_storage(batch_dir)), 6)

def _pg_url()->str:
    url = os.environ.get('SETRANK_PG_URL')
    url_file = Path(os.environ.get('SETRANK_PG_URL_FILE', '/tmp/setrank_pg_url'))
    if not url and url_file.exists(): url = url_file.read_text().strip()
    problem = None if url else 'no PostgreSQL URL ($SETRANK_PG_URL or the file written by .ci/services)'
    if url:
        try:
            import sqlalchemy
            with sqlalchemy.create_engine(url).connect(): pass
        except Exception as e: problem = f'cannot connect to {url.split("@")[-1]}: {e}'
    if problem:
        if os.environ.get('CI'): pytest.fail(f'{problem}; CI runs .ci/services first')
        pytest.skip(problem)
    return url

def test_two_workers_share_one_postgresql_study(tmp_path):
    url = _pg_url()
    batch = f'pg_{uuid.uuid4().hex[:10]}'
    try:
        _run_two_workers(tmp_path, batch, 6, storage=url)
        _check_shared_batch(tmp_path/'runs'/'sweeps'/batch, optuna.load_study(study_name=batch, storage=url), 6)
    finally:
        try: optuna.delete_study(study_name=batch, storage=url)
        except KeyError: pass

def test_n_jobs_runs_worker_processes_on_one_study(tmp_path):
    cfg = load_config(overrides={**_overrides(tmp_path), 'sweep.n_trials': 4})
    res = run_sweep(cfg, 'jobs', run_trial=partial(fake_trial, delay_s=0.3), n_jobs=2, progress=False, importances=False)
    assert res.summary['complete'] == 4 and (res.results.state == 'COMPLETE').sum() == 4
    runs = _runs_per_combo(res.batch_dir)
    assert len(runs) == 4 and all(len(v) == 1 for v in runs.values())

def test_analyze_writes_analysis_md_with_papermill(tmp_path):
    cfg = load_config(overrides={**_overrides(tmp_path), 'sweep.n_trials': 3})
    res = run_sweep(cfg, 'report', run_trial=fake_trial, progress=False)
    path = analyze_batch('report', tmp_path/'runs')
    md = path.read_text()
    best = res.summary['best']
    assert path == (res.batch_dir/'ANALYSIS.md').resolve()
    assert f"**Best: {best['combo']}**" in md and 'point_diff' in md and 'Parameter importances' in md
    assert '![validation spearman by trial](optimization_history.png)' in md
    assert (res.batch_dir/'optimization_history.png').stat().st_size > 1000
    executed = json.loads((res.batch_dir/'analysis.ipynb').read_text())
    injected = [c for c in executed['cells'] if 'injected-parameters' in c['metadata'].get('tags', [])]
    assert injected and str(res.batch_dir.resolve()) in ''.join(injected[0]['source'])  # not the default batch
    printed = ''.join(''.join(o['text']) for c in executed['cells'] for o in c.get('outputs', []) if o['output_type'] == 'stream')
    assert 'Warning: these importances rest on 3 complete trials' in printed   # the notebook warns too, not only ANALYSIS.md

def test_analysis_md_is_relative_warns_on_few_trials_and_says_when_a_baseline_wins(tmp_path, monkeypatch):
    "Issue #18's ANALYSIS.md: relative paths only, a warning under 10 trials, a plain sentence when the best combo's test"
    " score is below a baseline, whole trial numbers on the history plot's axis."
    import setrank.sweep as sweep
    cfg = load_config(overrides={**_overrides(tmp_path), 'sweep.n_trials': 3})
    res = run_sweep(cfg, 'few', run_trial=fake_trial, progress=False)
    best = res.summary['best']['combo']
    report = res.batch_dir/best/'outputs'/'eval_report.json'
    rep = json.loads(report.read_text())
    for row in rep['summary']:
        if row['method'] == 'point_diff' and row['metric'] == 'spearman': row['mean'] = 0.95   # a baseline ahead
    report.write_text(json.dumps(rep))
    md = sweep.write_analysis(res.batch_dir).read_text()
    assert str(tmp_path) not in md and str(tmp_path.resolve()) not in md and '/tmp' not in md, md
    assert f'run folder `{best}/outputs`' in md and 'sqlite:///study.db (in this folder)' in md
    assert '**Warning: these importances rest on 3 complete trials (fewer than 10): read them as noise' in md
    assert 'is below the strongest baseline, point_diff (0.950)**: on the test season it does not beat' in md
    figures = []
    monkeypatch.setattr(sweep, 'write_png', lambda path, fig: figures.append(fig) or path)
    sweep.plot_history(res.results, tmp_path/'history.png', 'spearman')
    ax = figures[0].axes[0]
    low, high = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if low <= t <= high]
    assert ticks and all(float(t).is_integer() for t in ticks), ticks   # trial numbers, not 0.25, 0.5, ...

def _flat(d, prefix=''):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v and k != 'space': out.update(_flat(v, f'{prefix}{k}.'))
        else: out[f'{prefix}{k}'] = v
    return out

def test_lock_best_into_a_copy_changes_exactly_the_swept_keys_and_keeps_every_comment(tmp_path):
    cfg = load_config(overrides={**_overrides(tmp_path), 'sweep.n_trials': 3})
    res = run_sweep(cfg, 'lock', run_trial=fake_trial, progress=False)
    copy = tmp_path/'copy.yaml'; shutil.copy(DEFAULTS_PATH, copy)
    original = copy.read_text()
    changes = lock_best('lock', into=copy, runs_root=tmp_path/'runs')
    text = copy.read_text()
    before, after = _flat(read_yaml(DEFAULTS_PATH)), _flat(read_yaml(copy))
    best = res.summary['best']['params']
    assert set(changes) == set(cfg.sweep.space)
    assert {k: after[k] for k in best} == best
    assert {k for k in before if before[k] != after[k]} == {k for k in best if before[k] != best[k]}
    assert set(after) == set(before)
    comment_lines = [l[l.index('#'):] for l in original.splitlines() if '#' in l]
    assert [c for c in comment_lines if c not in text] == []
    lock_lines = [l for l in text.splitlines() if l.startswith(LOCK_MARK)]
    assert len(lock_lines) == 1 and 'lock' in lock_lines[0] and res.summary['best']['combo'] in lock_lines[0]
    assert load_config(copy).model_a.epochs == best['model_a.epochs']       # still a valid config
    assert DEFAULTS_PATH.read_text() != text                                # the packaged defaults were not touched

def test_ci_services_script_is_valid_bash():
    r = subprocess.run(['bash', '-n', str(REPO/'.ci'/'services')], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr

@pytest.mark.slow
def test_real_sweep_trial_on_the_synthetic_league(tmp_path):
    "One real trial (the whole pipeline) on a small synthetic league: the trial's value is the run's validation metric."
    cfg = load_config(overrides={**_overrides(tmp_path), 'data.synth_seasons': 4, 'model_a.epochs': 1,
                                 'model_b.xgb.n_estimators': 20, 'model_b.rf.n_estimators': 20,
                                 'output.odds_simulations': 200, 'output.plots': False,
                                 'sweep.space': {'model_b.xgb.max_depth': {'type': 'int', 'low': 2, 'high': 4}}})
    res = run_sweep(cfg, 'real', n_trials=1, progress=False)
    combo = res.batch_dir/'combo_0000'
    assert res.summary['complete'] == 1, res.results.note.tolist()
    assert (combo/'outputs'/'scores.parquet').exists()
    manifest = json.loads((combo/'outputs'/'manifest.json').read_text())
    assert load_config(combo/'config.yaml').model_b.xgb.max_depth == res.best['params']['model_b.xgb.max_depth']
    assert res.best['validation'] == manifest['validation'] and res.best['test'] == manifest['test']
    assert res.results.loc[0, 'value'] == manifest['validation']['spearman'] != manifest['test']['spearman']  # validation
