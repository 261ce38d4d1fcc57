"Stacking: forward-chained OOF never sees the future, the meta-learner is recorded, orientation is enforced."
import json
import numpy as np
import pandas as pd
import pytest

import setrank.stacking as stacking
from setrank.config import SetrankError, load_config, parse_season
from setrank.model_b import toy_featureset
from setrank.stacking import (Stack, check_orientation, fit_stack, forward_chain_folds, forward_chain_oof,
                              mean_spearman_by_keys, load_stack, oof_frame, oof_model_b, save_stack, zscore_by_list)

SMALL = {'model_b.rf.n_estimators': 30, 'model_b.xgb.n_estimators': 40}
TARGET = 'y_rest_of_season'

@pytest.fixture(scope='module')
def toy():
    return toy_featureset(n_seasons=5)

@pytest.fixture(scope='module')
def cfg():
    return load_config(overrides=SMALL)

@pytest.fixture(scope='module')
def full(toy, cfg):
    "OOF frame of XGB, RF and a least-squares stand-in for Model A, complete rows (2016-17 to 2019-20)."
    oof_b = oof_model_b(toy, cfg)
    X = np.column_stack([np.nan_to_num(toy.rows[toy.schema.team_features].to_numpy(float)), np.ones(len(toy.rows))])
    y = toy.rows[TARGET].to_numpy()
    def lstsq(train, season):
        fit = toy.rows.season.isin(train).to_numpy() & ~np.isnan(y)
        return 7*X[(toy.rows.season == season).to_numpy()] @ np.linalg.lstsq(X[fit], y[fit], rcond=None)[0] + 2
    f = oof_frame(toy, dict(model_a=forward_chain_oof(toy.rows.season, lstsq), xgb=oof_b.xgb.to_numpy(),
                            rf=oof_b.rf.to_numpy()), TARGET)
    return f.dropna()

@pytest.fixture(scope='module')
def frame(full):
    "The OOF rows a stack for test season 2019-20 may be fitted on: earlier seasons only."
    return full[full.season < '2019-20']

def test_oof_folds_train_only_on_seasons_before_the_predicted_one(toy):
    calls = []
    def spy(train, season):
        calls.append((list(train), season))
        return np.zeros(int((toy.rows.season == season).sum()))
    oof = forward_chain_oof(toy.rows.season, spy)
    assert [s for _, s in calls] == ['2016-17', '2017-18', '2018-19', '2019-20']
    for train, season in calls:
        assert train and all(parse_season(t) < parse_season(season) for t in train)
    assert np.isnan(oof[(toy.rows.season == '2015-16').to_numpy()]).all()

def test_model_b_oof_fits_never_see_the_predicted_or_later_seasons(toy, cfg, monkeypatch):
    seen = []
    real_fit = stacking.fit_model_b
    def recording_fit(fs, seasons, cfg, validation_seasons=None, **kw):
        seen.append((list(seasons), list(validation_seasons or [])))
        return real_fit(fs, seasons, cfg, validation_seasons=validation_seasons, **kw)
    monkeypatch.setattr(stacking, 'fit_model_b', recording_fit)
    oof = oof_model_b(toy, cfg, oof_seasons=['2018-19', '2019-20'], early_stopping_seasons=1)
    for (train, valid), predicted in zip(seen, ['2018-19', '2019-20']):
        assert all(parse_season(s) < parse_season(predicted) for s in train + valid)
        assert valid == [max(train + valid)] and not set(train) & set(valid)
    predicted = toy.rows.season.isin(['2018-19', '2019-20']).to_numpy()
    assert oof[predicted].notna().all().all() and oof[~predicted].isna().all().all()

def test_oof_season_without_history_is_refused():
    with pytest.raises(SetrankError, match="'2015-16'"):
        forward_chain_folds(['2015-16', '2016-17'], oof_seasons=['2015-16'])

def test_same_seed_gives_identical_oof(toy, cfg):
    a = oof_model_b(toy, cfg, oof_seasons=['2017-18'])
    b = oof_model_b(toy, cfg, oof_seasons=['2017-18'])
    pd.testing.assert_frame_equal(a, b)

def test_stack_records_ridge_coefficients_and_alpha_as_json(frame, cfg):
    "The record is what ran: RidgeCV's chosen alpha and the ridge coefficients on the list-standardized OOF scores."
    from sklearn.linear_model import Ridge, RidgeCV
    stack = fit_stack(frame, TARGET, cfg.stacking)
    d = json.loads(json.dumps(stack.to_dict(), allow_nan=False))
    models = ['model_a', 'xgb', 'rf']
    z = zscore_by_list(frame, [*models, TARGET])
    assert d['combiner'] == 'ridge' and d['alpha'] == RidgeCV(alphas=cfg.stacking.alphas).fit(z[models], z[TARGET]).alpha_
    ridge = Ridge(alpha=d['alpha']).fit(z[models].to_numpy(), z[TARGET].to_numpy())
    assert list(d['coefficients']) == models
    np.testing.assert_allclose([d['coefficients'][m] for m in models], ridge.coef_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(d['intercept'], ridge.intercept_, atol=1e-12)
    assert set(d['info']['orientation']) == {'model_a', 'xgb', 'rf', 'meta'}
    assert all(c > 0 for c in d['info']['orientation'].values())
    np.testing.assert_array_equal(Stack.from_dict(d).predict(frame), stack.predict(frame))

def test_meta_is_invariant_to_each_base_models_scale_and_shift(frame, cfg):
    "Scores are z-scored within each list, so a rescaled, shifted Model A changes nothing."
    a = fit_stack(frame, TARGET, cfg.stacking)
    b = fit_stack(frame.assign(model_a=100*frame.model_a - 40), TARGET, cfg.stacking)
    assert a.alpha == b.alpha
    np.testing.assert_allclose(list(a.coefficients.values()), list(b.coefficients.values()), atol=1e-9)

@pytest.mark.parametrize('model', ['model_a', 'xgb', 'rf'])
def test_orientation_check_refuses_an_inverted_model_naming_it(frame, cfg, model):
    with pytest.raises(SetrankError, match=rf"model '{model}' has mean within-list Spearman -0\.\d+"):
        fit_stack(frame.assign(**{model: -frame[model]}), TARGET, cfg.stacking)

def test_league_wide_standardization_keeps_the_gap_between_conferences():
    both = pd.DataFrame({'as_of': 1, 'conference': ['East', 'East', 'West', 'West'], 'x': [1., 2., 5., 6.]})
    league = zscore_by_list(both, ['x']).x.to_numpy()
    assert league[2] > league[1] and np.isclose(league.mean(), 0) and np.isclose(league.std(), 1)

def test_orientation_check_covers_the_meta_output(frame):
    bad = frame.assign(meta=-frame.model_a)
    with pytest.raises(SetrankError, match="model 'meta'"):
        check_orientation(bad, ['meta'], TARGET)

def test_few_oof_rows_fall_back_to_the_mean_and_say_so(frame, cfg):
    few = frame[frame.as_of.isin(frame.as_of.unique()[:2])]
    stack = fit_stack(few, TARGET, cfg.stacking)
    assert stack.combiner == 'mean' and stack.alpha is None
    assert stack.coefficients == {m: 1/3 for m in ['model_a', 'xgb', 'rf']}
    assert 'fallback_reason' in stack.to_dict()['info']

def test_stack_ranks_the_held_out_season_better_than_its_average_model(full, frame, cfg):
    "On the season after the OOF rows it was fitted on, the stack beats the mean of its base models and nearly ties the best."
    stack = fit_stack(frame, TARGET, cfg.stacking)
    held = full[full.season == '2019-20']
    meta = mean_spearman_by_keys(held.assign(meta=stack.predict(held)), 'meta', TARGET)
    base = [mean_spearman_by_keys(held, m, TARGET) for m in stack.models]
    assert meta > np.mean(base) and meta > max(base) - 0.01, (meta, base)

def test_missing_stack_file_is_an_error_naming_it(frame, cfg, tmp_path):
    stack = fit_stack(frame, TARGET, cfg.stacking)
    np.testing.assert_array_equal(load_stack(save_stack(stack, tmp_path/'stack.json')).predict(frame), stack.predict(frame))
    with pytest.raises(SetrankError, match='missing.json'):
        load_stack(tmp_path/'missing.json')
