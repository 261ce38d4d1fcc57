"Evaluation: bootstrap intervals, horizon cuts, every model beside every baseline, strict reports that name their inputs, plots."
import hashlib, json, os, re

import numpy as np, pandas as pd
import pytest

from setrank.baselines import BASELINES, random_metrics, spearman
from setrank.config import OutputConfig, SetrankError
from setrank.evaluate import (METHODS, RANDOM, ablation_table, describe_method, baseline_scores, bootstrap_ci, championship_brier,
                              championship_log_loss, eval_report_markdown, evaluate_run, horizon_rows,
                              paired_delta_ci, plot_rank_scatter, plot_title_odds, rank_metrics, write_eval_report)
from setrank.predict import MODEL_NAMES, build_predictions, write_predictions
from setrank.odds import OddsCalibration
from setrank.targets import horizon_index

HORIZONS = (0.25, 0.5, 0.75, 1.0)


def _strict_loads(text):
    def bad(name): raise AssertionError(f'JSON contains {name}')
    return json.loads(text, parse_constant=bad)


def _league(n_seasons=2, seed=0, n_dates=40, noise=(.4, .6, .7, .8)):
    "Rows at the four horizon cuts of each season, labels from a true strength, models and baseline feature columns."
    rng, baseline_rng = np.random.default_rng(seed), np.random.default_rng(seed + 1000)   # adding a baseline moves no model draw
    frames, scores = [], {m: [] for m in MODEL_NAMES}
    for s in range(n_seasons):
        strength = rng.normal(0, 1, 30)
        order = np.argsort(-(strength + rng.normal(0, .5, 30)))
        playoff = np.full(30, -1.0); playoff[order[:16]] = [4, 3, 2, 2, 1, 1, 1, 1] + [0]*8
        for h in HORIZONS:
            f = pd.DataFrame({'season': f'{2015 + s}-{16 + s}', 'as_of': pd.Timestamp(2016 + s, 1, 1), 'date_index': horizon_index(n_dates, h),
                              'n_dates': n_dates, 'team_id': np.arange(1000, 1030), 'team': [f'T{i:02d}' for i in range(30)],
                              'conference': ['East']*15 + ['West']*15,
                              'y_rest_of_season': strength + rng.normal(0, .6, 30) if h < 1 else np.nan,
                              'y_final_rank': strength + rng.normal(0, .4, 30), 'y_playoff_outcome': playoff})
            for col in BASELINES.values(): f[col] = strength + baseline_rng.normal(0, 1.0, 30)
            frames.append(f)
            for m, sd in zip(MODEL_NAMES, noise): scores[m].append(strength + rng.normal(0, sd, 30))
    # a decoy row at another date: never selected by any horizon
    rows = pd.concat(frames + [frames[0].assign(date_index=3)], ignore_index=True)
    scores = {m: np.concatenate(v + [v[0]]) for m, v in scores.items()}
    return rows, scores


@pytest.fixture(scope='module')
def league():
    rows, scores = _league()
    return rows, {**scores, **baseline_scores(rows)}


@pytest.fixture(scope='module')
def report(league):
    rows, scores = league
    return evaluate_run(rows, scores, 'synthetic: strength + noise', run_id='run_042', n_resamples=20, seed=7,
                        ci_metrics=['spearman'])


def test_bootstrap_interval_contains_the_estimate_and_narrows_with_more_teams():
    rng = np.random.default_rng(0)
    widths = {}
    for n in (16, 30, 120):
        w = []
        for rep in range(3):
            y = rng.normal(size=n); s = y + rng.normal(0, 1, n)
            point, lo, hi = bootstrap_ci(spearman, s, y, n_resamples=300, seed=rep)
            assert lo <= point <= hi and -1 <= lo < hi <= 1
            w.append(hi - lo)
        widths[n] = np.mean(w)
    assert widths[16] > widths[30] > widths[120]
    assert widths[120] < 0.6*widths[30]                          # ~ 1/sqrt(n): half the width at four times the teams


def test_bootstrap_is_seeded():
    y = np.arange(30.); s = y + np.random.default_rng(1).normal(0, 8, 30)
    assert bootstrap_ci(spearman, s, y, 100, seed=3) == bootstrap_ci(spearman, s, y, 100, seed=3)
    assert bootstrap_ci(spearman, s, y, 100, seed=3) != bootstrap_ci(spearman, s, y, 100, seed=4)


def test_paired_delta_detects_a_better_ranking():
    rng = np.random.default_rng(2)
    y = rng.normal(size=30)
    good, poor = y + rng.normal(0, .2, 30), y + rng.normal(0, 1.5, 30)
    d, lo, hi = paired_delta_ci(spearman, good, poor, y, n_resamples=300)
    assert d > 0 and lo > 0
    d, lo, hi = paired_delta_ci(spearman, poor, good, y, n_resamples=300)
    assert d < 0 and hi < 0


def test_horizon_rows_are_the_cuts_of_each_season(league):
    rows, _ = league
    for h in HORIZONS:
        hr = horizon_rows(rows, h)
        assert len(hr) == 60 and (hr.date_index == horizon_index(40, h)).all()
        assert sorted(hr.season.unique()) == ['2015-16', '2016-17']
    with pytest.raises(SetrankError, match='2015-16'):
        horizon_rows(rows[~((rows.season == '2015-16') & (rows.date_index == 20))], 0.5)


def test_every_model_and_baseline_is_scored_beside_random(report, league):
    res = pd.DataFrame(report['results'])
    methods = set(MODEL_NAMES) | set(BASELINES) | {RANDOM}
    assert set(res.method) == methods
    keys = res.groupby(['season', 'horizon', 'target', 'teams', 'metric']).method.apply(set)
    # one list per (season, horizon, target, teams); prev-season baselines skip the first season of the data
    for (season, *_), got in keys.items():
        expect = methods - ({'prev_season_win_pct', 'prior_player_rating'} if season == '2015-16' else set())
        assert got == expect
    assert len(keys.reset_index()[['season', 'horizon', 'target', 'teams']].drop_duplicates()) == 2*(3 + 4 + 8)
    assert set(res.metric) == {'spearman', 'kendall_b', 'ndcg_at_8', 'rank_mae'}
    assert (res[res.teams == 'playoff'].n_teams == 16).all() and (res[res.teams == 'league'].n_teams == 30).all()
    # the random row is the exact expectation of setrank.baselines
    rows, _ = league
    hr = horizon_rows(rows, 0.5, ['2016-17'])
    rnd = random_metrics(hr.y_final_rank.to_numpy())
    got = res[(res.method == RANDOM) & (res.season == '2016-17') & (res.horizon == 0.5) & (res.target == 'final_rank')]
    assert dict(zip(got.metric, got.value)) == pytest.approx(rnd, abs=1e-6)
    # models recover the strength: far above random, and the intervals contain the estimates
    ens = res[(res.method == 'ensemble') & (res.metric == 'spearman') & (res.teams == 'league')]
    assert (ens.value > 0.5).all()
    sp = res[(res.metric == 'spearman') & (res.method != RANDOM)]
    assert ((sp.ci_low <= sp.value) & (sp.value <= sp.ci_high)).all()
    assert res[res.metric == 'kendall_b'].ci_low.isna().all()    # intervals only where asked (ci_metrics)


def test_summary_and_comparisons_over_seasons(report):
    summ = pd.DataFrame(report['summary'])
    ens = summ[(summ.method == 'ensemble')]
    assert (ens.n_seasons == 2).all() and (ens.sd >= 0).all()
    assert (summ[summ.method == 'prior_player_rating'].n_seasons == 1).all()
    comp = pd.DataFrame(report['comparisons'])
    assert set(comp.baseline) == set(BASELINES) and set(comp.model) == {'ensemble'}
    # ensemble noise 0.4 vs baseline noise 1.0: better at final_rank on Spearman in most cuts
    fr = comp[(comp.target == 'final_rank') & (comp.metric == 'spearman') & (comp.teams == 'league')]
    assert (fr.delta > 0).mean() > 0.8 and fr.better.any()


def test_models_must_cover_every_evaluated_team(league):
    rows, scores = league
    broken = dict(scores); broken['xgb'] = scores['xgb'].copy(); broken['xgb'][5] = np.nan
    with pytest.raises(SetrankError, match="'xgb'"):
        evaluate_run(rows, broken, 'x', n_resamples=5, horizons=(0.25,))
    with pytest.raises(SetrankError, match="missing for models \\['model_a'\\]"):
        evaluate_run(rows, {k: v for k, v in scores.items() if k != 'model_a'}, 'x', n_resamples=5)


def test_championship_odds_are_scored_against_the_champion(league):
    rows, scores = league
    champ = rows.y_playoff_outcome.to_numpy() == 4
    sharp = np.where(champ, 0.9, 0.1/29)                               # 90 % on the actual champion at every cut
    report = evaluate_run(rows, scores, 'x', odds={'ensemble': sharp}, n_resamples=5, horizons=(0.5,), targets=['final_rank'])
    odds = pd.DataFrame(report['odds'])
    ens, uni = odds[odds.method == 'ensemble'], odds[odds.method == 'uniform']
    assert ens.brier.to_numpy() == pytest.approx(0.1**2 + 29*(0.1/29)**2, abs=1e-6)
    assert ens.log_loss.to_numpy() == pytest.approx(-np.log(0.9), abs=1e-6)
    assert uni.log_loss.to_numpy() == pytest.approx(np.log(30), abs=1e-6)
    assert championship_brier(np.eye(30)[0], 1) == 2.0 and championship_log_loss(np.eye(30)[0], 1) == pytest.approx(13.8155, abs=1e-3)
    with pytest.raises(SetrankError, match='do not sum to 1'):
        evaluate_run(rows, scores, 'x', odds={'ensemble': sharp*2}, n_resamples=5, horizons=(0.5,), targets=['final_rank'])


def test_report_files_name_their_inputs_and_hold_every_row(report, league, tmp_path):
    rows, scores = league
    one = rows[(rows.season == '2016-17') & (rows.date_index == 20)]
    ids = np.array([[f'p{t}_{j}' for j in range(3)] for t in range(30)])
    pred = build_predictions(one, {m: scores[m][one.index] for m in MODEL_NAMES},
                             {'weights': np.full((30, 3), 1/3), 'player_ids': ids}, OutputConfig(odds_simulations=500),
                             run_id='run_042', target='final_rank', calibration=OddsCalibration(0.8, 0.2))
    pfile = write_predictions(pred, tmp_path/'predictions_2016-17.json')
    rep = evaluate_run(rows, scores, 'synthetic: strength + noise', run_id='run_042', prediction_files=[pfile],
                       n_resamples=10, horizons=(0.5, 1.0), ci_metrics=['spearman'])
    assert rep['prediction_files'] == [{'path': str(pfile), 'sha256': hashlib.sha256(pfile.read_bytes()).hexdigest()}]
    paths = write_eval_report(rep, tmp_path, plots=True)
    doc = _strict_loads((tmp_path/'eval_report.json').read_text())
    assert (doc['run_id'], doc['truth_source']) == ('run_042', 'synthetic: strength + noise')
    md = (tmp_path/'eval_report.md').read_text()
    for method in [*MODEL_NAMES, *BASELINES, RANDOM]:
        assert f'| {method} |' in md, method
    for section in ['## rest_of_season — all teams', '## final_rank — all teams', '## playoff_outcome — the 16 playoff teams',
                    '### Spearman (higher is better)', '### rank MAE (lower is better)', 'run_042', pred['run_id'],
                    hashlib.sha256(pfile.read_bytes()).hexdigest()[:16], '± ', '(n=1)']:
        assert section in md, section
    pngs = sorted(p.name for p in tmp_path.glob('*.png'))
    assert pngs == ['ranks_2016-17.png', 'spearman_by_horizon_final_rank.png', 'spearman_by_horizon_playoff_outcome.png',
                    'spearman_by_horizon_playoff_outcome_playoff.png', 'spearman_by_horizon_rest_of_season.png',
                    'title_odds_2016-17.png']                   # rank and odds plots of the end-of-season predictions
    for extra in [plot_rank_scatter(pred, tmp_path/'ranks.png'), plot_title_odds(pred, tmp_path/'odds.png')]:
        assert extra.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' and extra.stat().st_size > 10_000
    assert not [f for f in os.listdir(tmp_path) if f.endswith('.tmp')]
    assert eval_report_markdown(doc) == md                       # the markdown is a pure function of the JSON


def test_report_is_reproducible(league):
    rows, scores = league
    kw = dict(n_resamples=20, seed=3, horizons=(0.5,), ci_metrics=['spearman'])
    a = evaluate_run(rows, scores, 'x', **kw)
    b = evaluate_run(rows, scores, 'x', **kw)
    assert json.dumps(a, allow_nan=False) == json.dumps(b, allow_nan=False)
    # adding a method does not move another method's interval (each list has its own keyed generator)
    c = evaluate_run(rows, {**scores, 'extra': scores['rf'] + 1}, 'x', **kw)
    pick = lambda r: [x for x in r['results'] if x['method'] == 'ensemble']
    assert pick(a) == pick(c)


def test_ablation_table_renders_decisions():
    md = ablation_table([('Elo with margin of victory', 0.016, -0.004, 0.035),
                         {'change': 'ridge plus-minus ratings', 'mean': 0.035, 'ci_low': 0.012, 'ci_high': 0.058},
                         ('forced keep', -0.01, -0.02, 0.0, True)])
    lines = md.strip().splitlines()
    assert lines[0] == '| change | Δ Spearman | 95 % interval | decision |' and len(lines) == 5
    assert lines[2].endswith('| dropped |') and lines[3].endswith('| kept |') and lines[4].endswith('| kept |')
    assert 'kept' in ablation_table([('x', -0.5, -0.9, -0.1)], 'Δ rank MAE', higher_is_better=False)


def test_rank_metrics_are_the_baselines_functions():
    import setrank.baselines as b
    m = rank_metrics()
    assert m['spearman'] is b.spearman and m['kendall_b'] is b.kendall_b and m['rank_mae'] is b.rank_mae
    assert m['ndcg_at_8'].func is b.ndcg_at_k and m['ndcg_at_8'].keywords == {'k': 8}


@pytest.mark.slow
def test_real_data_baselines_match_the_baselines_table_and_design(nba_dir):
    "On the nine real seasons, evaluate_run scores the baselines exactly as setrank.baselines does (DESIGN §3 points)."
    from setrank.baselines import baselines_table
    from setrank.config import TrainingConfig
    from setrank.features import compute_features
    from setrank.targets import as_of_grid
    tables = {'teams': pd.read_csv(nba_dir/'teams.csv'), 'team_games': pd.read_parquet(nba_dir/'team_games.parquet'),
              'player_games': pd.read_parquet(nba_dir/'player_games.parquet'),
              'player_dnp': pd.read_parquet(nba_dir/'player_dnp.parquet')}
    fs = compute_features(tables, TrainingConfig(), as_of_grid(tables['team_games'], horizons=HORIZONS))
    scores = baseline_scores(fs.rows, tables['team_games'].season.unique())
    rep = evaluate_run(fs.rows, scores, f'real NBA data {nba_dir}', models=['point_diff'], horizons=HORIZONS, ci_metrics=())
    ours = pd.DataFrame(rep['summary'])
    theirs = baselines_table(tables, features=fs).rename(columns={'baseline': 'method'})
    both = ours.merge(theirs, on=['method', 'target', 'teams', 'horizon', 'metric'], suffixes=('', '_b'))
    assert len(both) == len(theirs) == (len(BASELINES) + 1)*12*4   # every row of their table (random included) is in ours
    np.testing.assert_allclose(both['mean'], both['mean_b'], atol=1e-6)
    np.testing.assert_allclose(both['sd'], both['sd_b'], atol=1e-6)
    assert (both.n_seasons == both.n_seasons_b).all()
    pdiff = ours[(ours.method == 'point_diff') & (ours.target == 'rest_of_season') & (ours.metric == 'spearman') & (ours.teams == 'league')]
    np.testing.assert_allclose(pdiff.sort_values('horizon')['mean'], [0.669, 0.694, 0.653], atol=0.002)
    assert (pdiff.n_seasons == 9).all()

def test_report_is_byte_identical_under_two_hash_seeds():
    "Same inputs, same report: the summary's row order must not follow Python's per-process string hashing."
    import subprocess, sys
    code = ("import json, sys; sys.path.insert(0, 'tests'); from test_evaluate import _league; "
            "from setrank.evaluate import evaluate_run; rows, scores = _league(); "
            "r = evaluate_run(rows, scores, 'x', n_resamples=5, seed=1, ci_metrics=['spearman']); "
            "print(json.dumps([r['summary'], r['comparisons']]))")
    out = [subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True,
                          env={**os.environ, 'PYTHONHASHSEED': seed}).stdout for seed in ('1', '2')]
    assert out[0] == out[1] and len(out[0]) > 1000


def _first_mention_defines(md, method):
    "The line where `method` first appears carries its gloss (a sentence) or its definition (the ranking table)."
    line = next((l for l in md.splitlines() if f'`{method}`' in l or f'| {method} |' in l), None)
    return line is not None and (describe_method(method) in line or describe_method(method, long=True) in line)


def test_eval_report_opens_with_headline_and_ranking_and_defines_every_name(league, tmp_path):
    "The report a person opens: headline in words, then the ranking, then plots; each method defined where it first appears."
    rows, scores = league
    scores = {**scores, 'prior': scores['win_pct']*0.5 + scores['ensemble']*0.5}   # the pipeline's hand-made prior
    odds = np.exp(2*scores['ensemble']); odds /= pd.Series(odds).groupby([rows.season, rows.date_index]).transform('sum').to_numpy()
    rep = evaluate_run(rows, scores, 'synthetic: strength + noise', run_id='run_042', n_resamples=50, seed=7,
                       ci_metrics=['spearman'], odds={'ensemble': odds})
    write_eval_report(rep, tmp_path, plots=True)
    md = (tmp_path/'eval_report.md').read_text()
    lines = md.splitlines()
    sections = [l for l in lines if l.startswith('## ')]
    assert sections[:4] == ['## Headline', '## Ranking', '## Plots', '## How this was measured']
    assert lines.index('## Headline') < 5                               # nothing but the title line before it
    head = md.split('## Ranking')[0]
    assert 'In short' in head and head.count('ranks best') == 4 and head.count('paired Δ') == 4
    summary = pd.DataFrame(rep['summary'])
    for h, target, teams in [(0.25, 'rest_of_season', 'league'), (1.0, 'playoff_outcome', 'playoff')]:
        cell = summary[(summary.horizon == h) & (summary.target == target) & (summary.teams == teams)
                       & (summary.metric == 'spearman') & (summary.method != RANDOM)]
        best = cell.loc[cell['mean'].idxmax()]
        bullet = next(l for l in lines if l.startswith(f"- **{'end' if h == 1 else '25%'}**"))
        assert f"`{best.method}`" in bullet.split('ranks best')[0] and f"{best['mean']:.3f}" in bullet
        assert ('excludes zero' in bullet) or ('includes zero' in bullet)
    named = set(rep['settings']['models']) | set(rep['settings']['baselines']) | {'uniform'}
    assert named <= set(METHODS), named - set(METHODS)
    assert 'no description' not in md
    for m in named: assert _first_mention_defines(md, m), f'{m} is not defined where it first appears'
    ranking = md.split('## Ranking')[1].split('## Plots')[0]
    ranked = re.findall(r'^\| (\d+) \| `(\w+)` \|', ranking, re.M)
    assert [int(r) for r, _ in ranked] == list(range(1, len(ranked) + 1)) and len(ranked) == len(named) - 2
    for target in re.findall(r'\]\(([^)]+\.png)\)', md): assert (tmp_path/target).exists(), target


def test_rank_plot_legend_hides_no_team(monkeypatch, tmp_path):
    "The predicted-vs-actual plot: the legend sits off the diagonal, so no team's point or label is under it."
    import setrank.evaluate as ev
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.transforms import Bbox
    drawn = []
    monkeypatch.setattr(ev, 'write_png', lambda path, fig: drawn.append(fig) or path)
    conf = np.array(['East', 'West']*15)
    strength = np.linspace(2, -2, 30)
    attn = {'weights': np.full((30, 2), 0.5), 'player_ids': np.array([['a', 'b']]*30), 'fallback': np.zeros(30, bool)}
    covered = []
    for seed in range(8):                                                 # truths near the prediction, as in a real run
        truth = strength + np.random.default_rng(seed).normal(0, 0.5, 30)
        rows = pd.DataFrame({'season': '2023-24', 'as_of': pd.Timestamp('2024-04-14'), 'team_id': np.arange(30),
                             'team': [f'T{i:02d}' for i in range(30)], 'conference': conf, 'y_final_rank': truth})
        pred = build_predictions(rows, {m: strength for m in MODEL_NAMES}, attn, OutputConfig(odds_simulations=200),
                                 target='final_rank')
        ev.plot_rank_scatter(pred, tmp_path/'ranks.png')
        fig = drawn[-1]
        renderer = FigureCanvasAgg(fig).get_renderer(); fig.draw(renderer)
        for ax in fig.axes:
            legend = ax.get_legend().get_window_extent(renderer)
            assert len(ax.texts) == 15
            covered += [(seed, a.get_text()) for a in ax.texts if a.get_window_extent(renderer).overlaps(legend)]
            r = np.sqrt(ax.collections[0].get_sizes()[0]) / 2 * fig.dpi / 72          # a marker's radius in pixels
            points = ax.transData.transform(ax.collections[0].get_offsets())
            covered += [(seed, f'the point at {tuple(int(v) for v in p)}') for p in points
                        if Bbox.from_extents(p[0] - r, p[1] - r, p[0] + r, p[1] + r).overlaps(legend)]
    assert not covered, f'the legend covers {covered}'
