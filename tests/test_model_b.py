"Model B (XGBoost + random forest on team features): learns, refuses leaky inputs, is reproducible, saves safely."
import copy, os
import numpy as np
import pytest
from scipy.stats import spearmanr

from setrank.config import SetrankError, load_config
from setrank.model_b import (check_team_features, fit_model_b, load_model_b, predict_model_b, save_model_b,
                             toy_featureset, training_rows)

TRAIN, VALID, TEST = ['2015-16', '2016-17', '2017-18'], ['2018-19'], '2019-20'
SMALL = {'model_b.rf.n_estimators': 40, 'model_b.xgb.n_estimators': 60}

@pytest.fixture(scope='module')
def toy():
    return toy_featureset(n_seasons=5, teams_per_conference=6)

@pytest.fixture(scope='module')
def cfg():
    return load_config(overrides=SMALL)

def _test_rows(fs):
    return np.flatnonzero((fs.rows.season == TEST).to_numpy() & fs.rows.y_rest_of_season.notna().to_numpy())

@pytest.mark.parametrize('objective', ['reg:squarederror', 'rank:pairwise', 'rank:ndcg'])
def test_xgb_and_rf_rank_an_unseen_season_like_the_label(toy, objective):
    cfg = load_config(overrides={**SMALL, 'model_b.xgb.objective': objective})
    model = fit_model_b(toy, TRAIN, cfg, validation_seasons=VALID)
    rows = _test_rows(toy)
    truth = toy.rows.y_rest_of_season.to_numpy()[rows]
    for name, scores in predict_model_b(model, toy, rows).items():
        assert spearmanr(scores, truth).statistic > 0.5, (objective, name)

@pytest.mark.parametrize('column', ['net_rating_15', 'NET_RATING', 'y_rest_of_season', 'final_win_pct',
                                    'rest_of_season_sos', 'future_opponents_elo', 'playoff_seed'])
def test_forbidden_input_is_refused_naming_the_column(toy, cfg, column):
    leaky = copy.deepcopy(toy)
    leaky.rows[column] = leaky.rows.point_diff_to_date
    leaky.schema.team_features = [*toy.schema.team_features, column]
    with pytest.raises(SetrankError, match=repr(column)):
        fit_model_b(leaky, TRAIN, cfg)

def test_label_rule_is_anchored_so_past_features_containing_y_underscore_pass():
    assert check_team_features(['away_win_pct', 'elo']) == ['away_win_pct', 'elo']

def test_training_rows_keep_every_season_and_both_conferences_and_skip_early_dates(toy, cfg):
    rows = toy.rows.iloc[training_rows(toy.rows, TRAIN, cfg.training)]
    assert sorted(rows.season.unique()) == TRAIN
    assert (rows.groupby('season').conference.nunique() == 2).all()
    assert (rows.games_played >= cfg.training.min_games).all()
    assert (rows.date_index % cfg.training.as_of_stride == 0).all()
    assert rows.y_rest_of_season.notna().all()

def test_validation_seasons_must_not_overlap_training(toy, cfg):
    with pytest.raises(SetrankError, match='2017-18'):
        fit_model_b(toy, TRAIN, cfg, validation_seasons=['2017-18'])

def test_same_seed_gives_identical_predictions_and_another_seed_differs(toy, cfg):
    rows = _test_rows(toy)
    a = predict_model_b(fit_model_b(toy, TRAIN, cfg, validation_seasons=VALID), toy, rows)
    b = predict_model_b(fit_model_b(toy, TRAIN, cfg, validation_seasons=VALID), toy, rows)
    for k in a: np.testing.assert_array_equal(a[k], b[k])
    c = predict_model_b(fit_model_b(toy, TRAIN, load_config(overrides={**SMALL, 'repro.seed': 1})), toy, rows)
    assert not np.allclose(a['rf'], c['rf'])

def test_saved_model_predicts_identically_and_records_features(toy, cfg, tmp_path):
    model = fit_model_b(toy, TRAIN, cfg, validation_seasons=VALID)
    paths = save_model_b(model, tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {'xgb.json', 'rf.joblib', 'model_b.json'}
    back = load_model_b(tmp_path, toy.schema.team_features)
    rows = _test_rows(toy)
    for k, v in predict_model_b(model, toy, rows).items():
        np.testing.assert_array_equal(predict_model_b(back, toy, rows)[k], v)
    assert back.feature_names == toy.schema.team_features and back.info['best_iteration'] == model.info['best_iteration']

@pytest.mark.parametrize('name', ['xgb.json', 'rf.joblib', 'model_b.json'])
def test_missing_model_file_is_an_error_naming_it(toy, cfg, tmp_path, name):
    save_model_b(fit_model_b(toy, TRAIN, cfg), tmp_path)
    (tmp_path/name).unlink()
    with pytest.raises(SetrankError, match=name):
        load_model_b(tmp_path)

def test_feature_schema_mismatch_on_load_and_predict_is_an_error(toy, cfg, tmp_path):
    model = fit_model_b(toy, TRAIN, cfg)
    save_model_b(model, tmp_path)
    with pytest.raises(SetrankError, match='model_b.json'):
        load_model_b(tmp_path, ['elo', 'rest_days'])
    fewer = copy.deepcopy(toy); fewer.schema.team_features = ['elo', 'rest_days']
    with pytest.raises(SetrankError, match='win_pct_to_date'):
        predict_model_b(model, fewer)

def test_model_file_from_another_fit_is_refused(toy, cfg, tmp_path):
    save_model_b(fit_model_b(toy, TRAIN, cfg), tmp_path/'a')
    save_model_b(fit_model_b(toy, TRAIN[:2], cfg), tmp_path/'b')
    os.replace(tmp_path/'b'/'xgb.json', tmp_path/'a'/'xgb.json')
    with pytest.raises(SetrankError, match='xgb.json'):
        load_model_b(tmp_path/'a')

@pytest.mark.slow
def test_real_data_2023_24_rest_of_season_spearman_beats_half_at_every_horizon(nba_dir):
    "Train <= 2021-22, early-stop on 2022-23, test 2023-24 at 25/50/75 % of the game dates (a lighter forest: < 60 s)."
    from setrank.data import read_folder
    from setrank.features import build_features
    cfg = load_config(overrides={'model_b.rf.n_estimators': 60, 'training.as_of_stride': 4})
    tables, _ = read_folder(nba_dir)
    fs = build_features(tables, cfg.training)
    seasons = sorted(fs.rows.season.unique())
    model = fit_model_b(fs, [s for s in seasons if s <= '2021-22'], cfg, validation_seasons=['2022-23'])
    test = fs.rows[fs.rows.season == '2023-24']
    results = {}
    for horizon in (0.25, 0.5, 0.75):
        cut = int(np.floor(horizon*test.n_dates.iloc[0]))
        rows = np.flatnonzero(((fs.rows.season == '2023-24') & (fs.rows.date_index == cut)).to_numpy())
        assert len(rows) == 30
        truth = fs.rows.y_rest_of_season.to_numpy()[rows]
        results[horizon] = {k: spearmanr(v, truth).statistic for k, v in predict_model_b(model, fs, rows).items()}
    print('rest_of_season Spearman 2023-24:', {h: {k: round(v, 3) for k, v in r.items()} for h, r in results.items()})
    assert all(v > 0.5 for r in results.values() for v in r.values()), results
