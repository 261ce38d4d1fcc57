"The docs site as a reader meets it: built offline from every notebook, opened in a headless browser; and the README CI check."
import html, json, os, re, shutil, subprocess, time
from pathlib import Path
import pytest
from setrank.config import SetrankError
from setrank.docs import build_docs, build_readme, doc_pages, project_config

REPO = Path(__file__).resolve().parents[1]
BUILD_BUDGET_S = 60

@pytest.fixture(scope='module')
def site(tmp_path_factory, monkeypatch_module):
    "The whole site, built once with mkdocs (the renderer used where Quarto is absent), and how long that took."
    monkeypatch_module.chdir(REPO)
    out = tmp_path_factory.mktemp('docs')/'site'
    start = time.perf_counter()
    build_docs(out, renderer='mkdocs')
    return out, time.perf_counter() - start

@pytest.fixture(scope='module')
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp: yield mp

def pages():
    return doc_pages(REPO/'nbs')

def test_site_builds_every_notebook_in_under_a_minute(site):
    out, seconds = site
    assert seconds < BUILD_BUDGET_S, f'docs build took {seconds:.1f} s (budget {BUILD_BUDGET_S} s)'
    missing = [p.url for p in pages() if not (out/p.url).exists()]
    assert not missing, f'notebooks without a page: {missing}'
    assert (out/'assets'/'pipeline.svg').exists() and (out/'search'/'search_index.js').exists()

def test_site_loads_nothing_from_the_network(site):
    "Offline: no page pulls a script, stylesheet or font from another host (MathJax included: the site carries it)."
    out, _ = site
    for page in out.rglob('*.html'):
        text = page.read_text(encoding='utf-8')
        external = re.findall(r'<(?:script|link)\b[^>]*?(?:src|href)="(https?://[^"]+)"', text)
        assert not external, f'{page.name} loads {external}'
        assert '<script src="">' not in text and 'unpkg.com' not in text, f'{page.name} still asks a CDN'
    assert (out/'assets'/'mathjax'/'MathJax.js').exists()

def test_search_index_covers_the_api(site):
    out, _ = site
    index = json.loads((out/'search'/'search_index.json').read_text(encoding='utf-8'))
    docs = {d['location'].split('#')[0] for d in index['docs']}
    assert 'config.html' in docs
    assert any('load_config' in d['text'] for d in index['docs'] if d['location'].startswith('config.html'))

def test_hidden_and_export_cells_stay_off_the_pages(site):
    "nbdev's processing ran: no `#|` directives, no hidden test imports, and the API is shown by show_doc."
    out, _ = site
    text = (out/'config.html').read_text(encoding='utf-8')
    assert '#| export' not in text and '#| hide' not in text and 'from fastcore.test import' not in text
    assert 'show_doc(' not in _text(text), 'show_doc input cells must be hidden'

def test_api_links_point_at_local_pages(site):
    out, _ = site
    text = (out/'config.html').read_text(encoding='utf-8')
    doc_host = project_config().doc_host
    assert doc_host not in text
    assert 'href="config.html#setrankerror"' in text and 'id="setrankerror"' in text

# --- the browser ---------------------------------------------------------------------------------------------------

CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                  '--disable-background-networking', '--disable-component-update', '--disable-sync',
                  '--hide-scrollbars', '--window-size=1280,1400']

@pytest.fixture(scope='module')
def chromium():
    exe = shutil.which('chromium') or shutil.which('chromium-browser')
    if exe: return exe
    if os.environ.get('CI'): pytest.fail('chromium is not installed: CI must run `apt-get install -y chromium`')
    pytest.skip('chromium is not installed (apt-get install -y chromium); CI runs these browser checks')

def browse(chromium, url, profile, *args):
    "Run headless Chromium with a fresh profile on `url` (a file:// address, nothing else is reachable)."
    r = subprocess.run([chromium, *CHROMIUM_FLAGS, f'--user-data-dir={profile}', *args, url],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout

def _text(markup):
    "The visible text of some HTML, tags dropped and entities decoded."
    return html.unescape(re.sub(r'<[^>]+>', '', markup))

def dom_and_screenshot(chromium, page, tmp_path, name):
    dom = browse(chromium, page.as_uri(), tmp_path/f'profile-{name}-dom', '--virtual-time-budget=3000', '--dump-dom')
    shot = tmp_path/f'{name}.png'
    browse(chromium, page.as_uri(), tmp_path/f'profile-{name}-shot', f'--screenshot={shot}')
    assert shot.exists() and shot.stat().st_size > 10_000, 'the screenshot is missing or blank'
    if os.environ.get('SETRANK_ARTIFACTS'):
        dest = Path(os.environ['SETRANK_ARTIFACTS']); dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, dest/f'docs_{name}.png')
    return dom

def test_index_page_in_a_browser(site, chromium, tmp_path):
    "Title, navigation to every notebook, the pipeline picture, the quick start, and a link to the next page."
    out, _ = site
    dom = dom_and_screenshot(chromium, out/'index.html', tmp_path, 'index')
    assert re.search(r'<title>\s*setrank\s*</title>', dom)
    nav = set(re.findall(r'<a[^>]*class="md-nav__link[^"]*"[^>]*href="([^"#]+)"', dom)
              + re.findall(r'<a[^>]*href="([^"#]+)"[^>]*class="md-nav__link', dom))
    expected = {p.url for p in pages() if p.dest != 'index.ipynb'}
    assert expected <= nav, f'missing from the navigation: {expected - nav}'
    assert re.search(r'<img[^>]*src="assets/pipeline.svg"', dom)
    assert 'Quick start' in _text(dom) and 'pip install -e' in _text(dom)
    next_link = re.search(r'<a[^>]*href="([^"]+)"[^>]*class="md-footer__link md-footer__link--next"', dom) \
        or re.search(r'<a[^>]*class="md-footer__link md-footer__link--next"[^>]*href="([^"]+)"', dom)
    assert next_link and next_link[1] == pages()[1].url
    for report in [p for p in pages() if p.section == 'Reports']:
        assert f'href="{report.url}"' in dom

def test_api_page_in_a_browser_shows_signatures(site, chromium, tmp_path):
    "The config page: its title, its place in the navigation, and `load_config` with its parameters and their comments."
    out, _ = site
    dom = dom_and_screenshot(chromium, out/'config.html', tmp_path, 'config')
    assert re.search(r'<title>\s*Configuration - setrank\s*</title>', dom)
    assert re.search(r'class="md-nav__link md-nav__link--active"[^>]*href="config.html"', dom) or \
        re.search(r'href="config.html"[^>]*class="md-nav__link md-nav__link--active', dom)
    assert 'id="load_config"' in dom
    text = _text(dom)
    assert re.search(r'def load_config\(\s*path:Union\[str, Path, None\]=None, # a user YAML merged over the defaults\s*'
                     r'overrides:Optional\[dict\]=None, # dotted keys -> values', text), 'load_config signature not rendered'
    assert 'The packaged defaults, deep-merged with the YAML' in text

def _notebook_with_saved_outputs(path):
    "A notebook as a person leaves it after running it: a plot, a table and printed text saved in its outputs."
    import base64, io
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import pandas as pd
    fig, ax = plt.subplots(figsize=(4, 2.5))
    ax.plot([1, 2, 3], [0.2, 0.5, 0.4]); ax.set_title('Spearman by season'); ax.set_xlabel('season'); ax.set_ylabel('rho')
    buf = io.BytesIO(); fig.savefig(buf, format='png', bbox_inches='tight'); plt.close(fig)
    table = pd.DataFrame({'team': ['BOS', 'DEN'], 'strength': [1.25, 0.75]})
    cells = [{'cell_type': 'markdown', 'metadata': {}, 'source': '# Saved outputs\n> A notebook that was run and saved.'},
             {'cell_type': 'code', 'metadata': {}, 'execution_count': 1, 'source': 'plot_spearman()', 'outputs': [
                 {'output_type': 'display_data', 'metadata': {},
                  'data': {'image/png': base64.b64encode(buf.getvalue()).decode(), 'text/plain': '<Figure>'}}]},
             {'cell_type': 'code', 'metadata': {}, 'execution_count': 2, 'source': 'table', 'outputs': [
                 {'output_type': 'execute_result', 'execution_count': 2, 'metadata': {},
                  'data': {'text/html': table.to_html(), 'text/plain': table.to_string()}}]},
             {'cell_type': 'code', 'metadata': {}, 'execution_count': 3, 'source': 'print("ranked 30 teams")', 'outputs': [
                 {'output_type': 'stream', 'name': 'stdout', 'text': 'ranked 30 teams\n'}]}]
    path.write_text(json.dumps({'cells': cells, 'metadata': {}, 'nbformat': 4, 'nbformat_minor': 5}))

@pytest.fixture(scope='module')
def toy_site(tmp_path_factory, monkeypatch_module):
    "A small site from the real index, a notebook with saved outputs, and the two report notebooks."
    monkeypatch_module.chdir(REPO)
    root = tmp_path_factory.mktemp('toy')
    nbs = root/'nbs'; (nbs/'reports').mkdir(parents=True)
    shutil.copy(REPO/'nbs'/'index.ipynb', nbs/'index.ipynb')
    _notebook_with_saved_outputs(nbs/'10_outputs.ipynb')
    for name, title in [('explain', 'Explaining a ranking'), ('analysis', 'Sweep analysis')]:
        (nbs/'reports'/f'{name}.ipynb').write_text(json.dumps({'metadata': {}, 'nbformat': 4, 'nbformat_minor': 5, 'cells': [
            {'cell_type': 'markdown', 'metadata': {}, 'source': f'# {title}\n> A report.'},
            {'cell_type': 'code', 'metadata': {'tags': ['parameters']}, 'execution_count': None, 'outputs': [],
             'source': "config = 'combo_0002'"}]}))
    return build_docs(root/'site', renderer='mkdocs', nbs_path=nbs)

def test_saved_outputs_appear_on_the_page(toy_site, chromium, tmp_path):
    "Plots, tables and printed text saved in a notebook are on its page; nothing is re-run to get them."
    dom = dom_and_screenshot(chromium, toy_site/'outputs.html', tmp_path, 'outputs')
    assert re.search(r'<img[^>]*src="data:image/png;base64,', dom), 'the saved plot is not on the page'
    assert re.search(r'<table[^>]*class="dataframe', dom) and 'DEN' in _text(dom)
    assert 'ranked 30 teams' in _text(dom)

def test_index_links_the_report_examples(toy_site, chromium, tmp_path):
    "When nbs/reports/ holds the report notebooks, the index links them and the navigation has a Reports section."
    dom = browse(chromium, (toy_site/'index.html').as_uri(), tmp_path/'profile', '--virtual-time-budget=3000', '--dump-dom')
    section = re.search(r'id="report-examples".*?</ul>', dom, re.S)
    assert section, 'the index has no "Report examples" section'
    links = [l for l in re.findall(r'<a[^>]*href="([^"]+)"[^>]*>([^<]+)</a>', section[0]) if not l[0].startswith('#')]
    assert links == [('reports/explain.html', 'Explaining a ranking'), ('reports/analysis.html', 'Sweep analysis')]
    assert 'Reports' in re.sub(r'\s+', ' ', _text(dom))
    report = (toy_site/'reports'/'explain.html').read_text(encoding='utf-8')
    assert 'href="../index.html"' in report or 'href="..' in report  # pages one folder down link back up

def test_search_works_offline_in_a_browser(site, chromium, tmp_path):
    "Searching `load_config` from a file:// page (no server, no network) finds its entry on the config page."
    out, _ = site
    dom = browse(chromium, (out/'index.html').as_uri() + '?q=load_config', tmp_path/'profile',
                 '--virtual-time-budget=10000', '--dump-dom')
    assert re.search(r'\d+ matching documents?', dom), 'search gave no results'
    assert re.search(r'href="[^"]*config\.html\?h=load_config#load_config"', dom)

# --- the README ------------------------------------------------------------------------------------------------------

def test_readme_is_generated_from_the_index_notebook(monkeypatch):
    "The CI check: README.md is exactly what nbs/index.ipynb gives (run `setrank docs --readme` after editing it)."
    monkeypatch.chdir(REPO)
    assert build_readme(check=True) == REPO/'README.md'

def test_readme_check_catches_a_hand_edited_readme(tmp_path):
    nb, readme = tmp_path/'index.ipynb', tmp_path/'README.md'
    shutil.copy(REPO/'nbs'/'index.ipynb', nb)
    readme.write_text((REPO/'README.md').read_text(encoding='utf-8').replace('Quick start', 'Quickstart'), encoding='utf-8')
    with pytest.raises(SetrankError, match='Quickstart'): build_readme(check=True, nb_path=nb, dest=readme)
    build_readme(nb_path=nb, dest=readme)
    assert readme.read_bytes() == (REPO/'README.md').read_bytes()

# --- the README's results, rendered from the recorded backtest ---------------------------------------------------------

RECORDED = 'benchmarks/results/backtest_2019-20_2023-24'

def test_readme_results_match_the_recorded_backtest():
    """Every number in the README's result blocks (the backtest table, the forecast table and the sentences under
    them) is what `setrank.results` renders from the recorded backtest the block names; refresh with
    `setrank report readme --backtest DIR` after a new backtest."""
    from setrank.results import check_results, results_source
    text = (REPO/'README.md').read_text(encoding='utf-8')
    assert results_source(text, 'backtest') == results_source(text, 'forecast') == RECORDED
    assert check_results(text, REPO) == []

def test_readme_results_check_fails_when_the_readme_disagrees_with_the_recording():
    from setrank.results import block_text, check_results
    text = (REPO/'README.md').read_text(encoding='utf-8')
    ensemble = re.search(r'\*\*(\d\.\d{3} ± \d\.\d{3})\*\*', block_text(text, 'backtest'))[1]   # the ensemble at 25 %
    problems = check_results(text.replace(ensemble, '0.999 ± 0.001', 1), REPO)
    assert len(problems) == 1 and "'backtest'" in problems[0] and '0.999' in problems[0]
    rmse = re.search(r'\| \*\*setrank\*\* \| (\d\.\d\d ± \d\.\d\d)', block_text(text, 'forecast'))[1]
    problems = check_results(text.replace(rmse, '9.99 ± 0.01', 1), REPO)
    assert len(problems) == 1 and "'forecast'" in problems[0]
    verdict = 'ahead of every simple baseline' if 'ahead of every simple baseline' in text else 'behind the best simple baseline'
    assert check_results(text.replace(verdict, 'far ahead of everything', 1), REPO)    # the sentences are checked too

def test_readme_results_check_fails_when_the_recording_changes(tmp_path):
    "The same README against a recording whose numbers moved (one season's ensemble Spearman): the check names it."
    import pandas as pd
    from setrank.results import check_results
    shutil.copytree(REPO/RECORDED, tmp_path/RECORDED)
    table = pd.read_csv(tmp_path/RECORDED/'backtest_results.csv')
    at = table.index[(table.method == 'ensemble') & (table.target == 'rest_of_season') & (table.horizon == 0.5)][0]
    table.loc[at, 'value'] -= 0.2
    table.to_csv(tmp_path/RECORDED/'backtest_results.csv', index=False)
    problems = check_results((REPO/'README.md').read_text(encoding='utf-8'), tmp_path)
    assert len(problems) == 1 and 'differs from' in problems[0]


# --- the whole site in a real browser (Playwright driving the system Chromium; no browser download) ---------------

@pytest.fixture(scope='module')
def browser(chromium):
    sync_api = pytest.importorskip('playwright.sync_api', reason='playwright is in the dev extras: pip install -e ".[dev]"')
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=['--no-sandbox', '--disable-gpu'])
        yield b
        b.close()

def _open(browser, path):
    "Open a file:// page; returns the page and the console errors, failed requests and page errors it raised."
    page, problems = browser.new_page(), []
    page.on('console', lambda m: problems.append(f'console {m.type}: {m.text}') if m.type == 'error' else None)
    page.on('pageerror', lambda e: problems.append(f'page error: {e}'))
    page.on('requestfailed', lambda r: problems.append(f'request failed: {r.url}'))
    page.goto(path.as_uri(), wait_until='load')
    if page.evaluate('!!window.MathJax'):
        page.wait_for_function('MathJax.Hub && MathJax.Hub.queue.pending === 0 && MathJax.Hub.queue.running === 0',
                               timeout=20000)
    return page, problems

def test_every_page_in_a_browser_links_no_placeholder_and_raises_no_error(site, browser):
    "Every page: zero links to example.org, every local link and anchor lands, no console error or failed request."
    out, _ = site
    ids, bad, problems = {}, [], {}
    pages = sorted(p for p in out.rglob('*.html') if p.relative_to(out).parts[0] != 'source')
    for path in pages:
        page, errors = _open(browser, path)
        if errors: problems[str(path.relative_to(out))] = errors
        ids[path.resolve()] = set(page.evaluate("[...document.querySelectorAll('[id],[name]')].map(e => e.id || e.getAttribute('name'))"))
        hrefs = page.evaluate("[...document.querySelectorAll('a[href]')].map(a => [a.getAttribute('href'), a.href])")
        page.close()
        assert not [h for h, _ in hrefs if 'example.org' in h], f'{path.name} links to example.org'
        for raw, absolute in hrefs:
            if not absolute.startswith('file://'): continue
            target, _, frag = absolute.partition('#')
            bad.append((path, raw, Path(target[len('file://'):]), frag))
    missing = []
    for path, raw, target, frag in bad:
        from urllib.parse import unquote
        target = Path(unquote(str(target)))
        if not target.exists(): missing.append(f'{path.name}: {raw} (no such file)'); continue
        if frag and target.suffix == '.html' and target.resolve() in ids and unquote(frag) not in ids[target.resolve()]:
            missing.append(f'{path.name}: {raw} (no such anchor)')
    assert not missing, f'{len(missing)} broken links or anchors, e.g. {missing[:5]}'
    assert not problems, f'console errors or failed requests: {dict(list(problems.items())[:3])}'

def test_formulas_are_typeset_as_math(site, browser, tmp_path):
    "The LaTeX in the attention and Deep Set (ListMLE) pages comes out as MathJax's math, not as raw `$...$` text."
    out, _ = site
    for name, raw in [('attention.html', '\\frac{\\gamma}'), ('deepset.html', '\\mathcal L')]:
        page, errors = _open(browser, out/name)
        assert page.locator('.MathJax').count() > 0, f'{name}: no typeset formula'
        assert raw not in page.inner_text('article'), f'{name} shows raw LaTeX {raw!r}'
        math = page.locator('.MathJax').first
        assert math.bounding_box()['width'] > 5
        if os.environ.get('SETRANK_ARTIFACTS'):
            math.scroll_into_view_if_needed(); page.screenshot(path=str(Path(os.environ['SETRANK_ARTIFACTS'])/f'docs_math_{name}.png'))
        page.close()
        assert not errors, errors

def test_report_pages_show_their_images(site, browser):
    "The explain and sweep-analysis pages show the figures saved in their notebooks; every image on a report page loads."
    out, _ = site
    reports = sorted((out/'reports').glob('*.html'))
    assert reports
    for path in reports:
        page, errors = _open(browser, path)
        sizes = page.evaluate("[...document.querySelectorAll('article img')].map(i => [i.complete, i.naturalWidth])")
        page.close()
        if path.stem in ('explain', 'analysis'): assert sizes, f'{path.name}: the report page shows no figure'
        assert all(done and width > 0 for done, width in sizes), f'{path.name}: an image did not load {sizes}'
        assert not errors, errors

def test_concept_pages_show_their_figures(site, browser):
    "Notebooks that explain a concept keep a small saved figure (issue #18): the attention page shows what the minutes"
    " prior does to a roster, Model A's a training run, the pipeline's its stage timings, the evaluation page its plots;"
    " each image loads."
    out, _ = site
    for name, at_least in [('attention.html', 1), ('model_a.html', 1), ('pipeline.html', 1), ('evaluate.html', 3)]:
        page, errors = _open(browser, out/name)
        sizes = page.evaluate("[...document.querySelectorAll('article img')].map(i => [i.complete, i.naturalWidth])")
        page.close()
        assert len(sizes) >= at_least and all(done and width > 0 for done, width in sizes), f'{name}: {sizes}'
        assert not errors, errors

def test_source_links_open_the_module_at_the_line(site, browser):
    "A `source` link of the API lands on the highlighted module at that line, inside the site."
    out, _ = site
    html = (out/'config.html').read_text(encoding='utf-8')
    link = re.search(r'href="(source/setrank/config\.py\.html#L-(\d+))"', html)
    assert link, 'the config page has no source link into the site'
    page, errors = _open(browser, out/'config.html')
    page.click(f'a[href="{link[1]}"]')
    page.wait_for_load_state()
    assert page.url.endswith(link[1]) and page.locator(f'#L-{link[2]}').count() == 1
    page.close()
    assert not errors

def test_readme_ablation_block_is_rendered_from_the_recorded_ablation():
    "Model A's ablation table in README comes from the recorded bench JSON; editing one number fails the check."
    from setrank.results import block_text, check_results, results_source
    text = (REPO/'README.md').read_text(encoding='utf-8')
    assert results_source(text, 'ablation') == RECORDED
    row = next(l for l in block_text(text, 'ablation').splitlines() if l.startswith('| **default** |'))
    problems = check_results(text.replace(row, row.replace('| **default** | 0.', '| **default** | 9.', 1), 1), REPO)
    assert len(problems) == 1 and "'ablation'" in problems[0], problems
