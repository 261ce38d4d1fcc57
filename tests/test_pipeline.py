"`setrank run` end to end on a small synthetic league: every artifact, valid JSON, the same metrics twice."
import json, subprocess, sys
from pathlib import Path
import numpy as np
import pytest
from setrank.config import load_config, SetrankError
from setrank.pipeline import run_pipeline, evaluate_run_dir

SETRANK = str(Path(sys.executable).parent/'setrank')

def small_config(tmp:Path, **over):
    "A 4-season synthetic league with short training: the whole pipeline in well under a minute."
    base = {'paths.cache': str(tmp/'cache'), 'paths.runs': str(tmp/'runs'), 'data.synth_seasons': 4,
            'stacking.oof_seasons': 1, 'model_a.epochs': 3, 'model_b.rf.n_estimators': 30,
            'output.odds_simulations': 2000}
    return load_config(overrides={**base, **over})

def strict_json(path):
    def bad(name): raise ValueError(f'{path}: non-standard JSON constant {name}')
    return json.loads(Path(path).read_text(), parse_constant=bad)

@pytest.fixture(scope='module')
def two_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('pipe')
    cfg = small_config(tmp)
    return run_pipeline(cfg, progress=False), run_pipeline(cfg, progress=False)

def test_run_writes_every_artifact(two_runs):
    run = two_runs[0].run_dir
    season = two_runs[0].split.test
    for name in ['config.yaml', 'manifest.json', 'scores.parquet', 'oof.parquet', f'predictions_{season}.json',
                 'eval_report.json', 'eval_report.md', 'models/model_a.pt', 'models/train_history.json',
                 'models/model_b/xgb.json', 'models/model_b/rf.joblib', 'models/stack.json',
                 f'ranks_{season}.png', f'title_odds_{season}.png']:
        assert (run/name).exists(), name
    manifest = strict_json(run/'manifest.json')
    for key in ['data_fingerprint', 'code_version', 'seed', 'stage_seconds', 'split', 'validation', 'test']:
        assert key in manifest, key
    assert set(manifest['stage_seconds']) >= {'data', 'features', 'out_of_fold', 'stack', 'final_models', 'predict', 'evaluate'}

def test_predictions_are_valid_ranked_json(two_runs):
    run = two_runs[0]
    pred = strict_json(run.run_dir/f'predictions_{run.split.test}.json')
    teams = pred['teams']
    assert sorted(t['prediction']['league_rank'] for t in teams) == list(range(1, 31))
    odds = np.array([t['prediction']['championship_odds'] for t in teams])
    assert abs(odds.sum() - 1) < 1e-9 and odds.std() > 0
    for t in teams:
        rd = t['roster_dependence']
        assert all(c['attention_weight'] > 0 for c in rd['primary_contributors'])
    # issue #18: the end-of-season file classifies every team (against the final standings: no games are left) and tiers it
    assert pred['horizon'] == 1.0 and pred['notes']['classification'].startswith('from the final_rank truth')
    assert 'unknown' not in {t['analysis']['classification'] for t in teams}
    assert {t['analysis']['tier'] for t in teams} <= {'contender', 'playoff', 'play-in', 'lottery'}

def test_eval_report_compares_models_with_baselines(two_runs):
    md = (two_runs[0].run_dir/'eval_report.md').read_text()
    for word in ['ensemble', 'model_a', 'xgb', 'rf', 'point_diff', 'win_pct', 'random']:
        assert word in md, word
    report = strict_json(two_runs[0].run_dir/'eval_report.json')
    assert report['truth_source'].startswith('synthetic') and report['prediction_files'][0]['sha256']

def test_same_seed_same_metrics(two_runs):
    a, b = two_runs
    assert a.run_dir != b.run_dir
    assert a.validation == b.validation and a.test == b.test
    assert strict_json(a.run_dir/'eval_report.json')['results'] == strict_json(b.run_dir/'eval_report.json')['results']

def test_validation_metrics_are_reported_and_plausible(two_runs):
    v = two_runs[0].validation
    assert set(v) == {'spearman', 'ndcg_at_8', 'rank_mae', 'playoff_spearman'}
    assert 0.3 < v['spearman'] <= 1 and 0 < v['rank_mae'] < 10

def test_evaluate_recomputes_the_same_report(two_runs):
    run = two_runs[0].run_dir
    before = strict_json(run/'eval_report.json')['results']
    evaluate_run_dir(run)
    assert strict_json(run/'eval_report.json')['results'] == before

def test_missing_model_file_is_a_clear_error(two_runs, tmp_path):
    from setrank.deepset import load_model_a
    from setrank.model_b import load_model_b
    with pytest.raises(SetrankError, match='rf.joblib|model_b'):
        import shutil
        broken = tmp_path/'model_b'; shutil.copytree(two_runs[0].run_dir/'models'/'model_b', broken)
        (broken/'rf.joblib').unlink()
        load_model_b(broken)
    with pytest.raises(SetrankError):
        load_model_a(tmp_path/'none.pt')

def test_evaluate_cli_on_a_missing_run_exits_2(tmp_path):
    r = subprocess.run([SETRANK, 'evaluate', str(tmp_path/'run_999')], capture_output=True, text=True)
    assert r.returncode == 2 and 'Traceback' not in r.stderr

def test_evaluate_cli_takes_a_run_by_its_name(two_runs, tmp_path):
    "`setrank evaluate run_001`, from any folder, is the run of that name under paths.runs (it said 'outside the runs folder')."
    run = two_runs[0].run_dir
    cfg = tmp_path/'my.yaml'; cfg.write_text(f'paths: {{runs: {run.parent}}}\n')
    r = subprocess.run([SETRANK, 'evaluate', run.name, '--config', cfg], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.strip().endswith(str(run/'eval_report.md')), r.stderr
    r = subprocess.run([SETRANK, 'evaluate', 'run_999', '--config', cfg], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.strip() == f'setrank: error: no run folder {run.parent/"run_999"}', r.stderr

def test_load_run_rebuilds_models_that_score_like_the_run(two_runs):
    import pandas as pd
    from setrank.pipeline import load_run
    from setrank.model_a import predict_model_a
    art = load_run(two_runs[0].run_dir)
    scores = pd.read_parquet(two_runs[0].run_dir/'scores.parquet')
    again = predict_model_a(art.model_a, art.fs, scores.row.to_numpy())['scores']
    np.testing.assert_allclose(again, scores.model_a.to_numpy(), rtol=1e-5, atol=1e-5)
    assert art.split.test == two_runs[0].split.test

def test_model_with_unusable_attention_yields_fallback_contributors(two_runs):
    "Force Model A's attention logits to NaN: the fallback weights are used, flagged, and no zero-weight contributor is made up."
    import pandas as pd
    from setrank.pipeline import load_run
    from setrank.model_a import predict_model_a
    from setrank.predict import build_predictions
    from setrank.evaluate import horizon_rows
    art = load_run(two_runs[0].run_dir)
    att = art.model_a.attention
    original = att.logits
    att.logits = lambda *a, **k: tuple([original(*a, **k)[0] * float('nan'), *original(*a, **k)[1:]])
    test_rows = art.fs.rows[art.fs.rows.season == art.split.test]
    end = horizon_rows(test_rows, 1.0)
    pos = end.index.to_numpy()
    out = predict_model_a(art.model_a, art.fs, pos)
    assert out['fallback'].all() and np.isfinite(out['scores']).all()
    scores = {m: np.asarray(out['scores']) for m in ('ensemble', 'model_a', 'xgb', 'rf')}
    pred = build_predictions(end, scores, dict(weights=out['weights'], player_ids=art.fs.player_ids[pos], fallback=out['fallback']),
                             art.cfg.output, run_id='forced', seed=0)
    for team in pred['teams']:
        rd = team['roster_dependence']
        assert rd['contributors_are_fallback'] is True
        assert all(c['attention_weight'] > 0 for c in rd['primary_contributors'])

def test_backtest_cli_prints_the_headline_with_intervals(tmp_path):
    "`setrank backtest` over two test seasons: per-season runs, the pooled report, and the headline it prints."
    cfg = tmp_path/'cfg.yaml'
    cfg.write_text('\n'.join([f'paths: {{cache: {tmp_path}/cache, runs: {tmp_path}/runs}}', 'data: {synth_seasons: 5}',
                              'stacking: {oof_seasons: 1}', 'model_a: {epochs: 2}',
                              'model_b: {rf: {n_estimators: 20}, xgb: {n_estimators: 40}}',
                              'output: {odds_simulations: 500, plots: false}']))
    r = subprocess.run([SETRANK, 'backtest', '--config', str(cfg), '--seasons', '2021-22:2022-23', '--quiet'],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    out = tmp_path/'runs'/'backtest_2021-22_2022-23'
    for season in ['2021-22', '2022-23']: assert (out/season/'scores.parquet').exists()
    report = strict_json(out/'eval_report.json')
    assert report['settings']['seasons'] == ['2021-22', '2022-23']
    assert 'expected playoff series won' in report['settings']['target_scores']['playoff_outcome']['note']
    head = [l for l in r.stdout.splitlines() if l.strip().startswith(('rest_of_season', 'playoff_outcome')) and 'Δ' in l]
    assert len(head) == 4, r.stdout                       # 25/50/75 % on rest_of_season, the end on playoff_outcome
    assert all('[' in l and 'ensemble' in l for l in head)
    assert 'Headline' in (out/'backtest.md').read_text()
    # the second run's out-of-fold split is the first run's final one: trained once, reused, and the shared folder is gone
    test_splits = [strict_json(out/season/'manifest.json')['splits'] for season in ['2021-22', '2022-23']]
    assert test_splits == [{'trained': 2, 'reused': 0}, {'trained': 1, 'reused': 1}], test_splits
    assert not (out/'.folds').exists()
