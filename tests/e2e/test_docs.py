"""`/docs` in a real browser: Swagger UI renders the server's own /openapi.json, lists every
operation, and runs V2 inference through "Try it out"."""

import httpx


def _operations(url: str) -> list[tuple[str, str]]:
    spec = httpx.get(f"{url}/openapi.json").json()
    assert spec["openapi"] == "3.0.3"
    return [(method.upper(), path) for path, item in spec["paths"].items() for method in item]


def test_docs_render_and_list_every_operation(ui_server, page):
    operations = _operations(ui_server.url)
    page.goto(f"{ui_server.url}/docs")
    page.wait_for_selector(".opblock", timeout=30_000)
    assert "Unable to render" not in page.content()
    shown = page.eval_on_selector_all(
        ".opblock", "blocks => blocks.map(b => [b.querySelector('.opblock-summary-method').textContent.trim(),"
                    " b.querySelector('.opblock-summary-path').getAttribute('data-path')])")
    assert len(operations) > 30
    assert sorted(map(tuple, shown)) == sorted(operations)


def test_try_it_out_runs_v2_inference(ui_server, page):
    page.goto(f"{ui_server.url}/docs")
    block = page.locator(".opblock-post", has=page.locator('[data-path="/v2/models/{name}/infer"]'))
    block.locator(".opblock-summary").click()
    block.get_by_role("button", name="Try it out").click()
    block.locator("select").first.select_option("iris")
    body = ('{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", '
            '"data": [[5.1, 3.5, 1.4, 0.2]]}]}')
    block.locator("textarea.body-param__text").fill(body)
    block.get_by_role("button", name="Execute").click()
    response = block.locator(".live-responses-table .response")
    response.locator(".response-col_status").first.wait_for()
    assert response.locator(".response-col_status").first.inner_text().strip().startswith("200")
    assert '"model_name": "iris"' in block.locator(".live-responses-table .microlight").first.inner_text()
