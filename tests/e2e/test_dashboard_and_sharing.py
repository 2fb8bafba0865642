"""The dashboard, share tokens and a team's own page, in a real browser."""

from pathlib import Path

import httpx

from tests.e2e.conftest import screenshot

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "custom-ui"


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
    page.locator("#chart-rps svg polyline").first.wait_for(state="attached", timeout=10_000)
    screenshot(page, "dashboard")


def test_share_token_guards_the_page_and_its_api_calls(browser, start_ui_server):
    server = start_ui_server(share_token="s3cret-token")
    context = browser.new_context()
    page = context.new_page()
    try:
        response = page.goto(server.url + "/ui/digits")
        assert response.status == 401 and "?token=" in page.inner_text("body")
        assert httpx.get(server.url + "/v2/models/digits").status_code == 401
        assert httpx.get(server.url + "/v2/health/ready").status_code == 200  # probes stay open

        assert page.goto(server.url + "/ui/digits?token=s3cret-token").status == 200
        page.click("#random")  # the page's own API calls carry the token in its cookie
        page.wait_for_selector("[data-testid=label]")
        assert page.goto(server.url + "/dashboard").status == 200
        assert page.goto(server.url + "/ui/digits?token=wrong-token").status == 401
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
