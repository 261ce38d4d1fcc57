"""Stand-ins used only by tests (never shipped in the package): a sweep trial runner with instant, deterministic metrics."""
import math, os, socket, time
from pathlib import Path

from setrank.config import Config, config_hash
from setrank.files import write_json

FAKE_BASELINES = {'point_diff': (0.669, 0.60, 5.1), 'win_pct': (0.651, 0.58, 5.3), 'random': (0.0, 0.35, 10.0)}

def fake_metrics(cfg:Config)->tuple[dict, dict]:
    """(validation, test) metrics that depend smoothly on the learning rate and XGBoost depth, plus a config-hash jitter;
    the test ordering is the reverse of the validation one, so a sweep that chose on the test season picks another combo."""
    jitter = int(config_hash(cfg, 'training', 'model_a', 'model_b'), 16) % 1000 / 1000
    rho = 0.72 - 0.03*(math.log10(cfg.model_a.learning_rate) + 2.5)**2 - 0.01*abs(cfg.model_b.xgb.max_depth - 4) + 0.02*jitter
    metrics = lambda r: dict(spearman=round(r, 6), ndcg_at_8=round(0.5 + r/2, 6), rank_mae=round(8*(1 - r), 6),
                             playoff_spearman=round(r - 0.1, 6))
    return metrics(rho), metrics(1.3 - rho)   # the test metric runs against the validation one: choosing on it shows

def fake_trial(cfg:Config, out_dir:Path, delay_s:float=0.0)->dict:
    """A stand-in for `setrank.trials.pipeline_trial`: the metrics of `fake_metrics`, an `eval_report.json` shaped like
    the pipeline's, and one line `host pid` appended to `runs.txt` each time the combo runs (so a test sees re-runs)."""
    out_dir = Path(out_dir); out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir/'runs.txt', 'a') as f: f.write(f'{socket.gethostname()} {os.getpid()}\n')
    if delay_s: time.sleep(delay_s)
    validation, test = fake_metrics(cfg)
    summary = [dict(horizon=h, target=cfg.training.target, teams='league', method=m, kind=kind, metric=metric,
                    mean=value, sd=0.0, n_seasons=1)
               for m, kind, vals in [('ensemble', 'model', (test['spearman'], test['ndcg_at_8'], test['rank_mae'])),
                                     *[(b, 'baseline', v) for b, v in FAKE_BASELINES.items()]]
               for h in cfg.training.horizons for metric, value in zip(('spearman', 'ndcg_at_8', 'rank_mae'), vals)]
    write_json(out_dir/'eval_report.json', {'run_id': out_dir.name, 'summary': summary, 'validation': validation,
               'settings': {'models': ['ensemble'], 'baselines': list(FAKE_BASELINES), 'targets': [cfg.training.target]}})
    return dict(validation=validation, test=test)
