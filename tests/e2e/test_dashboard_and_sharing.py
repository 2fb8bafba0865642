"""The dashboard, share tokens and a team's own page, in a real browser."""

from pathlib import Path

import httpx
import pytest

from pallet.serve.app import create_app
from pallet.settings import ServeConfig
from tests.e2e.conftest import screenshot
from tests.serve.conftest import RunningServer, store_of_classes, wait_for
from tests.serve.test_ui_api import TOUCHY, status_counts

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "custom-ui"


def _v2(values: list[float]) -> dict:
    return {"inputs": [{"name": "x", "shape": [1, len(values)], "datatype": "FP64", "data": values}]}


@pytest.fixture(scope="module")
def touchy_store(tmp_path_factory):
    return store_of_classes(tmp_path_factory, "touchymodel", TOUCHY, ("Touchy", "touchy"))


@pytest.fixture
def touchy_server(touchy_store):
    """Its own server for each test: the dashboard counts from nothing."""
    with RunningServer(create_app(ServeConfig(models=["touchy"], access_log=False), touchy_store)) as server:
        yield server


def _cell(page, model: str, column: str) -> int:
    return int(page.locator(f"tr[data-model='{model}'] [data-testid={column}]").inner_text().replace(",", ""))


def test_dashboard_shows_the_request_just_made_and_its_feedback(page, start_ui_server):
    server = start_ui_server()  # its own server: the counts start from nothing
    page.goto(server.url + "/dashboard")
    page.locator("tr[data-model='iris']").wait_for()
    assert _cell(page, "iris", "requests") == 0
    assert page.locator("tr[data-model]").count() == 4

    page.goto(server.url + "/ui/iris")
    page.click("#random")
    page.wait_for_selector("[data-testid=label]")
    page.click("#thumbs-up")
    page.click("#send-feedback")
    page.wait_for_selector("text=Thanks: saved as feedback #")

    page.goto(server.url + "/dashboard")
    page.wait_for_function("document.querySelector(\"tr[data-model='iris'] [data-testid=requests]\")"
                           "?.innerText === '1'")
    assert _cell(page, "iris", "feedback") >= 1
    assert _cell(page, "digits", "requests") == 0
    assert float(page.locator("tr[data-model='iris'] [data-testid=p50]").inner_text()) > 0  # latency of the last minute
    assert "100%" in page.locator("tr[data-model='iris']").inner_text()  # the one rating was a thumbs up
    assert page.locator("[data-testid=kpi-requests] .value").inner_text() == "1"
    # It keeps itself current: a request made elsewhere shows up without a reload.
    httpx.post(server.url + "/v2/models/digits/infer", json={"inputs": [
        {"name": "input", "shape": [1, 64], "datatype": "FP64", "data": [0] * 64}]}).raise_for_status()
    page.wait_for_function("document.querySelector(\"tr[data-model='digits'] [data-testid=requests]\")"
                           "?.innerText === '1'", timeout=10_000)
    page.locator("#chart-rps svg [data-model=digits]").first.wait_for(state="attached", timeout=10_000)
    screenshot(page, "dashboard")


def _text(page, selector: str) -> str:
    return page.locator(selector).inner_text().replace(",", "")


def test_dashboard_shows_client_errors_and_model_failures_apart_in_every_place(page, touchy_server):
    before = status_counts(touchy_server.url, "touchy")
    with httpx.Client(base_url=touchy_server.url) as client:
        for values, status in [([1.0, 2.0], 200)] * 3 + [([1.0, 2.0, 3.0], 400)] * 2 + [([-1.0, 2.0], 500)] * 4:
            assert client.post("/v2/models/touchy/infer", json=_v2(values)).status_code == status
        assert client.post("/v2/models/nope/infer", json=_v2([1.0, 2.0])).status_code == 404
    after = status_counts(touchy_server.url, "touchy")
    delta = {status: after.get(status, 0) - before.get(status, 0) for status in ("2xx", "4xx", "5xx")}
    assert delta == {"2xx": 3, "4xx": 2, "5xx": 4}  # what /metrics says of the model

    page.goto(touchy_server.url + "/dashboard")
    page.locator("tr[data-version='touchy:1']").wait_for()
    model, version = "tr[data-model='touchy']", "tr[data-version='touchy:1']"
    for column, expected in (("requests", "9"), ("client-errors", f"{delta['4xx']:g}"),
                             ("server-errors", f"{delta['5xx']:g}")):
        for row, prefix in ((model, ""), (version, "version-")):  # the Models table and the Versions table
            assert _text(page, f"{row} [data-testid={prefix}{column}]") == expected, (row, column)
    # The tiles add the request that named no loaded model (a client error too) and say so.
    assert _text(page, "[data-testid=kpi-requests] .value") == "10"
    assert _text(page, "[data-testid=kpi-client-errors] .value") == "3"
    assert "1 for models not loaded" in _text(page, "[data-testid=kpi-client-errors]")
    assert _text(page, "[data-testid=kpi-server-errors] .value") == "4"
    headers = page.locator("table[data-testid=versions] thead").inner_text().lower()
    assert "client errors" in headers and "failures" in headers
    screenshot(page, "dashboard-errors")


def _series(url: str) -> list[dict]:
    (row,) = httpx.get(url + "/ui/api/dashboard").json()["models"]
    return row["figures"]["series"] if row["figures"] else []


def test_the_charts_break_where_no_requests_came(page, touchy_server):
    def send():
        httpx.post(touchy_server.url + "/v2/models/touchy/infer", json=_v2([1.0, 2.0])).raise_for_status()

    def busy_then_idle():  # an interval with requests, then one without (not the last: it is still open)
        latencies = [p["p99_ms"] for p in _series(touchy_server.url)][:-1]
        return any(a is not None and b is None for a, b in zip(latencies, latencies[1:]))

    send()
    wait_for(busy_then_idle, 30, "an interval without requests after one with them")
    send()
    wait_for(lambda: _series(touchy_server.url)[-1]["p99_ms"] is not None, 30, "an interval with requests again")
    page.goto(touchy_server.url + "/dashboard")
    for chart in ("p99", "rps"):  # two stretches each, not one line drawn across the quiet interval
        drawn = page.locator(f"#chart-{chart} svg [data-model=touchy]")
        drawn.first.wait_for(state="attached")
        assert drawn.count() >= 2, (chart, _series(touchy_server.url), page.locator(f"#chart-{chart}").inner_html())
    screenshot(page, "dashboard-gaps")


def test_share_token_guards_the_page_and_its_api_calls(browser, start_ui_server):
    server = start_ui_server(share_token="s3cret-token")
    context = browser.new_context()
    page = context.new_page()
    try:
        response = page.goto(server.url + "/ui/digits")
        assert response.status == 401 and response.headers["content-type"].startswith("text/html")
        assert page.locator("h1").inner_text() == "A shared pallet server"
        assert "?token=" in page.inner_text("body") and "ask whoever shared" in page.inner_text("body")
        screenshot(page, "shared-server")
        assert httpx.get(server.url + "/v2/models/digits").status_code == 401
        assert httpx.get(server.url + "/v2/health/ready").status_code == 200  # probes stay open

        assert page.goto(server.url + "/ui/digits?token=s3cret-token").status == 200
        page.click("#random")  # the page's own API calls carry the token in its cookie
        page.wait_for_selector("[data-testid=label]")
        assert page.goto(server.url + "/dashboard").status == 200
        assert page.goto(server.url + "/ui/digits?token=wrong-token").status == 401
        assert "not this server's" in page.inner_text("body")
        page.fill("input[name=token]", "s3cret-token")  # the page's own form opens the same path
        with page.expect_navigation():
            page.click("button[type=submit]")
        assert page.url.startswith(server.url + "/ui/digits?token=") and page.locator("#random").count() == 1
    finally:
        context.close()
    assert httpx.get(server.url + "/v2/models/digits", headers={"X-Share-Token": "s3cret-token"}).status_code == 200


def test_the_custom_ui_example_replaces_the_index_and_calls_the_same_api(page, start_ui_server):
    server = start_ui_server(ui=str(EXAMPLE))
    page.goto(server.url + "/")
    assert page.title() == "Iris species"
    page.click("text=Predict")
    page.wait_for_function("document.getElementById('answer').textContent !== ''")
    assert page.locator("#answer").inner_text() == "species 0"  # the prefilled row is a setosa
    page.fill("#values", "5.1, 3.5")
    page.click("text=Predict")
    page.wait_for_function("document.getElementById('answer').textContent.includes('expected shape')")
    assert page.goto(server.url + "/ui/digits").status == 200  # the generated pages stay available
