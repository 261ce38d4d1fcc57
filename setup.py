"Packaging for setrank: every field comes from settings.ini (nbdev 2), no pkg_resources."
from configparser import ConfigParser
from pathlib import Path
import shutil
import setuptools
from setuptools.command.build_py import build_py

here = Path(__file__).parent
cfg = ConfigParser(delimiters=['='])
cfg.read(here/'settings.ini', encoding='utf-8')
cfg = cfg['DEFAULT']

requirements = cfg.get('requirements', '').split()
dev_requirements = cfg.get('dev_requirements', '').split()
scripts = [s.strip() for s in cfg.get('console_scripts', '').split('\n') if s.strip()]

class BuildWithReports(build_py):
    "Also copy the papermill report notebooks (nbs/reports) into the package, so a non-editable install can run them."
    def run(self):
        super().run()
        target = Path(self.build_lib)/'setrank'/'reports'
        target.mkdir(parents=True, exist_ok=True)
        for nb in sorted((here/'nbs'/'reports').glob('*.ipynb')): shutil.copy2(nb, target/nb.name)

setuptools.setup(
    name=cfg['lib_name'],
    version=cfg['version'],
    description=cfg['description'],
    long_description=(here/'README.md').read_text(encoding='utf-8') if (here/'README.md').exists() else '',
    long_description_content_type='text/markdown',
    author=cfg['author'], author_email=cfg['author_email'],
    license='Apache-2.0',
    keywords=cfg['keywords'].split(),
    python_requires=f">={cfg['min_python']}",
    packages=setuptools.find_packages(include=['setrank', 'setrank.*']),
    include_package_data=True,
    package_data={'setrank': ['defaults.yaml', 'fixtures/*']},
    install_requires=requirements,
    extras_require={'dev': dev_requirements},
    entry_points={'console_scripts': scripts, 'nbdev': [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"]},
    cmdclass={'build_py': BuildWithReports},
    zip_safe=False,
)
