"Model A: set attention faithfulness and fallback, ListMLE, stable ids, reproducibility, checkpoints, learning."
import itertools, json, math, os, subprocess, sys, warnings
from pathlib import Path
import numpy as np, pytest, torch
from setrank.config import SeasonSplit, SetrankError, load_config
from setrank.attention import SetAttention, minutes_share
from setrank.baselines import mean_list_spearman
from setrank.deepset import (DeepSetRank, AttentionDiagnosticWarning, _diagnostic_warnings, _toy_featureset, build_vocab,
                             encode_players, listmle_loss, load_model_a, save_model_a, training_lists)
from setrank.model_a import attention_precision, oof_model_a, predict_model_a, train_model_a

REPO = Path(__file__).resolve().parents[1]

@pytest.fixture(autouse=True, scope='module')
def one_thread():
    "These models are tiny: one intra-op thread is as fast and does not thrash a busy CI machine."
    before = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

@pytest.fixture(scope='module')
def toy():
    return _toy_featureset(n_seasons=3, n_dates=20, teams_per_conference=5, roster_size=8, seed=3)

def small_cfg(**overrides):
    base = {'model_a.epochs': 3, 'model_a.hidden_dim': 16, 'model_a.heads': 2, 'model_a.lists_per_batch': 4}
    return load_config(overrides={**base, **overrides})

SPLIT = SeasonSplit(train=['2015-16'], validation=['2016-17'], test='2017-18')

def _values(attn, x, mask):
    with torch.no_grad():
        return attn.v_proj(x).view(*x.shape[:2], attn.heads, attn.head_dim).masked_fill(mask[:, :, None, None], 0)

# ---- SetAttention ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize('sigma_reparam', [False, True])
@pytest.mark.parametrize('minutes_prior', [0.0, 1.0, 2.5])
def test_pooled_output_equals_weighted_sum_of_values_per_head(sigma_reparam, minutes_prior):
    torch.manual_seed(0)
    attn = SetAttention(12, heads=3, sigma_reparam=sigma_reparam, minutes_prior=minutes_prior).eval()
    x = torch.randn(5, 7, 12); mask = torch.rand(5, 7) < 0.3; mask[4] = True
    minutes = torch.rand(5, 7)*35; minutes[2] = 0                     # team 2: no minutes -> prior skipped
    bias = torch.zeros(5, 7); bias[1] = float('nan')                   # team 1: fallback weights
    with torch.no_grad(): out = attn(x, mask, minutes, logit_bias=bias)
    by_hand = torch.einsum('thp,tphd->thd', out.weights, _values(attn, x, mask)).reshape(5, 12)
    torch.testing.assert_close(out.pooled, by_hand, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.mean_weights, out.weights.mean(1))
    assert out.fallback[1] and out.fallback[4] and not out.fallback[0]

def test_sigma_reparam_updates_power_iteration_once_per_training_forward():
    from setrank.attention import SigmaReparamLinear
    layer = SigmaReparamLinear(6, 6, init_iterations=0)
    u0 = layer.u.clone(); layer.eval()(torch.randn(2, 6)); assert torch.equal(layer.u, u0)
    layer.train()(torch.randn(2, 6)); assert not torch.equal(layer.u, u0)

@pytest.mark.parametrize('bad', [float('-inf'), float('nan'), float('inf')])
def test_fallback_weights_used_when_logits_are_not_finite_and_gradients_stay_finite(bad):
    torch.manual_seed(1)
    attn = SetAttention(8, heads=2).train()
    x = torch.randn(3, 5, 8, requires_grad=True); mask = torch.zeros(3, 5, dtype=torch.bool); mask[:, 4] = True
    minutes = torch.rand(3, 5)*30
    bias = torch.zeros(3, 5)
    bias[0] = bad if bad == float('-inf') else 0.
    if bad != float('-inf'): bias[0, 1] = bad                          # one NaN / +inf logit spoils the team
    out = attn(x, mask, minutes, logit_bias=bias)
    share, _ = minutes_share(minutes, mask)
    torch.testing.assert_close(out.weights[0].detach(), share[0].expand(2, -1))
    assert out.fallback.tolist() == [True, False, False]
    torch.testing.assert_close(out.pooled[0].detach(),
                               torch.einsum('hp,phd->hd', share[0].expand(2, -1), _values(attn, x, mask)[0]).reshape(8))
    (out.pooled**2).sum().backward()
    assert torch.isfinite(x.grad).all() and all(torch.isfinite(p.grad).all() for p in attn.parameters())

def test_model_uses_fallback_when_attention_logits_are_nan_and_gradients_stay_finite(monkeypatch):
    torch.manual_seed(2)
    net = DeepSetRank(n_players=20, n_player_features=3, n_team_features=0, hidden_dim=8, heads=2).train()
    real_logits = net.attention.logits
    def broken_logits(x, mask, minutes=None):
        logits, share, has = real_logits(x, mask, minutes)
        return logits.clone().index_fill(0, torch.tensor([0]), float('nan')), share, has
    monkeypatch.setattr(net.attention, 'logits', broken_logits)
    idx = torch.randint(2, 20, (3, 4)); xs = torch.randn(3, 4, 3); mins = torch.rand(3, 4)*30
    out = net(idx, xs, mins, torch.zeros(3, 4, dtype=torch.bool))
    assert out.fallback.tolist() == [True, False, False] and torch.isfinite(out.score).all()
    torch.testing.assert_close(out.weights[0].detach(), mins[0]/mins[0].sum())
    out.score.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)

def test_zero_minutes_sum_leaves_attention_unchanged():
    torch.manual_seed(3)
    with_prior = SetAttention(8, heads=2, minutes_prior=1.5).eval()
    without = SetAttention(8, heads=2, minutes_prior=0.0).eval(); without.load_state_dict(with_prior.state_dict())
    x, mask = torch.randn(4, 6, 8), torch.zeros(4, 6, dtype=torch.bool)
    with torch.no_grad():
        a, b = with_prior(x, mask, torch.zeros(4, 6)), without(x, mask, torch.zeros(4, 6))
        tiny = with_prior(x, mask, torch.full((4, 6), 0.1))           # sum 0.6 <= threshold 1.0: also skipped
    torch.testing.assert_close(a.weights, b.weights); torch.testing.assert_close(tiny.weights, b.weights)
    assert not a.fallback.any()

def test_fully_masked_team_gets_finite_score_and_gradients():
    torch.manual_seed(4)
    net = DeepSetRank(n_players=10, n_player_features=3, n_team_features=2, hidden_dim=8, heads=2, sigma_reparam=True)
    mask = torch.zeros(2, 5, dtype=torch.bool); mask[1] = True
    out = net(torch.randint(2, 10, (2, 5)).masked_fill(mask, 0), torch.randn(2, 5, 3), torch.rand(2, 5)*30, mask,
              torch.randn(2, 2))
    assert torch.isfinite(out.score).all() and out.fallback.tolist() == [False, True]
    assert torch.equal(out.weights[1].detach(), torch.zeros(5))
    out.score.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)

# ---- ListMLE -----------------------------------------------------------------------------------------------------

def test_listmle_matches_tf_ranking_documented_value():
    assert listmle_loss(torch.tensor([[.6, .8]]), torch.tensor([[1., 0.]])).item() == pytest.approx(0.7981389, abs=1e-6)

def test_listmle_is_shift_invariant():
    g = torch.Generator().manual_seed(0)
    s, y = torch.randn(8, 15, generator=g), torch.randn(8, 15, generator=g)
    for shift in (-300., 7., 1e3):
        torch.testing.assert_close(listmle_loss(s + shift, y), listmle_loss(s, y), rtol=1e-4, atol=1e-3)

def test_listmle_equals_brute_force_plackett_luce():
    g = torch.Generator().manual_seed(1)
    for L in range(1, 7):
        s = torch.randn(L, generator=g).double()
        perms = list(itertools.permutations(range(L)))
        total = 0.
        for order in perms:
            rest, logp = list(order), 0.
            for i in order:
                logp += s[i].item() - math.log(sum(math.exp(s[j].item()) for j in rest)); rest.remove(i)
            labels = torch.zeros(L); labels[list(order)] = torch.arange(L, 0, -1).float()
            loss = listmle_loss(s.float()[None], labels[None]).item()
            assert loss == pytest.approx(-logp, abs=1e-4)
            total += math.exp(-loss)
        assert total == pytest.approx(1., abs=1e-4)

def test_listmle_of_constant_scores_is_log_factorial():
    for L in (2, 5, 15):
        mask = torch.tensor([[False]*L + [True]*3])
        loss = listmle_loss(torch.full((1, L + 3), -2.5), torch.randn(1, L + 3), mask)
        assert loss.item() == pytest.approx(math.lgamma(L + 1), rel=1e-5)

def test_listmle_does_not_clamp_scores_and_ignores_padding():
    s = torch.tensor([[0., 120., 5., float('nan')]], requires_grad=True)
    loss = listmle_loss(s, torch.tensor([[1., 0., .5, 9.]]), torch.tensor([[False, False, False, True]]))
    loss.backward()
    assert loss.item() > 100 and torch.isfinite(s.grad).all() and s.grad[0, 3] == 0 and s.grad[0, 0] < 0

def test_listmle_breaks_ties_at_random_reproducibly():
    run = lambda seed: listmle_loss(torch.tensor([[0., 1., 2.]]), torch.tensor([[1., 1., 0.]]),
                                    generator=torch.Generator().manual_seed(seed)).item()
    assert len({round(run(i), 5) for i in range(30)}) == 2 and run(7) == run(7)

# ---- stable ids ----------------------------------------------------------------------------------------------

_HASH_SCRIPT = r"""
import json, numpy as np
from setrank.deepset import build_vocab, encode_players
ids = sorted({f'player_{i}' for i in range(50)}, key=hash)          # an order that depends on the hash seed
grid = np.array(ids + ['', '', '', '', 'rookie', '']).reshape(4, 14)  # the rookie is not in the vocabulary
vocab = build_vocab(np.where(grid == 'rookie', '', grid))
index = encode_players(grid, vocab)
print(json.dumps({'first': ids[0], 'vocab': vocab,
                  'index': sorted({str(p): int(i) for p, i in zip(grid.ravel(), index.ravel())}.items())}))
"""

def test_player_indices_identical_under_two_hash_seeds():
    outs = []
    for seed in ('1', '2'):
        env = dict(os.environ, PYTHONHASHSEED=seed, OMP_NUM_THREADS='1')
        r = subprocess.run([sys.executable, '-c', _HASH_SCRIPT], capture_output=True, text=True, env=env, cwd=REPO, check=True)
        outs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    assert outs[0]['first'] != outs[1]['first']          # the seeds really change Python's hash order
    assert outs[0]['index'] == outs[1]['index'] and outs[0]['vocab'] == outs[1]['vocab']

def test_unknown_and_padded_players_get_reserved_indices():
    vocab = build_vocab(np.array([['a', 'b', '']]))
    assert encode_players(np.array([['b', 'rookie', '']]), vocab).tolist() == [[3, 1, 0]]

# ---- lists ---------------------------------------------------------------------------------------------------

def test_training_lists_keep_both_conferences_and_all_seasons(toy):
    cfg = load_config()
    for stride in (1, 2, 3):
        lists = training_lists(toy.rows, ['2015-16', '2016-17', '2017-18'], cfg.training, stride=stride)
        first = toy.rows.iloc[lists[:, 0]]
        assert first.groupby(['season', 'conference']).size().shape == (6,)
        assert (first.groupby(['season', 'conference']).size().nunique()) == 1
        members = toy.rows.iloc[lists[lists >= 0]]
        assert members.games_played.min() >= cfg.training.min_games and members.y_rest_of_season.notna().all()
        per_list = [toy.rows.iloc[l[l >= 0]] for l in lists]
        assert all(p.as_of.nunique() == 1 and p.conference.nunique() == 1 for p in per_list)

# ---- training ------------------------------------------------------------------------------------------------

def test_same_seed_gives_same_weights_and_metrics(toy, tmp_path):
    cfg = small_cfg(**{'model_a.sigma_reparam': True})
    a, ha = train_model_a(toy, SPLIT, cfg, progress=False)
    b, hb = train_model_a(toy, SPLIT, cfg, progress=False)
    assert [e['validation_spearman'] for e in ha['epochs']] == [e['validation_spearman'] for e in hb['epochs']]
    assert [e['loss'] for e in ha['epochs']] == [e['loss'] for e in hb['epochs']]
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    c, _ = train_model_a(toy, SPLIT, small_cfg(**{'model_a.sigma_reparam': True, 'repro.seed': 7}), progress=False)
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values()))

def test_train_history_has_per_epoch_diagnostics(toy, tmp_path):
    model, history = train_model_a(toy, SPLIT, small_cfg(), out_dir=tmp_path, progress=False)
    saved = json.loads((tmp_path/'train_history.json').read_text())
    assert saved['epochs'] == history['epochs'] and len(saved['epochs']) == 3
    e = saved['epochs'][-1]
    for key in ('loss', 'validation_spearman', 'attention_entropy', 'attention_entropy_normalized', 'max_weight',
                'fallback_share', 'grad_norm', 'lr'):
        assert e[key] is not None, key
    assert len(e['attention_entropy']) == 2
    assert set(e['grad_norm']) >= {'attention.q', 'attention.k', 'attention.v', 'encoder', 'score_head', 'total'}
    assert 'NaN' not in (tmp_path/'train_history.json').read_text()
    assert (tmp_path/'model_a.pt').exists()

def test_attention_collapse_and_plateau_raise_warnings():
    hist = {'epochs': [dict(epoch=i, loss=1.5, attention_entropy=[0.01, 1.2], attention_entropy_normalized=[.1, .8],
                            uniform_entropy=2.0) for i in range(1, 5)]}
    with pytest.warns(AttentionDiagnosticWarning) as caught: _diagnostic_warnings(hist)
    text = ' '.join(str(w.message) for w in caught)
    assert 'collapsed' in text and 'head 0' in text and 'plateau' in text

def test_checkpoint_round_trip_and_schema_mismatch(toy, tmp_path):
    model, _ = train_model_a(toy, SPLIT, small_cfg(**{'model_a.epochs': 1, 'model_a.team_context': True}), progress=False)
    path = save_model_a(model, tmp_path/'a.pt')
    loaded = load_model_a(path, toy)
    rows = np.arange(40)
    np.testing.assert_allclose(predict_model_a(loaded, toy, rows)['scores'], predict_model_a(model, toy, rows)['scores'],
                               rtol=1e-6)
    ck = torch.load(path, weights_only=True)
    assert set(ck) >= {'format', 'arch', 'state_dict', 'vocab', 'standardizer', 'feature_schema', 'target'}
    assert ck['vocab'] == model.vocab and ck['arch'] == model.arch
    import copy
    other = copy.deepcopy(toy); other.schema.version = 'toy-2'
    with pytest.raises(SetrankError, match='version'): load_model_a(path, other)
    other = copy.deepcopy(toy); other.schema.team_features = ['win_pct_to_date', 'elo']
    with pytest.raises(SetrankError, match='elo'): predict_model_a(loaded, other)
    roster_only, _ = train_model_a(toy, SPLIT, small_cfg(**{'model_a.epochs': 1}), progress=False)   # the default
    assert roster_only.arch['n_team_features'] == 0 and roster_only.arch['skip_index'] == 0
    np.testing.assert_array_equal(predict_model_a(roster_only, other, rows)['scores'], predict_model_a(roster_only, toy, rows)['scores'])
    with pytest.raises(SetrankError, match='nope.pt'): load_model_a(tmp_path/'nope.pt')
    (tmp_path/'junk.pt').write_bytes(b'not a checkpoint')
    with pytest.raises(SetrankError, match='junk.pt'): load_model_a(tmp_path/'junk.pt')

def test_unseen_players_score_finitely(toy):
    model, _ = train_model_a(toy, SPLIT, small_cfg(**{'model_a.epochs': 1}), progress=False)
    import copy
    other = copy.deepcopy(toy); other.player_ids = np.where(other.mask, '', 'rookie')
    pred = predict_model_a(model, other, np.arange(30))
    assert np.isfinite(pred['scores']).all() and not pred['fallback'].any()

def test_training_learns_the_toy_league():
    big = _toy_featureset(n_seasons=4, n_dates=30, teams_per_conference=8, seed=1)
    cfg = load_config(overrides={'model_a.epochs': 10, 'model_a.hidden_dim': 32, 'model_a.heads': 2,
                                 'model_a.lists_per_batch': 4, 'model_a.embed_dim': 0})
    split = SeasonSplit(train=['2015-16', '2016-17'], validation=['2017-18'], test='2018-19')
    model, history = train_model_a(big, split, cfg, progress=False)
    test = np.flatnonzero((big.rows.season == '2018-19').to_numpy())
    pred = predict_model_a(model, big, test)
    lists = training_lists(big.rows.iloc[test].reset_index(drop=True), ['2018-19'], cfg.training)
    rho = mean_list_spearman(pred['scores'], big.truth['strength'][test], lists)
    assert rho > 0.6, rho
    rng = np.random.default_rng(0)
    precision = attention_precision(pred['weights'], big.truth['contribution'][test], big.mask[test])
    assert precision > attention_precision(rng.random(big.mask[test].shape), big.truth['contribution'][test], big.mask[test]) + 0.1

def test_oof_uses_only_earlier_seasons(toy, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        oof = oof_model_a(toy, ['2016-17', '2017-18'], small_cfg(**{'model_a.epochs': 1}), out_dir=tmp_path)
    season = toy.rows.season.to_numpy()
    assert oof.loc[np.flatnonzero(season == '2016-17')].isna().all()      # needs two earlier seasons
    assert oof.loc[np.flatnonzero(season == '2017-18')].notna().all()
    h = json.loads((tmp_path/'oof_2017-18'/'train_history.json').read_text())
    assert h['train_seasons'] == ['2015-16'] and h['validation_seasons'] == ['2016-17']

def test_model_a_trains_on_the_real_feature_builder_over_a_synthetic_league(tmp_path):
    "End to end with setrank.synthetic + setrank.features: finite scores, skill on the held-out season, schema checks."
    from setrank.features import build_features
    from setrank.synthetic import synth_league
    cfg = load_config(overrides={'model_a.epochs': 3, 'model_a.device': 'cpu', 'training.as_of_stride': 4})
    tables = synth_league(n_seasons=3, seed=11)
    fs = build_features(tables, cfg.training)
    seasons = sorted(fs.rows.season.unique())
    split = SeasonSplit(train=seasons[:1], validation=seasons[1:2], test=seasons[2])
    model, history = train_model_a(fs, split, cfg, out_dir=tmp_path, progress=False)
    test = np.flatnonzero((fs.rows.season == split.test).to_numpy())
    pred = predict_model_a(load_model_a(tmp_path/'model_a.pt', fs), fs, test)
    assert np.isfinite(pred['scores']).all() and pred['weights'].shape == fs.mask[test].shape
    lists = training_lists(fs.rows.iloc[test].reset_index(drop=True), [split.test], cfg.training)
    assert mean_list_spearman(pred['scores'], fs.rows.y_rest_of_season.to_numpy()[test], lists) > 0.3
    assert model.feature_schema['player_features'] == list(fs.schema.player_features)

def _final_bar(stderr:str)->str:
    "The last state tqdm drew (it redraws in place with carriage returns)."
    return [s for s in stderr.replace('\n', '\r').split('\r') if s.strip()][-1]

def test_epoch_bar_ends_full_with_the_reason_on_early_stopping(toy, capsys):
    "Issue #18: the bar stopped at 6/23 on early stopping; it must end at n/n, and say why it stopped."
    _, history = train_model_a(toy, SPLIT, small_cfg(**{'model_a.epochs': 40, 'model_a.patience': 1}), progress=True)
    n = len(history['epochs'])
    assert history['stopped_early'] and n < 40
    last = _final_bar(capsys.readouterr().err)
    assert f'100%' in last and f'| {n}/{n} [' in last, last
    assert f"stopped early: best epoch {history['best_epoch']}" in last and 'no better in 1 epochs' in last, last
    _, history = train_model_a(toy, SPLIT, small_cfg(), progress=True)     # every epoch run: 3/3, no reason given
    last = _final_bar(capsys.readouterr().err)
    assert not history['stopped_early'] and '| 3/3 [' in last and 'stopped early' not in last, last
