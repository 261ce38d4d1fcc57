"""Model A training speed on a toy FeatureSet sized like the real training data.

Real data: 9 seasons; a run trains on 7 (~165 as-of dates × 2 conference lists of 15 teams each), validates on 1.
The toy here has the same shape: 9 seasons × 165 dates × 30 teams, rosters of 12, 30 player features.
Budget (DESIGN §10 / issue): < 3 min for cfg.model_a.epochs = 23 with training.as_of_stride = 2 on 2 CPU cores.
`--threads` sets torch's intra-op threads for the run (config `model_a.cpu_threads`; its default is 1).

Each configuration runs in a fresh subprocess, so its peak memory (max RSS) is its own. Early stopping is disabled
(patience = epochs) so every configuration runs all epochs: the worst case.

`--synthetic` measures quality instead: Model A with the default config on the default synthetic league
(setrank.synthetic + setrank.features), trained on the training seasons, early-stopped on the validation season, scored
on the held-out test season at 25/50/75 % of its dates against the simulator's true team strength, next to win % and
point differential to date; and top-3 attention precision against true impact × minutes, next to minutes-only and
random weights.

    python benchmarks/bench_model_a.py                    # threads 1 and 2, default model
    python benchmarks/bench_model_a.py --threads 2 --sigma-reparam --epochs 5
    python benchmarks/bench_model_a.py --synthetic --threads 1
    python benchmarks/bench_model_a.py --real --threads 1     # the real data: train <= 2021-22, validate 2022-23, test 2023-24

`--real` reads the data from $SETRANK_NBA_DATA (default ../shared/data/nba), builds the features (cached in a temporary
folder), trains Model A with the default config on every regular-season list of the training seasons (stride 1, all
epochs unless early stopping ends them) and prints per epoch the loss, validation Spearman, attention entropy, max
weight, fallback share and gradient norms into the attention projections; then the test season's Spearman at the
checkpoints next to point differential and the roster rating, training time and lists per second.
"""
import argparse, json, os, resource, subprocess, sys, time

def child(spec:dict)->dict:
    import numpy as np, torch
    torch.set_num_threads(spec['threads'])
    from setrank.config import SeasonSplit, load_config
    from setrank.deepset import _toy_featureset
    from setrank.model_a import predict_model_a, train_model_a
    t0 = time.perf_counter()
    fs = _toy_featureset(n_seasons=9, n_dates=165, teams_per_conference=15, roster_size=12, n_noise_features=28, seed=0)
    build_s = time.perf_counter() - t0
    seasons = sorted(fs.rows.season.unique())
    split = SeasonSplit(train=seasons[:7], validation=[seasons[7]], test=seasons[8])
    cfg = load_config(overrides={'model_a.cpu_threads': spec['threads'], 'model_a.epochs': spec['epochs'], 'model_a.patience': spec['epochs'],
                                 'model_a.sigma_reparam': spec['sigma_reparam'], 'model_a.device': 'cpu'})
    t0 = time.perf_counter()
    model, history = train_model_a(fs, split, cfg, progress=False)
    train_s = time.perf_counter() - t0
    epoch_s = [e['seconds'] for e in history['epochs']]
    lists = sum(e['lists'] for e in history['epochs'])
    test_rows = np.flatnonzero((fs.rows.season == seasons[8]).to_numpy())
    t0 = time.perf_counter(); predict_model_a(model, fs, test_rows); predict_s = time.perf_counter() - t0
    return dict(rows=len(fs.rows), players=int(fs.mask.shape[1]), features=int(fs.player_x.shape[-1]),
                build_s=build_s, train_s=train_s, epochs=len(epoch_s), epoch_s=float(np.mean(epoch_s)),
                lists_per_epoch=history['lists_per_epoch'], lists_per_s=lists/sum(epoch_s),
                best_val=history['best_metric'], predict_s=predict_s, predict_rows=len(test_rows),
                params=sum(p.numel() for p in model.parameters()),
                peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024)

def synthetic_quality(spec:dict)->dict:
    import numpy as np, pandas as pd, torch
    from scipy.stats import spearmanr
    torch.set_num_threads(spec['threads'])
    from setrank.config import load_config, resolve_seasons
    from setrank.features import build_features
    from setrank.synthetic import synth_league
    from setrank.baselines import mean_list_spearman
    from setrank.model_a import attention_precision, predict_model_a, train_model_a, training_lists
    cfg = load_config(overrides={'model_a.cpu_threads': spec['threads'], 'model_a.device': 'cpu', 'model_a.sigma_reparam': spec['sigma_reparam']})
    t0 = time.perf_counter()
    tables = synth_league(n_seasons=cfg.data.synth_seasons, seed=cfg.data.synth_seed)
    fs = build_features(tables, cfg.training)
    data_s = time.perf_counter() - t0
    split = resolve_seasons(cfg.seasons, list(fs.rows.season.unique()))
    t0 = time.perf_counter()
    model, history = train_model_a(fs, split, cfg, progress=False)
    train_s = time.perf_counter() - t0
    rows = fs.rows
    truth = tables['truth_team_strength'].query('season_type == "regular"')
    truth = truth.assign(game_date=pd.to_datetime(truth.game_date).dt.normalize())
    impact = tables['truth_player_impact'].set_index(['season', 'player_id'])
    out = dict(split=f'train {split.train[0]}..{split.train[-1]}, validation {split.validation}, test {split.test}',
               data_s=data_s, train_s=train_s, epochs=len(history['epochs']), best_epoch=history['best_epoch'],
               best_val=history['best_metric'], horizons=[])
    rng = np.random.default_rng(0)
    for h in cfg.training.horizons:
        if h >= 1: continue
        test = rows.season.eq(split.test).to_numpy()
        cut = test & (rows.date_index == np.floor(h*rows.n_dates)).to_numpy()
        at = np.flatnonzero(cut)
        pred = predict_model_a(model, fs, at)
        sel = rows.iloc[at]
        as_of = sel.as_of.iloc[0]
        now = truth[truth.game_date == as_of].set_index('team_id').strength.reindex(sel.team_id).to_numpy()
        rest = truth[truth.game_date >= as_of].groupby('team_id').strength.mean().reindex(sel.team_id).to_numpy()
        rho = lambda a, b: float(spearmanr(a, b)[0])
        scores = dict(model_a=pred['scores'], win_pct=sel.win_pct.to_numpy(), point_diff=sel.point_diff.to_numpy(),
                      random=rng.random(len(at)))
        season = sel.season.iloc[0]
        phase = h - 0.5
        key = pd.MultiIndex.from_arrays([np.full(fs.player_ids[at].size, season), fs.player_ids[at].ravel()])
        imp = impact.reindex(key)
        player_impact = (imp.impact + imp.impact_change*phase).to_numpy().reshape(fs.player_ids[at].shape)
        contribution = np.where(fs.mask[at], 0, np.nan_to_num(player_impact)*fs.minutes[at])
        precision = {name: attention_precision(w, contribution, fs.mask[at]) for name, w in
                     [('attention', pred['weights']), ('minutes', fs.minutes[at]), ('random', rng.random(fs.mask[at].shape))]}
        out['horizons'].append(dict(h=h, as_of=str(as_of.date()), **{f'now_{k}': rho(v, now) for k, v in scores.items()},
                                    **{f'rest_{k}': rho(v, rest) for k, v in scores.items()},
                                    **{f'label_{k}': rho(v, sel.y_rest_of_season) for k, v in scores.items()},
                                    **{f'p3_{k}': v for k, v in precision.items()},
                                    fallback=float(pred['fallback'].mean())))
    lists = training_lists(rows, [split.test], cfg.training)      # every test-season date, one list per conference
    at = np.unique(lists[lists >= 0])
    score = np.full(len(rows), np.nan); score[at] = predict_model_a(model, fs, at)['scores']
    now = rows[['as_of', 'team_id']].merge(truth.rename(columns={'game_date': 'as_of'})[['as_of', 'team_id', 'strength']],
                                           how='left', on=['as_of', 'team_id']).strength.to_numpy()
    label = rows[f'y_{cfg.training.target}'].to_numpy()
    candidates = dict(model_a=score, win_pct=rows.win_pct.to_numpy(), point_diff=rows.point_diff.to_numpy(),
                      elo=rows.elo.to_numpy(), random=rng.random(len(rows)))
    out['all_dates'] = {k: dict(now=mean_list_spearman(v, now, lists), label=mean_list_spearman(v, label, lists))
                        for k, v in candidates.items()}
    out['entropy'] = history['epochs'][out['best_epoch'] - 1]['attention_entropy']
    out['uniform'] = history['epochs'][out['best_epoch'] - 1]['uniform_entropy']
    out['warnings'] = history['warnings']
    return out

def real_quality(spec:dict)->dict:
    import tempfile
    import numpy as np, pandas as pd, torch
    from pathlib import Path
    torch.set_num_threads(spec['threads'])
    from setrank.baselines import spearman
    from setrank.config import SeasonSplit, load_config
    from setrank.data import read_folder
    from setrank.features import build_features
    from setrank.model_a import predict_model_a, train_model_a
    data = Path(os.environ.get('SETRANK_NBA_DATA', Path(__file__).resolve().parents[2]/'shared'/'data'/'nba'))
    cfg = load_config(overrides={'model_a.cpu_threads': spec['threads'], 'model_a.device': 'cpu', 'training.as_of_stride': 1})
    t0 = time.perf_counter()
    tables, _ = read_folder(data)
    with tempfile.TemporaryDirectory() as cache: fs = build_features(tables, cfg.training, cache_dir=cache)
    data_s = time.perf_counter() - t0
    seasons = sorted(s for s in fs.rows.season.unique() if s <= '2021-22')
    split = SeasonSplit(train=seasons, validation=['2022-23'], test='2023-24')
    t0 = time.perf_counter()
    model, history = train_model_a(fs, split, cfg, progress=False)
    train_s = time.perf_counter() - t0
    rows, out = fs.rows, []
    for h in [0.25, 0.5, 0.75]:
        at = np.flatnonzero(((rows.season == split.test) & (rows.date_index == np.floor(h*rows.n_dates))).to_numpy())
        y = rows.y_rest_of_season.to_numpy()[at]
        scores = dict(model_a=predict_model_a(model, fs, at)['scores'], point_diff=rows.point_diff.to_numpy()[at],
                      roster_rating=rows.roster_rating.to_numpy()[at], win_pct=rows.win_pct.to_numpy()[at])
        out.append(dict(h=h, **{k: float(spearman(v, y)) for k, v in scores.items()}))
    epochs = history['epochs']
    return dict(split=f'train {seasons[0]}..{seasons[-1]}, validation 2022-23, test 2023-24', data_s=data_s,
                train_s=train_s, lists=sum(e['lists'] for e in epochs), lists_per_s=sum(e['lists'] for e in epochs)/sum(e['seconds'] for e in epochs),
                best_epoch=history['best_epoch'], warnings=history['warnings'], horizons=out,
                epochs=[dict(epoch=e['epoch'], loss=e['loss'], val=e['validation_spearman'],
                             entropy=float(np.mean(e['attention_entropy_normalized'])), max_weight=e['max_weight'],
                             fallback=e['fallback_share'], q=e['grad_norm']['attention.q'], k=e['grad_norm']['attention.k'],
                             v=e['grad_norm']['attention.v']) for e in epochs])

def print_real(m:dict):
    print(f"{m['split']}; features {m['data_s']:.1f} s; training {m['train_s']:.1f} s, {m['lists']} lists, "
          f"{m['lists_per_s']:.0f} lists/s; best epoch {m['best_epoch']}")
    for w in m['warnings']: print('warning:', w)
    head = f'{"epoch":>5} {"loss":>8} {"val rho":>8} {"entropy":>8} {"max w":>6} {"fallback":>8} {"|g| q":>8} {"|g| k":>8} {"|g| v":>8}'
    print(); print(head); print('-'*len(head))
    for e in m['epochs']:
        print(f'{e["epoch"]:>5} {e["loss"]:>8.4f} {e["val"]:>8.3f} {e["entropy"]:>8.3f} {e["max_weight"]:>6.3f} '
              f'{e["fallback"]:>8.1%} {e["q"]:>8.4f} {e["k"]:>8.4f} {e["v"]:>8.4f}')
    print('\n(entropy: normalized attention entropy, 1 = uniform over the roster; |g|: gradient norm per module)')
    print('\nTest season 2023-24, rest-of-season Spearman over the 30 teams')
    names = ['model_a', 'point_diff', 'roster_rating', 'win_pct']
    head = f'{"cut":>5} ' + ' '.join(f'{n:>13}' for n in names)
    print(head); print('-'*len(head))
    for r in m['horizons']: print(f'{r["h"]:>5.2f} ' + ' '.join(f'{r[n]:>13.3f}' for n in names))

def print_quality(m:dict):
    print(f"{m['split']}; data {m['data_s']:.1f} s, training {m['train_s']:.1f} s ({m['epochs']} epochs, best "
          f"{m['best_epoch']}, validation Spearman per list {m['best_val']:.3f}); attention entropy per head "
          f"{'/'.join(f'{e:.2f}' for e in m['entropy'])} nats (uniform {m['uniform']:.2f})")
    for w in m['warnings']: print('warning:', w)
    print('\nHeld-out season, every date: mean Spearman per conference list')
    head = f'{"against":>28} ' + ' '.join(f'{n:>10}' for n in m['all_dates'])
    print(head); print('-'*len(head))
    for kind, label in [('now', 'true strength on the date'), ('label', 'rest-of-season win % (label)')]:
        print(f'{label:>28} ' + ' '.join(f'{v[kind]:>10.3f}' for v in m['all_dates'].values()))
    print('\nHeld-out season at the checkpoints: Spearman over the 30 teams')
    names = ['model_a', 'win_pct', 'point_diff', 'random']
    head = f'{"cut":>5} {"as_of":>10} {"truth":>13} ' + ' '.join(f'{n:>10}' for n in names)
    print(head); print('-'*len(head))
    for r in m['horizons']:
        for kind, label in [('now', 'strength now'), ('rest', 'rest strength'), ('label', 'rest win %')]:
            print(f'{r["h"]:>5.2f} {r["as_of"]:>10} {label:>13} ' + ' '.join(f'{r[f"{kind}_{n}"]:>10.3f}' for n in names))
    head = f'{"cut":>5} {"top-3 precision vs impact x minutes":>36} {"attention":>10} {"minutes":>10} {"random":>10} {"fallback":>9}'
    print(); print(head); print('-'*len(head))
    for r in m['horizons']:
        print(f'{r["h"]:>5.2f} {"":>36} {r["p3_attention"]:>10.3f} {r["p3_minutes"]:>10.3f} {r["p3_random"]:>10.3f} '
              f'{r["fallback"]:>9.1%}')

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--threads', type=int, nargs='+', default=[1, 2])
    ap.add_argument('--epochs', type=int, default=23)
    ap.add_argument('--sigma-reparam', action='store_true')
    ap.add_argument('--synthetic', action='store_true', help='measure quality on the synthetic league instead of speed')
    ap.add_argument('--real', action='store_true', help='train and test on the real data (DESIGN split) instead')
    ap.add_argument('--child', help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        spec = json.loads(args.child)
        run = real_quality if spec.get('real') else synthetic_quality if spec.get('synthetic') else child
        print(json.dumps(run(spec))); return
    if args.real:
        spec = dict(threads=args.threads[0], real=True)
        env = dict(os.environ, OMP_NUM_THREADS=str(spec['threads']))
        r = subprocess.run([sys.executable, __file__, '--child', json.dumps(spec)], capture_output=True, text=True, env=env)
        if r.returncode: print(r.stderr[-3000:]); return
        print(f'Model A on the real data (defaults, stride 1, {spec["threads"]} thread(s))')
        print_real(json.loads(r.stdout.strip().splitlines()[-1])); return
    if args.synthetic:
        spec = dict(threads=args.threads[0], sigma_reparam=args.sigma_reparam, synthetic=True)
        env = dict(os.environ, OMP_NUM_THREADS=str(spec['threads']))
        r = subprocess.run([sys.executable, __file__, '--child', json.dumps(spec)], capture_output=True, text=True, env=env)
        if r.returncode: print(r.stderr[-3000:]); return
        print(f'Model A on the synthetic league (defaults, sigma_reparam={args.sigma_reparam}, {spec["threads"]} thread(s))')
        print_quality(json.loads(r.stdout.strip().splitlines()[-1])); return
    print(f'Model A benchmark: 9-season toy (7 train, 1 validation), stride 2, {args.epochs} epochs, '
          f'sigma_reparam={args.sigma_reparam}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs')
    head = f'{"threads":>7} {"rows":>6} {"params":>7} {"build s":>8} {"train s":>8} {"s/epoch":>8} {"lists/ep":>8} ' \
           f'{"lists/s":>8} {"val rho":>7} {"predict s":>9} {"peak MB":>8}'
    print(head); print('-'*len(head))
    for threads in args.threads:
        spec = dict(threads=threads, epochs=args.epochs, sigma_reparam=args.sigma_reparam)
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        r = subprocess.run([sys.executable, __file__, '--child', json.dumps(spec)], capture_output=True, text=True, env=env)
        if r.returncode:
            print(f'{threads:>7} failed:\n{r.stderr[-2000:]}'); continue
        m = json.loads(r.stdout.strip().splitlines()[-1])
        print(f'{threads:>7} {m["rows"]:>6} {m["params"]:>7} {m["build_s"]:>8.1f} {m["train_s"]:>8.1f} {m["epoch_s"]:>8.2f} '
              f'{m["lists_per_epoch"]:>8} {m["lists_per_s"]:>8.0f} {m["best_val"]:>7.3f} {m["predict_s"]:>9.2f} '
              f'{m["peak_mb"]:>8.0f}')

if __name__ == '__main__':
    main()
