"CI's notebook hygiene check catches the two ways a notebook and the library drift apart; the wheel carries what a regular install needs."
import json, os, shutil, subprocess, sys
from pathlib import Path
import pytest

REPO = Path(__file__).resolve().parents[1]

@pytest.fixture
def clone(tmp_path):
    "A fresh clone of the committed repository (what CI checks out)."
    dest = tmp_path/'clone'
    subprocess.run(['git', 'clone', '-q', str(REPO), str(dest)], check=True)
    subprocess.run(['git', '-C', str(dest), 'config', 'user.email', 't@t'], check=True)
    return dest

def check(repo):
    env = {**os.environ, 'PATH': f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run(['bash', str(REPO/'.ci'/'check-notebooks'), str(repo)], capture_output=True, text=True, env=env)

def test_clean_clone_passes(clone):
    r = check(clone)
    assert r.returncode == 0, r.stderr

def test_notebook_edited_without_export_fails(clone):
    nb = clone/'nbs'/'00_config.ipynb'
    d = json.loads(nb.read_text())
    cell = next(c for c in d['cells'] if c['cell_type'] == 'code' and 'def parse_season' in ''.join(c['source']))
    cell['source'] = [''.join(cell['source']).replace('"The starting year', '"The first year')]
    nb.write_text(json.dumps(d, indent=1, ensure_ascii=False) + '\n')
    subprocess.run(['git', '-C', str(clone), 'commit', '-qam', 'edit without export'], check=True)
    r = check(clone)
    assert r.returncode != 0 and 'nbdev_export' in r.stderr

def test_uncleaned_notebook_fails(clone):
    nb = clone/'nbs'/'00_config.ipynb'
    d = json.loads(nb.read_text())
    d['cells'][0]['execution_count'] = 7
    d['cells'][0].setdefault('metadata', {})['collapsed'] = True
    nb.write_text(json.dumps(d, indent=1, ensure_ascii=False) + '\n')
    subprocess.run(['git', '-C', str(clone), 'commit', '-qam', 'uncleaned'], check=True)
    r = check(clone)
    assert r.returncode != 0 and 'nbdev_clean' in r.stderr

def test_a_built_wheel_carries_the_defaults_and_the_report_notebooks(clone, tmp_path):
    "A regular (non-editable) install must run `setrank explain` and `sweep analyze`: the reports travel in the wheel."
    import zipfile
    r = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w',
                        str(tmp_path/'dist'), str(clone)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    wheel, = (tmp_path/'dist').glob('setrank-*.whl')
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {'setrank/defaults.yaml', 'setrank/reports/explain.ipynb', 'setrank/reports/analysis.ipynb',
            'setrank/reports/accuracy.ipynb'} <= names
