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
