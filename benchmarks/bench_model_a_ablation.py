"""Model A ablations on the real data: what each part adds, with paired bootstrap intervals.

For every test season T of `--seasons` (rolling origin, as the backtest): Model A trained on the seasons before T−1,
early-stopped on T−1, scored on T. Each variant is the default config plus a few `model_a.*` overrides (the parts of
issue #15: the value head, the game loss, the availability loss, and attention against minutes or mean pooling).
Printed per variant: the test seasons' rest-of-season Spearman (all 30 teams) at 25 / 50 / 75 % of the season, their
mean, the paired difference against setrank's roster rating and against the default Model A with a 95 % bootstrap
interval (teams resampled within each season and horizon, the mean difference over the 15 lists per resample), and
the mean validation Spearman of the folds (seasons T−1: what a selection may look at; the test seasons are not).

    python benchmarks/bench_model_a_ablation.py                          # every variant, 2019-20..2023-24
    python benchmarks/bench_model_a_ablation.py --variants default game --seeds 42 1
    python benchmarks/bench_model_a_ablation.py --json runs/ablation.json

Reads the data from $SETRANK_NBA_DATA (default ../shared/data/nba); features are cached under --cache.
"""
import argparse, json, os, sys, time, warnings
from pathlib import Path
import numpy as np

VARIANTS = {   # each: the default config plus these overrides (the default: availability pretraining and loss, the attention then frozen, residual start, no id embedding)
    'default': {},
    'no availability pretraining': {'model_a.availability_epochs': 0},
    'no availability (pretraining or loss)': {'model_a.availability_epochs': 0, 'model_a.availability_weight': 0.0},
    'game loss (+ value head)': {'model_a.value_head': True, 'model_a.game_weight': 0.3},
    'attention trained by the ranking (not frozen)': {'model_a.freeze_attention': False},
    'id embedding': {'model_a.embed_dim': 8},
    'minutes pooling': {'model_a.pooling': 'minutes'},
    'mean pooling': {'model_a.pooling': 'mean'},
    'random-start head, start not kept': {'model_a.residual_head': False, 'model_a.keep_start': False},
    'previous default': {'model_a.embed_dim': 8, 'model_a.residual_head': False, 'model_a.keep_start': False,
                         'model_a.availability_weight': 0.0, 'model_a.availability_epochs': 0, 'model_a.freeze_attention': False},
}
HORIZONS = (0.25, 0.5, 0.75)

def features(cache:Path):
    from setrank.config import load_config
    from setrank.data import import_folder, load_tables, data_fingerprint
    from setrank.features import build_features
    data = Path(os.environ.get('SETRANK_NBA_DATA', Path(__file__).resolve().parents[1]/'..'/'shared'/'data'/'nba'))
    db = cache/'setrank.duckdb'
    if not db.exists(): import_folder(data, db)
    tables = load_tables(db)
    return build_features(tables, load_config().training, data_fingerprint(db), cache/'features')

def list_index(rows, seasons):
    "(season, horizon) -> row positions of the 30 teams at that cut."
    from setrank.targets import horizon_index
    out = {}
    for s in seasons:
        r = rows[rows.season == s]
        n = int(r.n_dates.iloc[0])
        for h in HORIZONS: out[(s, h)] = np.flatnonzero((rows.season == s).to_numpy() & (rows.date_index == horizon_index(n, h)).to_numpy())
    return out

def spearman_lists(score, label, lists):
    from setrank.baselines import spearman
    return {k: float(spearman(score[i], label[i])) for k, i in lists.items()}

def paired(a, b, label, lists, n=2000, seed=0):
    "Mean over lists of spearman(a) − spearman(b), with a percentile interval from resampling teams within each list."
    from setrank.baselines import spearman
    rng = np.random.default_rng(seed)
    deltas = np.zeros(n); point = []
    for k, i in lists.items():
        idx = i[rng.integers(0, len(i), (n, len(i)))]
        deltas += np.nan_to_num(spearman(a[idx], label[idx]) - spearman(b[idx], label[idx]))
        point.append(spearman(a[i], label[i]) - spearman(b[i], label[i]))
    deltas /= len(lists)
    return float(np.mean(point)), float(np.percentile(deltas, 2.5)), float(np.percentile(deltas, 97.5))

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--seasons', default='2019-20:2023-24', help='test seasons, a range A:B (default %(default)s)')
    p.add_argument('--variants', nargs='*', default=list(VARIANTS), help=f'which variants (default: all of {list(VARIANTS)})')
    p.add_argument('--seeds', nargs='*', type=int, default=[42], help='seeds; scores are averaged over them (default 42)')
    p.add_argument('--cache', default='/tmp/setrank_ablation', help='store and feature cache folder')
    p.add_argument('--json', help='write the results here as JSON')
    args = p.parse_args()
    from setrank.config import SeasonSplit, load_config, season_range, parse_season
    from setrank.model_a import predict_model_a, train_model_a
    cache = Path(args.cache); cache.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter(); fs = features(cache); print(f'features: {time.perf_counter() - t0:.1f} s', flush=True)
    rows = fs.rows
    label = rows.y_rest_of_season.to_numpy(np.float64)
    seasons = season_range(args.seasons)
    available = sorted(rows.season.unique(), key=parse_season)
    lists = list_index(rows, seasons)
    roster = rows.roster_rating.to_numpy(np.float64)
    results, scores = {}, {}
    for name in args.variants:
        over, t0 = VARIANTS[name], time.perf_counter()
        score, val, epochs = np.zeros(len(rows)), [], []
        for seed in args.seeds:
            cfg = load_config(overrides={**over, 'repro.seed': seed, 'model_a.device': 'cpu'})
            for season in seasons:
                before = [s for s in available if parse_season(s) < parse_season(season)]
                split = SeasonSplit(train=before[:-1], validation=before[-1:], test=season)
                with warnings.catch_warnings():
                    warnings.simplefilter('ignore')
                    model, history = train_model_a(fs, split, cfg, progress=False)
                at = np.flatnonzero((rows.season == season).to_numpy())
                score[at] += predict_model_a(model, fs, at)['scores']/len(args.seeds)
                val.append(history['best_metric']); epochs.append(history['best_epoch'])
        scores[name] = score
        per = spearman_lists(score, label, lists)
        by_h = [float(np.mean([per[(s, h)] for s in seasons])) for h in HORIZONS]
        results[name] = dict(overrides=over, spearman=by_h, mean=float(np.mean(by_h)), validation=float(np.mean(val)),
                             best_epochs=epochs, seconds=time.perf_counter() - t0,
                             vs_roster_rating=paired(score, roster, label, lists),
                             vs_default=paired(score, scores['default'], label, lists) if 'default' in scores and name != 'default' else None)
        r = results[name]
        print(f"{name:>22}: {' / '.join(f'{x:.3f}' for x in by_h)} mean {r['mean']:.3f} | vs roster rating "
              f"{r['vs_roster_rating'][0]:+.3f} [{r['vs_roster_rating'][1]:+.3f}, {r['vs_roster_rating'][2]:+.3f}]"
              + (f" | vs default {r['vs_default'][0]:+.3f} [{r['vs_default'][1]:+.3f}, {r['vs_default'][2]:+.3f}]" if r['vs_default'] else '')
              + f" | validation {r['validation']:.3f} | best epochs {epochs} | {r['seconds']:.0f} s", flush=True)
    per = spearman_lists(roster, label, lists)
    by_h = [float(np.mean([per[(s, h)] for s in seasons])) for h in HORIZONS]
    print(f"{'roster rating':>22}: {' / '.join(f'{x:.3f}' for x in by_h)} mean {np.mean(by_h):.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(dict(seasons=seasons, seeds=args.seeds, roster_rating=by_h, variants=results), indent=1))

if __name__ == '__main__':
    sys.exit(main())
