"Shared pytest fixtures: where the real NBA data lives, and a clean working folder per test."
import os
from pathlib import Path
import pytest

REPO = Path(__file__).resolve().parents[1]

def _nba_dir() -> Path:
    return Path(os.environ.get('SETRANK_NBA_DATA', REPO.parent/'shared'/'data'/'nba')).resolve()

@pytest.fixture(scope='session')
def nba_dir() -> Path:
    "The real NBA box scores (read-only). CI exports SETRANK_NBA_DATA and fails when it is missing; elsewhere tests skip."
    path = _nba_dir()
    if not (path/'team_games.parquet').exists():
        if os.environ.get('CI') or os.environ.get('SETRANK_REQUIRE_DATA'):
            pytest.fail(f'real NBA data not found at {path} (set SETRANK_NBA_DATA)')
        pytest.skip(f'real NBA data not found at {path}')
    return path

@pytest.fixture(scope='session')
def repo() -> Path:
    return REPO
