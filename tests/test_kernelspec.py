"Opening any notebook in JupyterLab picks the project's kernel without a 'Select Kernel' dialog, and nbdev_clean keeps it so."
import copy, json
from pathlib import Path
import pytest
from nbdev.clean import clean_nb
from nbdev.config import get_config

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for p in (REPO/'nbs').rglob('*.ipynb') if '.ipynb_checkpoints' not in p.parts)

def _kernelspec(nb:dict)->dict: return nb.get('metadata', {}).get('kernelspec') or {}

@pytest.mark.parametrize('path', NOTEBOOKS, ids=lambda p: str(p.relative_to(REPO/'nbs')))
def test_every_notebook_names_the_python3_kernel(path):
    "JupyterLab starts the kernel a notebook names; a notebook without `kernelspec` makes it ask."
    spec = _kernelspec(json.loads(path.read_text(encoding='utf-8')))
    assert spec.get('name') == 'python3' and spec.get('language') == 'python', \
        f'{path.relative_to(REPO)} has kernelspec {spec or "none"}: set metadata.kernelspec to python3'

def test_the_named_kernel_is_installed():
    "The kernel the notebooks name exists in this environment (ipykernel's python3), so JupyterLab can start it."
    from jupyter_client.kernelspec import KernelSpecManager
    names = {_kernelspec(json.loads(p.read_text(encoding='utf-8'))).get('name') for p in NOTEBOOKS}
    assert names <= set(KernelSpecManager().find_kernel_specs()) | {'python3'}   # python3 is ipykernel's native kernel
    assert KernelSpecManager().get_kernel_spec('python3').language == 'python'

def test_nbdev_clean_keeps_the_kernelspec():
    "nbdev_clean with this project's settings (allowed_metadata_keys, clear_all) leaves the kernelspec in place."
    cfg = get_config(path=REPO)
    nb = json.loads(NOTEBOOKS[0].read_text(encoding='utf-8'))
    nb['metadata']['language_info'] = {'name': 'python', 'version': '3.11'}   # what Jupyter adds on save
    cleaned = copy.deepcopy(nb)
    clean_nb(cleaned, cfg.clear_all, cfg.get('allowed_metadata_keys', '').split(),
             cfg.get('allowed_cell_metadata_keys', '').split(), cfg.clean_ids)
    assert _kernelspec(cleaned) == _kernelspec(nb) != {}
    assert 'language_info' not in cleaned['metadata']

# --- the real thing: JupyterLab in a headless browser --------------------------------------------------------------

import os, shutil, socket, subprocess, sys, time, urllib.request

def _free_port()->int:
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

@pytest.fixture(scope='module')
def lab(tmp_path_factory):
    """JupyterLab serving copies of a source notebook, a report notebook and a control notebook without a kernelspec
    (its own workspace and runtime folders, no token, loopback only); yields its URL and the copies' paths."""
    exe, chromium = Path(sys.executable).parent/'jupyter-lab', shutil.which('chromium') or shutil.which('chromium-browser')
    missing = [what for what, ok in [('jupyterlab (dev extras)', exe.exists()), ('chromium', chromium)] if not ok]
    if missing:
        if os.environ.get('CI'): pytest.fail(f'{missing} not installed: CI installs the dev extras and chromium')
        pytest.skip(f'{missing} not installed')
    root = tmp_path_factory.mktemp('lab')
    names = ['00_config.ipynb', 'reports/explain.ipynb']
    for name in names: (root/name).parent.mkdir(exist_ok=True); shutil.copy(REPO/'nbs'/name, root/name)
    control = json.loads((REPO/'nbs'/names[0]).read_text(encoding='utf-8')); control['metadata'].pop('kernelspec')
    (root/'no_kernelspec.ipynb').write_text(json.dumps(control), encoding='utf-8')
    port, env = _free_port(), {**os.environ, 'JUPYTERLAB_WORKSPACES_DIR': str(root/'.ws'), 'JUPYTER_RUNTIME_DIR': str(root/'.rt')}
    proc = subprocess.Popen([str(exe), '--no-browser', f'--port={port}', '--ServerApp.ip=127.0.0.1', '--ServerApp.token=',
                             '--ServerApp.password=', f'--ServerApp.root_dir={root}', '--allow-root'],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url, deadline = f'http://127.0.0.1:{port}', time.time() + 60
    while True:
        try: urllib.request.urlopen(f'{url}/api/status', timeout=2); break
        except OSError:
            assert proc.poll() is None and time.time() < deadline, 'JupyterLab did not start in 60 s'
            time.sleep(0.5)
    try: yield url, chromium, names
    finally:
        proc.terminate()
        try: proc.wait(30)
        except subprocess.TimeoutExpired: proc.kill(); proc.wait()

def _open_in_lab(page, url:str, name:str)->str:
    "Open a notebook; 'dialog: …' when JupyterLab asks for a kernel, else the kernel it started, once it is idle."
    page.goto(f'{url}/lab/tree/{name}?reset')
    page.wait_for_function("document.querySelector('.jp-Dialog') || /\\| Idle/.test(document.body.innerText)", timeout=60000)
    dialog = page.locator('.jp-Dialog')
    return f'dialog: {dialog.first.inner_text()}' if dialog.count() else \
        page.locator('.jp-Notebook-toolbarKernelName, .jp-Toolbar-kernelName').first.inner_text().strip()

@pytest.mark.slow
def test_jupyterlab_opens_the_notebooks_on_the_python3_kernel_without_asking(lab):
    "Issue #18, must show 3, in JupyterLab itself: no 'Select Kernel' dialog, the kernel starts; a notebook without a"
    " kernelspec does get the dialog (so the check can fail)."
    sync_api = pytest.importorskip('playwright.sync_api', reason='playwright is in the dev extras')
    url, chromium, names = lab
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=['--no-sandbox', '--disable-gpu'])
        page = browser.new_page(viewport={'width': 1400, 'height': 900})
        try:
            for name in names: assert _open_in_lab(page, url, name) == 'Python 3 (ipykernel)', name
            assert 'Select Kernel' in _open_in_lab(page, url, 'no_kernelspec.ipynb')
        finally: browser.close()
