"Predictions: championship odds (simulation and softmax), ranks, the contributor policy, strict JSON written atomically."
import itertools, json, os
from pathlib import Path

import numpy as np, pandas as pd
import pytest
import torch
from scipy.special import expit

from setrank.config import OutputConfig, SetrankError
from setrank.files import read_json
from setrank.predict import build_predictions, primary_contributors, write_predictions
from setrank.odds import (OddsCalibration, calibrate_scale, calibrate_temperature, championship_odds, game_score_diffs,
                          playoff_seeds, simulate_championship, softmax_odds)

CONF = np.array(['East']*15 + ['West']*15)


def _scores(seed=0):
    return np.random.default_rng(seed).normal(0, 1, 30)


def _strict_loads(text):
    def bad(name): raise AssertionError(f'JSON contains {name}')
    return json.loads(text, parse_constant=bad)


def _example(n_players=6, seed=0):
    rng = np.random.default_rng(seed)
    s = _scores(seed)
    rows = pd.DataFrame({'season': '2023-24', 'as_of': pd.Timestamp('2024-01-10'), 'team_id': np.arange(1610612737, 1610612767),
                         'team': [f'T{i:02d}' for i in range(30)], 'conference': CONF,
                         'y_rest_of_season': s + rng.normal(0, .4, 30), 'y_final_rank': s + rng.normal(0, .3, 30),
                         'y_playoff_outcome': np.nan})
    models = {'ensemble': s, 'model_a': s + rng.normal(0, .3, 30), 'xgb': s + rng.normal(0, .3, 30),
              'rf': s + rng.normal(0, .3, 30)}
    weights = rng.dirichlet(np.ones(n_players), 30)
    ids = np.array([[f'pl{t:02d}{j}' for j in range(n_players)] for t in range(30)])
    ids[7, 4:] = ''; weights[7, 4:] = 0; weights[7] /= weights[7].sum()          # a short roster: padded slots
    fallback = np.zeros(30, bool)
    fallback[[2, 9]] = True                                                        # attention unusable: fallback pooled
    weights[2] = [0.4, 0.3, 0.2, 0.1, 0.0, 0.0]                                    # minutes fallback with idle players
    weights[9] = np.nan                                                            # and a team with nothing usable
    attention = {'weights': weights, 'player_ids': ids, 'fallback': fallback,
                 'player_names': np.char.upper(ids)}
    return rows, models, attention


@pytest.mark.parametrize('method', ['simulation', 'softmax'])
def test_odds_sum_to_one_and_follow_the_scores(method):
    s = _scores()
    odds = championship_odds(s, CONF, method, OddsCalibration(scale=0.6, home_advantage=0.2, temperature=0.5),
                             n_simulations=20000, seed=1)
    assert abs(odds.sum() - 1) < 1e-12 and np.isfinite(odds).all() and (odds >= 0).all()
    assert odds.max() > 3/30, 'odds collapsed toward uniform (lesson 10)'
    assert odds.argmax() == s.argmax()
    top = np.argsort(-s)[:6]
    assert len(np.unique(odds[top])) == 6, 'different scores must give different odds'


@pytest.mark.parametrize('method', ['simulation', 'softmax'])
def test_odds_are_finite_for_huge_scores(method):
    s = _scores()
    s[11] = 1e6
    odds = championship_odds(s, CONF, method, OddsCalibration(scale=1.0, temperature=1.0), n_simulations=2000)
    assert np.isfinite(odds).all() and odds[11] == pytest.approx(1.0)
    shifted = championship_odds(_scores() + 1e6, CONF, method, OddsCalibration(scale=0.6, temperature=0.5), n_simulations=5000, seed=3)
    base = championship_odds(_scores(), CONF, method, OddsCalibration(scale=0.6, temperature=0.5), n_simulations=5000, seed=3)
    np.testing.assert_allclose(shifted, base, atol=1e-9)          # only score differences matter


def test_equal_scores_give_uniform_odds():
    np.testing.assert_allclose(softmax_odds(np.full(30, 3.0)), np.full(30, 1/30), rtol=1e-12)
    sim = simulate_championship(np.zeros(30), CONF, scale=1.0, home_advantage=0.0, n_simulations=64000, seed=0)
    assert (sim > 0).sum() == 16
    np.testing.assert_allclose(sim[sim > 0], 1/16, atol=4*np.sqrt(1/16*15/16/64000))


def _series(p_home, p_away):
    venue = [1, 1, -1, -1, 1, -1, 1]
    ps = [p_home if v > 0 else p_away for v in venue]
    return sum(np.prod([p if w else 1 - p for p, w in zip(ps, ws)])
               for ws in itertools.product([0, 1], repeat=7) if sum(ws) >= 4)


def _exact_bracket(s, conf, k, h):
    "Exact title probabilities by dynamic programming over the bracket (who reaches each node, with what probability)."
    def win(a, b, a_home):
        d = s[a] - s[b]
        return _series(expit(k*d + h), expit(k*d - h)) if a_home else 1 - _series(expit(-k*d + h), expit(-k*d - h))
    def merge(da, db, home_first):
        out = {}
        for a, pa in da.items():
            for b, pb in db.items():
                a_home = home_first(a, b)
                p = win(a, b, a_home)
                out[a] = out.get(a, 0) + pa*pb*p
                out[b] = out.get(b, 0) + pa*pb*(1 - p)
        return out
    champs = []
    for c, seeded in playoff_seeds(s, conf).items():
        seed_no = {t: i for i, t in enumerate(seeded)}
        nodes = [{seeded[i]: 1.0} for i in [0, 7, 3, 4, 1, 6, 2, 5]]
        while len(nodes) > 1:
            nodes = [merge(nodes[i], nodes[i+1], lambda a, b: seed_no[a] < seed_no[b]) for i in range(0, len(nodes), 2)]
        champs.append(nodes[0])
    final = merge(champs[0], champs[1], lambda a, b: (s[a] > s[b]) or (s[a] == s[b] and a < b))
    out = np.zeros(len(s))
    for t, p in final.items(): out[t] = p
    return out


def test_simulation_matches_the_exact_bracket_probabilities():
    s, k, h = _scores(5), 0.8, 0.25
    exact = _exact_bracket(s, CONF, k, h)
    assert abs(exact.sum() - 1) < 1e-9
    n = 100000
    sim = simulate_championship(s, CONF, k, h, n_simulations=n, seed=11)
    se = np.sqrt(exact*(1 - exact)/n)
    assert np.all(np.abs(sim - exact) <= 4.5*se + 1e-4), np.c_[sim, exact][exact > 0]


def test_calibrations_recover_known_parameters():
    rng = np.random.default_rng(0)
    d = rng.normal(0, 2, 30000); home = rng.choice([-1, 0, 1], 30000)
    won = rng.random(30000) < expit(0.9*d + 0.35*home)
    fit = calibrate_scale(d, won, home)
    assert fit.scale == pytest.approx(0.9, abs=0.04) and fit.home_advantage == pytest.approx(0.35, abs=0.05)
    lists = [rng.normal(0, 1, 30) for _ in range(2000)]
    champs = [rng.choice(30, p=softmax_odds(x, 0.4)) for x in lists]
    assert calibrate_temperature(lists, champs) == pytest.approx(0.4, abs=0.05)
    with pytest.raises(SetrankError): calibrate_scale(d, won[:5])


def test_game_score_diffs_pair_real_games(nba_dir):
    tg = pd.read_parquet(nba_dir/'team_games.parquet')
    tg = tg[tg.season == '2022-23']
    reg = tg[tg.season_type == 'regular']
    win_pct = reg.groupby('team_id').win.mean()
    first = pd.to_datetime(reg.game_date).min()
    score_rows = pd.DataFrame({'season': '2022-23', 'as_of': first, 'team_id': win_pct.index, 'score': win_pct.to_numpy()})
    pairs = game_score_diffs(tg, score_rows)
    assert len(pairs) == len(reg) == 2460
    assert np.allclose(pairs.groupby('game_id').score_diff.sum(), 0)           # both sides of a game mirror each other
    fit = calibrate_scale(pairs.score_diff, pairs.win, pairs.home)
    assert fit.scale > 0 and 0 < fit.home_advantage < 0.5                     # better teams and home teams win more


def test_fallback_attention_is_marked_and_never_lists_zero_weights():
    rows, models, attention = _example()
    pred = build_predictions(rows, models, attention, OutputConfig(top_contributors=5, odds_simulations=1000))
    by_id = {t['team_id']: t['roster_dependence'] for t in pred['teams']}
    ids = rows.team_id.to_numpy()
    flagged, broken, short = by_id[ids[2]], by_id[ids[9]], by_id[ids[7]]
    assert flagged['contributors_are_fallback'] is True and flagged['weight_source'] == 'fallback'
    assert [c['player_id'] for c in flagged['primary_contributors']] == ['pl020', 'pl021', 'pl022', 'pl023']
    assert broken['contributors_are_fallback'] is True and broken['primary_contributors'] == []
    assert all(c['player_id'] != '' for c in short['primary_contributors'])
    for rd in by_id.values():
        assert all(c['attention_weight'] > 0 for c in rd['primary_contributors'])
        assert len(rd['primary_contributors']) <= 5
        w = [c['attention_weight'] for c in rd['primary_contributors']]
        assert w == sorted(w, reverse=True)
    assert sum(not rd['contributors_are_fallback'] for rd in by_id.values()) == 28
    unflagged = primary_contributors(np.zeros((1, 3)), np.array([['a', 'b', 'c']]))
    assert unflagged[0] == {'primary_contributors': [], 'contributors_are_fallback': True, 'weight_source': 'none'}


def test_predictions_file_is_strict_json_with_complete_ranks(tmp_path):
    rows, models, attention = _example()
    pred = build_predictions(rows, models, attention, OutputConfig(odds_simulations=2000), run_id='run_007',
                             calibration=OddsCalibration(0.6, 0.2, fitted_on=['2022-23']), seed=42)
    path = write_predictions(pred, tmp_path/'predictions_2023-24.json')
    doc = _strict_loads(path.read_text())
    assert doc == read_json(path)
    assert (doc['run_id'], doc['season'], doc['as_of'], doc['n_teams']) == ('run_007', '2023-24', '2024-01-10', 30)
    teams = doc['teams']
    assert sorted(t['prediction']['league_rank'] for t in teams) == list(range(1, 31))
    for c in ['East', 'West']:
        assert sorted(t['prediction']['conference_rank'] for t in teams if t['conference'] == c) == list(range(1, 16))
    assert sum(t['prediction']['championship_odds'] for t in teams) == pytest.approx(1.0)
    pct = [t['prediction']['ensemble_percentile'] for t in teams]
    assert pct[0] == 100 and pct[-1] == 0 and pct == sorted(pct, reverse=True)
    t0 = teams[0]
    assert set(t0['analysis']['actual']) == {'rest_of_season', 'final_rank'}       # playoff outcome unknown: absent
    assert t0['analysis']['classification'] in {'overrated', 'underrated', 'as expected'}
    assert set(t0['ensemble_diagnostics']['ranks']) == {'ensemble', 'model_a', 'xgb', 'rf'}
    assert 0 < doc['model_agreement']['mean_pairwise_rank_correlation'] <= 1
    again = build_predictions(rows, models, attention, OutputConfig(odds_simulations=2000), run_id='run_007',
                              calibration=OddsCalibration(0.6, 0.2, fitted_on=['2022-23']), seed=42)
    assert write_predictions(again, tmp_path/'again.json').read_bytes() == path.read_bytes()   # reproducible bytes


def test_rank_delta_classifies_over_and_underrated():
    rows, models, attention = _example()
    s = models['ensemble']
    truth = s.copy()
    best, worst = np.argmax(s), np.argmin(s)
    truth[best], truth[worst] = truth[worst], truth[best]          # the model's #1 actually finished last, and vice versa
    pred = build_predictions(rows.assign(y_rest_of_season=truth), models, attention, OutputConfig(odds_simulations=500))
    by_id = {t['team_id']: t['analysis'] for t in pred['teams']}
    top, bottom = by_id[rows.team_id[best]], by_id[rows.team_id[worst]]
    assert top['rank_delta']['rest_of_season'] == 29 and top['classification'] == 'overrated'
    assert bottom['rank_delta']['rest_of_season'] == -29 and bottom['classification'] == 'underrated'
    assert sum(a['classification'] == 'as expected' for a in by_id.values()) == 28


def test_missing_or_broken_models_abort_with_setrank_error():
    rows, models, attention = _example()
    cfg = OutputConfig(odds_simulations=500)
    for bad, msg in [({k: v for k, v in models.items() if k != 'model_a'}, "['model_a']"),
                     ({**models, 'xgb': np.zeros(29)}, "'xgb'"),
                     ({**models, 'ensemble': np.full(30, np.inf)}, "'ensemble'")]:
        with pytest.raises(SetrankError, match=msg.replace('[', r'\[').replace(']', r'\]')):
            build_predictions(rows, bad, attention, cfg)
    with pytest.raises(SetrankError, match='attention'):
        build_predictions(rows, models, {'weights': attention['weights'][:10], 'player_ids': attention['player_ids']}, cfg)
    with pytest.raises(SetrankError, match='exactly 2 conferences'):
        build_predictions(rows.assign(conference='League'), models, attention, cfg)


def test_write_is_atomic_and_keeps_the_old_file_on_failure(tmp_path):
    path = tmp_path/'predictions.json'
    write_predictions({'ok': 1}, path)
    with pytest.raises(ValueError):
        write_predictions({'ok': float('nan')}, path)
    assert _strict_loads(path.read_text()) == {'ok': 1}
    assert sorted(os.listdir(tmp_path)) == ['predictions.json']


def test_contributors_accept_model_a_tensors_and_small_leagues():
    rows, models, attention = _example()
    head_weights = torch.tensor(np.nan_to_num(attention['weights'])[:, None, :].repeat(2, 1), requires_grad=True)
    attn = {'weights': head_weights, 'player_ids': attention['player_ids'], 'fallback': torch.tensor(attention['fallback'])}
    pred = build_predictions(rows, models, attn, OutputConfig(odds_simulations=500))
    flags = [t['roster_dependence']['contributors_are_fallback'] for t in pred['teams']]
    assert sum(flags) == 2
    # a four-team league (two per conference) still gets a bracket: 2 seeds per conference, odds for everyone
    small = rows.iloc[[0, 1, 15, 16]]
    pred = build_predictions(small, {m: s[[0, 1, 15, 16]] for m, s in models.items()},
                             {k: v[[0, 1, 15, 16]] for k, v in attention.items()}, OutputConfig(odds_simulations=500))
    assert pred['odds']['bracket_teams_per_conference'] == 2
    assert sum(t['prediction']['championship_odds'] for t in pred['teams']) == pytest.approx(1.0)
