"""The Migration page as an operator sees it: an api-server on loopback (the `answerer`'s, on
the tests' metadata DB) after a demo-sized migration and cutover under writes, opened in headless
Chromium (Debian's `chromium`, driven by Playwright), logged in through Airflow's login form."""

from __future__ import annotations

import shutil
import time
import urllib.error
import urllib.request

import pytest

from paymigrate.db import connection
from paymigrate_dev.demo.seed import seed
from paymigrate_dev.local import airflow_services
from paymigrate_dev.local.dagrun import run_in_process
from paymigrate_dev.local.demo import reset
from paymigrate_dev.workload import Workload

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium")


def _page(api) -> str:
    """The page as the API user (a bearer token), without a browser."""
    req = urllib.request.Request(f"{api.base}/paymigrate/", headers={"Authorization": f"Bearer {api.token}"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return resp.read().decode()


@pytest.fixture(scope="module")
def cut_over(stack, airflow, answerer, tmp_path_factory):
    """A 2000-payment source migrated and cut over under writes; put back empty after."""
    from paymigrate.provider import defaults

    defaults.DEFAULT_ARGS["retries"] = 0
    reset(stack)
    seed(dsn=stack.dsn("source"), rows=2000, seed=5, replace=True)
    before = _page(answerer.api)
    work = Workload(dsn=stack.dsn("router"), directory=tmp_path_factory.mktemp("workload-page"),
                    clients=2, tps=40, seed=9).start()
    try:
        migrated = run_in_process("payment_migration", {"engine": "postgres-logical"})
        cut = run_in_process("payment_cutover", {"approved_by": "pytest", "confirm_environment": stack.env,
                                                 "canary_soak_seconds": 0})
    finally:
        work.stop()
    yield {"before": before, "migrated": migrated, "cut": cut}
    defaults.DEFAULT_ARGS["retries"] = 2
    reset(stack)
    with connection(stack.endpoint("source", dbname="postgres"), autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS payments WITH (FORCE)")
        cur.execute("CREATE DATABASE payments")


def test_the_page_says_when_no_migration_has_started(cut_over):
    assert "No migration has started in this environment" in cut_over["before"]
    assert "No cutover yet" in cut_over["before"]


def test_the_page_needs_a_login(cut_over, answerer):
    req = urllib.request.Request(f"{answerer.api.base}/paymigrate/", headers={"Accept": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=30)
    assert refused.value.code == 401


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_the_migration_page_in_chromium_after_a_cutover(cut_over, answerer, stack, airflow, tmp_path):
    from playwright.sync_api import sync_playwright

    assert cut_over["migrated"].ok and cut_over["cut"].ok, (cut_over["migrated"].tasks, cut_over["cut"].tasks)
    copy = cut_over["migrated"].xcom["start_replication"]["copy"]  # the same figures in XCom
    assert len(copy["tables"]) == 7 and all(t["done"] for t in copy["tables"]), copy
    assert copy["overall"]["rows_done"] > 2000 and copy["overall"]["eta_seconds"] == 0
    pause_ms = cut_over["cut"].xcom["write_switch"]["write_pause_seconds"] * 1000
    base = answerer.api.base
    password = airflow_services.admin_password(airflow_services.environment(stack, home=airflow))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            tab = browser.new_page(viewport={"width": 1280, "height": 1500})
            tab.goto(f"{base}/paymigrate/")  # no session: Airflow's login form, then back here
            tab.wait_for_selector("input[name=username]", timeout=60000)
            assert "/auth/login" in tab.url
            tab.fill("input[name=username]", airflow_services.ADMIN_USER)
            tab.fill("input[name=password]", password)
            tab.keyboard.press("Enter")
            tab.wait_for_url(f"{base}/paymigrate/", timeout=60000)
            tab.wait_for_selector("#cutover-timeline")
            phase = tab.inner_text("#phase")
            assert "cut-over" in phase and "cutover" in phase and "target" in phase, phase
            assert tab.locator("#lag-seconds circle, #lag-bytes circle").count() >= 2
            history = tab.inner_text("#validations")
            assert "migration" in history and "new writer" in history and "match" in history, history
            copied = tab.inner_text("#copy")
            assert "public.payments" in copied and copied.count("done") == 7, copied
            assert tab.locator("#cutover-timeline rect").count() == 9
            assert f"{pause_ms:.1f} ms" in tab.inner_text("#cutover")
            tab.screenshot(path=str(tmp_path / "migration-page.png"), full_page=True)
            report = tab.locator("#validations a", has_text="report").first
            with tab.expect_navigation():
                report.click()
            assert '"status"' in tab.content() and '"tables"' in tab.content()
            # The same page inside the Airflow UI, under its navigation.
            tab.goto(f"{base}/plugin/migration")
            frame = tab.frame_locator("iframe")
            frame.locator("#cutover-timeline").wait_for(timeout=60000)
            time.sleep(1)  # the UI's fonts and navigation settle
            tab.screenshot(path=str(tmp_path / "migration-in-airflow-ui.png"))
        finally:
            browser.close()
    print(f"\nscreenshots in {tmp_path}")
