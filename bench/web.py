"""Web's figures: latency of the form and report pages at a steady 50 requests/s (web's answer
includes its calls to intake and geo-router), the form page's compressed weight in a real
browser (tiles excluded: the local stack has none), and Lighthouse's mobile scores.

    uv run python bench/web.py [--seconds 20] [--rate 50] [--no-lighthouse]

Starts its own stack (broker, database, the three services and web as processes; see
devstack.browser). Lighthouse runs as npm ``lighthouse@12.2.3`` through npx against Debian's
chromium (CHROME_PATH); version 13 needs Node 22.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import sync_playwright

from bench.common import open_loop_get, report
from devstack.browser import CHROMIUM, CHROMIUM_ARGS, PHONE, BrowserStack, running_browser_stack
from devstack.pictures import phone_jpeg

LIGHTHOUSE = "lighthouse@12.2.3"


def a_routed_report(stack: BrowserStack) -> str:
    """A report with a photo, routed (so its page shows the office)."""
    answer = httpx.post(
        f"{stack.intake}/api/v1/reports",
        data={"service_code": "001", "lat": "51.3397", "long": "12.3731", "description": "Bench"},
        files=[("photos", ("photo.jpg", phone_jpeg(), "image/jpeg"))],
        headers={"X-Acknowledge-Duplicate": "true"},
        timeout=30,
    )
    answer.raise_for_status()
    report_id = str(answer.json()["id"])
    for _ in range(600):
        if stack.report(report_id)["office"]:
            return report_id
        time.sleep(0.05)
    raise TimeoutError("the report was not routed")


def steady(url: str, rate: float, seconds: float) -> dict[str, Any]:
    """Warm up (caches, connections), then the open-loop run."""
    for _ in range(20):
        httpx.get(url, timeout=10)
    return asyncio.run(open_loop_get(url, rate, seconds, "Accept-Language: de"))


def page_weight(url: str) -> dict[str, Any]:
    """Bytes on the wire (compressed bodies and headers) for everything a phone loads for the
    page, scripts and the map's outlines included."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_context(viewport=PHONE).new_page()
        responses = []
        page.on("response", lambda response: responses.append(response))
        page.goto(url)
        page.wait_for_load_state("networkidle")
        by_type: dict[str, int] = {}
        total = 0
        for response in responses:
            sizes = response.request.sizes()
            size = sizes["responseBodySize"] + sizes["responseHeadersSize"]
            total += size
            kind = response.request.resource_type
            by_type[kind] = by_type.get(kind, 0) + size
        browser.close()
    return {
        "total_kb": round(total / 1024, 1),
        "requests": len(responses),
        "by_type_kb": {k: round(v / 1024, 1) for k, v in sorted(by_type.items())},
    }


def lighthouse(url: str) -> dict[str, Any]:
    """Lighthouse's mobile scores (0–100) for one page, or why there are none."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "report.json"
        flags = " ".join(["--headless=new", *CHROMIUM_ARGS])
        done = subprocess.run(
            [
                "npx",
                "--yes",
                LIGHTHOUSE,
                url,
                "--output=json",
                f"--output-path={out}",
                "--quiet",
                "--form-factor=mobile",
                "--only-categories=performance,accessibility,best-practices",
                f"--chrome-flags={flags}",
            ],
            env={**os.environ, "CHROME_PATH": CHROMIUM},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0 or not out.exists():
            return {"error": (done.stderr or done.stdout)[-500:]}
        result = json.loads(out.read_text())
    return {
        name: round(category["score"] * 100)
        for name, category in result["categories"].items()
        if category.get("score") is not None
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--no-lighthouse", action="store_true")
    args = parser.parse_args()
    with running_browser_stack("mm_bench_web") as stack:
        report_id = a_routed_report(stack)
        pages = {"form": f"{stack.web}/", "report": f"{stack.web}/reports/{report_id}"}
        figures: dict[str, Any] = {
            "rate_per_s": args.rate,
            "seconds": args.seconds,
            "latency_note": "measured at the client on loopback: web's own time plus its calls "
            "to intake (report, service definitions cached) and geo-router (areas cached)",
        }
        for name, url in pages.items():
            figures[f"{name}_page"] = steady(url, args.rate, args.seconds)
        figures["form_page_weight"] = page_weight(pages["form"])
        if not args.no_lighthouse:
            pages["map"] = f"{stack.web}/reports"
            figures["lighthouse_mobile"] = {name: lighthouse(url) for name, url in pages.items()}
    report("web", figures)


if __name__ == "__main__":
    main()
