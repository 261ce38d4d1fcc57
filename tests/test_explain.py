"The explain report end to end on a tiny sweep layout, and the explanations' properties on the synthetic league."
import json, os, shutil, subprocess, sys, warnings
from pathlib import Path
from types import SimpleNamespace
import numpy as np
import pandas as pd
import pytest
import torch
from setrank.config import SeasonSplit, SetrankError, load_config, parse_season
from setrank.explain import (ablation_summary, attention_ablation, explain_rows, explain_target, ig_baseline, ig_forward,
                             integrated_gradients, player_names, rank_agreement, resolve_target, top_k_overlap,
                             truth_matrix)
from setrank.model_a import model_inputs, predict_model_a, save_model_a, train_model_a
from setrank.model_b import fit_model_b, save_model_b
from setrank.pipeline import load_league, run_features, write_manifest, write_run_header

REPO = Path(__file__).resolve().parents[1]
OUTPUTS = ('shap_summary.png', 'ig_model_a_attributions.csv', 'attention_ablation.csv', 'explain.md')

@pytest.fixture(scope='session')
def league(tmp_path_factory):
    "A 4-season synthetic league, its features (cached where a run would cache them) and trained models."
    root = tmp_path_factory.mktemp('explain')
    cfg = load_config(overrides={'data.synth_seasons': 4, 'paths.cache': str(root/'cache'), 'paths.runs': str(root/'runs'),
                                 'model_a.epochs': 8, 'model_a.learning_rate': 0.002,  # the fixture's own training, not the defaults
                                 'model_a.embed_dim': 0, 'model_a.device': 'cpu', 'repro.seed': 0,
                                 'model_b.xgb.n_estimators': 30, 'model_b.rf.n_estimators': 20})
    tables, fingerprint = load_league(cfg)
    fs = run_features(cfg, tables, fingerprint)
    seasons = sorted(fs.rows.season.unique(), key=parse_season)
    # Three training seasons and a fixed number of epochs: an early-stopped Model A (best epoch 1-3 on one training
    # season) leans on team-level signals in its players' features, and whether removing its top players lowers the
    # score then depends on the seed. No team context: the score must come from the roster.
    split = SeasonSplit(train=seasons[:3], validation=[], test=seasons[3])
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        model_a, _ = train_model_a(fs, split, cfg, progress=False)
    model_b = fit_model_b(fs, split.train, cfg)
    return SimpleNamespace(root=root, cfg=cfg, tables=tables, fingerprint=fingerprint, fs=fs, split=split,
                           model_a=model_a, model_b=model_b)

def write_run(folder:Path, league, models:bool=True)->Path:
    "A run folder in the pipeline's layout: config.yaml, manifest.json, models/."
    folder.mkdir(parents=True, exist_ok=True)
    write_run_header(folder, league.cfg)
    write_manifest(folder, league.cfg, league.fingerprint, {}, split=league.split.model_dump())
    if models:
        save_model_a(league.model_a, folder/'models'/'model_a.pt', league.model_a.meta)
        save_model_b(league.model_b, folder/'models'/'model_b')
    return folder

@pytest.fixture(scope='session')
def sweep(league):
    "runs/sweeps/t/{combo_0001, combo_0002} with trained models; combo_0003's trial died before saving its models."
    runs = league.root/'runs'
    for combo, models in (('combo_0001', True), ('combo_0002', True), ('combo_0003', False)):
        combo_dir = runs/'sweeps'/'t'/combo
        write_run(combo_dir/'outputs', league, models)
        shutil.copy(combo_dir/'outputs'/'config.yaml', combo_dir/'config.yaml')
    return runs

# --- 1. the report through papermill ------------------------------------------------------------------------------

def test_report_writes_its_outputs_into_the_named_combo_only(sweep):
    out = explain_target('combo_0002', sweep)
    combo2, combo1 = sweep/'sweeps'/'t'/'combo_0002'/'outputs', sweep/'sweeps'/'t'/'combo_0001'/'outputs'
    assert out == combo2
    for name in OUTPUTS + ('explain.ipynb',):
        assert (combo2/name).exists(), name
        assert not (combo1/name).exists(), name
    assert (combo2/'shap_summary.png').read_bytes()[:4] == b'\x89PNG'
    ig = pd.read_csv(combo2/'ig_model_a_attributions.csv')
    assert {'team', 'player', 'attribution'} <= set(ig.columns) and ig.team.nunique() == 30
    assert not ig.player.str.startswith('syn').any()                       # names, not ids
    ablation = pd.read_csv(combo2/'attention_ablation.csv')
    assert len(ablation) == 30 and {'change_top', 'change_random'} <= set(ablation.columns)
    md = (combo2/'explain.md').read_text()
    assert '](shap_summary.png)' in md and 'Integrated Gradients' in md and 'ablation' in md
    summary = json.loads((combo2/'explain.json').read_text())
    assert summary['context']['season'] == '2021-22' and summary['ig']['max_abs_delta'] < 1e-3
    assert not list(combo2.glob('.*.tmp*'))                                 # no temporary files left behind
    # issue #18: the executed report shows no stderr (no red TqdmWarning) and ends with a conclusion computed from its numbers
    executed = json.loads((combo2/'explain.ipynb').read_text())
    outputs = [o for c in executed['cells'] for o in c.get('outputs', [])]
    assert not [o for o in outputs if o.get('name') == 'stderr' or o['output_type'] == 'error'], 'the report printed to stderr'
    assert 'TqdmWarning' not in json.dumps(executed)
    conclusion = md.split('## Conclusion')[1]
    att, mins = summary['truth']['attention weight'], summary['truth']['recent minutes']
    assert f"{att['overlap']:.0%} of them found against {mins['overlap']:.0%}" in conclusion, conclusion
    season = summary['truth_season']                                        # the same scored over the season's dates
    assert set(season) == set(summary['truth']) and season['recent minutes']['dates'] > 1
    assert all(0 <= v['overlap'] <= 1 and v['random'] == season['recent minutes']['random'] for v in season.values())
    assert f"Over the season ({season['recent minutes']['dates']} as-of dates): attention {season['attention weight']['overlap']:.0%}" in conclusion
    reach = summary['truth_ceiling']                                        # rules read straight from the inputs, no model
    assert {'player rating', 'recent minutes', 'minutes played later (oracle)'} <= set(reach)
    assert abs(reach['recent minutes']['overlap'] - season['recent minutes']['overlap']) < 1e-12   # the same dates, the same rule
    assert f"the player rating alone finds {reach['player rating']['overlap']:.0%}" in conclusion and "What Model A's inputs reach" in md
    avail = summary['availability']                                         # the attention as a forecast of who will play
    assert 0 <= avail['attention'] <= 1 and 0 <= avail['recent_minutes'] <= 1 and avail['dates'] > 1
    assert f"misplace {avail['attention']:.0%} of the listed players' remaining minutes" in conclusion and '## Who will play' in md
    assert f"more for {summary['ablation']['share_top_hurts_more']:.0%} of {summary['ablation']['teams']} teams" in conclusion

def test_report_parameters_tag_survives_nbdev_clean(tmp_path):
    reports = sorted((REPO/'nbs'/'reports').glob('*.ipynb'))
    assert reports
    for nb in reports:
        copy = tmp_path/nb.name
        shutil.copy(nb, copy)
        bin_dir = Path(sys.executable).parent
        subprocess.run([str(bin_dir/'nbdev_clean'), '--fname', str(copy)], cwd=REPO, check=True, capture_output=True)
        cells = json.loads(copy.read_text())['cells']
        tagged = [c for c in cells if 'parameters' in c.get('metadata', {}).get('tags', [])]
        assert len(tagged) == 1, f'{nb.name}: {len(tagged)} cells tagged parameters after nbdev_clean'
        assert 'config' in ''.join(tagged[0]['source']) or nb.stem != 'explain'

# --- 2. Integrated Gradients ----------------------------------------------------------------------------------------

@pytest.fixture(scope='session')
def padded(league):
    "A FeatureSet copy whose first test-season teams have 1..5 empty slots (garbage left in the raw padded features)."
    fs = league.fs
    rows = explain_rows(fs, league.split.test)[:6]
    sub = fs.select(rows)
    sub.player_ids, sub.player_x, sub.minutes, sub.mask = (sub.player_ids.copy(), sub.player_x.copy(),
                                                           sub.minutes.copy(), sub.mask.copy())
    for i in range(1, 6):
        sub.mask[i, -i:] = True; sub.player_ids[i, -i:] = ''; sub.minutes[i, -i:] = 0
        sub.player_x[i, -i:] = 99.
    return sub

def test_ig_is_complete_and_padded_slots_get_exact_zeros(league, padded):
    model, rows = league.model_a, np.arange(len(padded.rows))
    ig = integrated_gradients(model, padded, rows, n_steps=64)
    f_input = predict_model_a(model, padded, rows)['scores']
    inputs = model_inputs(model, padded, rows)
    with torch.no_grad():
        f_base = ig_forward(model)(ig_baseline(model, inputs.player_x), *inputs[:1], *inputs[2:]).numpy()   # replacement-level players
    assert np.abs(ig.baseline_score - f_base).max() < 1e-5                      # the baseline IG reports is that roster's score
    total = ig.attributions.reshape(len(rows), -1).sum(1)
    gap = np.abs(total - (f_input - f_base))
    assert (gap <= np.abs(ig.delta) + 1e-5).all()
    assert np.abs(ig.delta).max() < 1e-3*max(np.abs(f_input - f_base).max(), 1e-3)
    assert np.abs(f_input - f_base).max() > 1e-3                              # something to attribute
    assert padded.mask.sum() >= 15 and (ig.attributions[padded.mask] == 0).all() and (ig.player_attributions[padded.mask] == 0).all()
    assert (ig.player_attributions[~padded.mask] != 0).mean() > 0.9

def test_ig_forward_ignores_padded_features(league, padded):
    model, rows = league.model_a, np.arange(len(padded.rows))
    inputs = model_inputs(model, padded, rows)
    noisy = inputs.player_x.clone()
    noisy[inputs.mask] = torch.randn(int(inputs.mask.sum()), noisy.shape[-1])*10
    noisy.requires_grad_(True)
    forward = ig_forward(model)
    score = forward(noisy, inputs.player_index, inputs.minutes, inputs.mask, inputs.team_x)
    score.sum().backward()
    with torch.no_grad(): clean = forward(inputs.player_x, inputs.player_index, inputs.minutes, inputs.mask, inputs.team_x)
    assert torch.allclose(score.detach(), clean, atol=1e-6)
    assert (noisy.grad[inputs.mask] == 0).all() and (noisy.grad[~inputs.mask] != 0).any()

def test_ig_internal_batching_repeats_the_forward_args_correctly(league, padded):
    "Captum chunks teams × steps (here 6 teams × 16 steps in chunks of 12) and repeats mask, ids, minutes per chunk."
    model, rows = league.model_a, np.arange(len(padded.rows))
    whole = integrated_gradients(model, padded, rows, n_steps=16)
    chunked = integrated_gradients(model, padded, rows, n_steps=16, internal_batch_size=12)
    np.testing.assert_allclose(chunked.attributions, whole.attributions, atol=1e-5)
    np.testing.assert_allclose(chunked.delta, whole.delta, atol=1e-5)
    assert (chunked.attributions[padded.mask] == 0).all()

# --- 3. the explanations find what matters on the synthetic league ---------------------------------------------------

def test_attention_ablation_and_ig_find_the_players_who_matter(league):
    fs, tables, model = league.fs, league.tables, league.model_a
    rows = explain_rows(fs, league.split.test)
    ablation = attention_ablation(model, fs, rows, k=2, draws=20, seed=0, names=player_names(tables))
    s = ablation_summary(ablation)
    ig = integrated_gradients(model, fs, rows, n_steps=64)
    impact = truth_matrix(fs, rows, tables['truth_player_impact'])
    overlap = {name: top_k_overlap(values, impact, k=3) for name, values in
               [('ig', ig.player_attributions), ('attention', ig.weights),
                ('random', np.random.default_rng(0).random(ig.weights.shape))]}
    agreement = np.nanmean(rank_agreement(ig.weights, ig.player_attributions, ig.mask))
    print(f"\nablation k=2: top-attention removal hurts more for {s['share_top_hurts_more']:.0%} of {s['teams']} teams "
          f"(mean change {s['mean_change_top']:+.4f} vs random {s['mean_change_random']:+.4f}); "
          f"top-3 overlap with true impact: IG {overlap['ig'].overlap.mean():.3f}, attention "
          f"{overlap['attention'].overlap.mean():.3f}, random scores {overlap['random'].overlap.mean():.3f}, "
          f"expected by chance {overlap['ig'].random.mean():.3f}; attention vs IG Spearman {agreement:+.3f}")
    assert s['teams'] == 30 and s['share_top_hurts_more'] > 0.5
    assert s['mean_change_top'] < s['mean_change_random']
    chance = overlap['ig'].random.mean()
    assert overlap['ig'].overlap.mean() > chance + 0.15
    assert abs(overlap['random'].overlap.mean() - chance) < 0.15                # the control sits at chance

# --- 4. bad targets fail clearly --------------------------------------------------------------------------------------

def test_unknown_combo_or_missing_models_raise_setrank_error(sweep):
    with pytest.raises(SetrankError, match="unknown combo 'combo_0099'"): explain_target('combo_0099', sweep)
    with pytest.raises(SetrankError, match='missing models.*model_a.pt'): explain_target('combo_0003', sweep)
    with pytest.raises(SetrankError, match="'nope' not found"): resolve_target('nope/combo_0001', sweep)
    assert not (sweep/'sweeps'/'t'/'combo_0003'/'outputs'/'explain.ipynb').exists()

def test_papermill_exits_nonzero_with_the_message_for_an_unknown_combo(sweep, tmp_path):
    papermill = Path(sys.executable).parent/'papermill'
    r = subprocess.run([str(papermill), str(REPO/'nbs'/'reports'/'explain.ipynb'), str(tmp_path/'out.ipynb'),
                        '-k', 'python3', '-p', 'config', 'combo_0099', '-p', 'runs_root', str(sweep)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "unknown combo 'combo_0099'" in r.stderr + r.stdout

def test_a_failure_inside_the_report_becomes_a_setrank_error(sweep, tmp_path):
    with pytest.raises(SetrankError, match="explain report for 'combo_0001' failed.*'2030-31'"):
        explain_target('combo_0001', sweep, out=tmp_path, season='2030-31')
    assert (tmp_path/'explain.ipynb').exists()                                  # the failed notebook is kept
