"Every notebook in nbs/ is a test: run each with nbdev's own `test_nb`, honouring `.notest` folders and `tst_flags`."
import os
from pathlib import Path
import pytest
from nbdev.config import get_config
from nbdev.test import test_nb as run_notebook

REPO = Path(__file__).resolve().parents[1]
NBS = REPO/'nbs'

def _notebooks():
    "Notebooks nbdev_test would run: skip names starting with `_` or `.`, and folders holding a `.notest` file."
    out = []
    for nb in sorted(NBS.rglob('*.ipynb')):
        rel = nb.relative_to(NBS)
        if any(p.startswith(('_', '.')) for p in rel.parts): continue
        if any((NBS/Path(*rel.parts[:i])/'.notest').exists() for i in range(len(rel.parts))): continue
        out.append(nb)
    return out

@pytest.mark.parametrize('nb', _notebooks(), ids=lambda p: str(p.relative_to(NBS)))
def test_notebook_runs(nb, monkeypatch):
    "The notebook executes top to bottom: `notest` cells are skipped as nbdev_test does; `slow` cells run too (CI runs them)."
    flags = get_config().get('tst_flags', '').split()
    force = [f for f in os.environ.get('SETRANK_NB_FLAGS', 'slow').split() if f in flags]
    monkeypatch.chdir(nb.parent)
    ok, secs = run_notebook(nb, skip_flags=flags, force_flags=force, do_print=False)
    assert ok, f'{nb.name} failed (see the traceback above)'

def test_report_notebooks_are_not_run_by_nbdev_test():
    "Papermill report notebooks need parameters; the .notest marker keeps them out of nbdev_test."
    reports = NBS/'reports'
    if reports.exists() and any(reports.glob('*.ipynb')):
        assert (reports/'.notest').exists()
