"""An A/B test read off the dashboard: a split routes the prototype page's predictions, and each
version's traffic share, requests and feedback show up in the Versions table."""

import httpx
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import pallet
from pallet.rollout import Rollouts
from pallet.serve.app import create_app
from pallet.settings import ServeConfig
from pallet.store import Store
from tests.e2e.conftest import screenshot
from tests.serve.conftest import RunningServer


@pytest.fixture(scope="module")
def split_server(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("ab") / "home")
    x, y = load_iris(return_X_y=True)
    for c in (1.0, 0.05):  # two versions that differ a little, as an experiment's would
        pallet.save(LogisticRegression(C=c, max_iter=1000).fit(x, y), "iris", sample=x[:5], aliases=["production"], store=store)
    Rollouts(store, actor="e2e").split("iris", {"iris:1": 50, "iris:2": 50})
    config = ServeConfig(models=["iris@production"], access_log=False, rollout_poll=0.2)
    with RunningServer(create_app(config, store)) as server:
        yield server


def _number(page, selector: str) -> int:
    return int(page.locator(selector).inner_text().replace(",", ""))


def _feedback_counts(url: str) -> dict[str, float]:
    """pallet_feedback_total for iris thumbs up, by version (the registry is the whole test process's)."""
    found = {}
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith('pallet_feedback_total{model="iris",rating="up",version="'):
            found[line.split('version="')[1].split('"')[0]] = float(line.split()[-1])
    return found


def test_the_page_follows_the_split_and_the_dashboard_reads_it_per_version(page, split_server):
    thumbs_before = _feedback_counts(split_server.url)
    page.goto(split_server.url + "/ui/iris")
    answered = []
    for i in range(12):
        before = page.locator("#meta").inner_text() if i else ""
        page.click("#random")
        page.wait_for_function("([before]) => { const m = document.querySelector('#meta');"
                               " return m && m.innerText.includes('request') && m.innerText !== before; }",
                               arg=[before])
        answered.append(page.locator("#meta").inner_text().split("version ")[1].split(" ")[0])
        if i == 0:
            page.click("#thumbs-up")
            page.click("#send-feedback")
            page.wait_for_selector("text=Thanks: saved as feedback #")
    assert set(answered) <= {"1", "2"}

    page.goto(split_server.url + "/dashboard")
    page.locator("tr[data-version='iris:2']").wait_for()
    for version in ("1", "2"):
        row = f"tr[data-version='iris:{version}']"
        assert page.locator(f"{row} [data-testid=share]").inner_text() == "50%"
        page.wait_for_function(f"document.querySelector(\"{row} [data-testid=version-requests]\")?.innerText"
                               f" === '{answered.count(version)}'")
    rated = f"tr[data-version='iris:{answered[0]}'] [data-testid=version-feedback]"
    assert _number(page, rated) == 1
    assert "split" in page.locator("tr[data-version='iris:1']").inner_text()
    after = _feedback_counts(split_server.url)
    assert after[answered[0]] - thumbs_before.get(answered[0], 0) == 1
    screenshot(page, "dashboard-versions")
