// Drives the dashboard in Debian's chromium through playwright-core (no browser download).
// Usage: node dashboard.cjs PLAN.json  — prints one JSON line with what it saw.
"use strict";
const fs = require("fs");
const path = require("path");
const { chromium } = require(process.env.PLAYWRIGHT_CORE);

async function main() {
  const plan = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  const userData = fs.mkdtempSync(path.join(plan.artifacts, "profile-"));
  // A fresh profile each run (playwright passes it as --user-data-dir).
  const context = await chromium.launchPersistentContext(userData, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--no-first-run",
    ],
    ignoreHTTPSErrors: true,
    viewport: { width: 1280, height: 900 },
  });
  const seen = {};
  try {
    const page = await context.newPage();
    const shot = (name) => page.screenshot({ path: path.join(plan.artifacts, name), fullPage: true });

    await page.goto(`${plan.url}/ui`);
    seen.loginUrl = page.url();
    await shot("login.png");
    await page.fill("input[name=key]", "lpadm_not-a-real-key");
    await page.click("button[type=submit]");
    seen.badLogin = await page.textContent("[role=alert]");
    await page.fill("input[name=key]", plan.key);
    await Promise.all([page.waitForURL(`${plan.url}/ui`), page.click("button[type=submit]")]);
    const started = Date.now();
    await page.goto(`${plan.url}/ui`, { waitUntil: "load" });
    seen.fleetLoadMs = Date.now() - started;
    seen.cards = await page.$$eval(".card", (cards) => cards.map((c) => c.innerText.replace(/\s+/g, " ").trim()));
    seen.charts = await page.$$eval("svg.chart", (svgs) => svgs.map((s) => s.getAttribute("aria-label")));
    await shot("fleet.png");

    await page.goto(`${plan.url}/ui/rollouts`);
    const section = `section[data-patch="${plan.halt}"]`;
    seen.statusBefore = await page.textContent(`${section} .status`);
    await shot("rollouts-before.png");
    await Promise.all([
      page.waitForURL(/\/ui\/rollouts/),
      page.click(`${section} button[value=halt]`),
    ]);
    seen.statusAfter = await page.textContent(`${section} .status`);
    seen.haltButtons = await page.$$eval(`${section} button[value=resume]`, (b) => b.length);
    await shot("rollouts-after.png");

    await page.goto(`${plan.url}/ui/machines?state=apply-failed`);
    seen.failedMachines = await page.$$eval("tbody tr td:first-child a", (links) => links.map((a) => a.textContent));
    await shot("machines.png");
    await Promise.all([page.waitForURL(/\/ui\/machines\/./), page.click("tbody tr td:first-child a")]);
    seen.machineTitle = await page.textContent("h1");
    await shot("machine.png");

    await page.goto(`${plan.url}/ui/audit`);
    seen.auditFirstRow = await page.$$eval("tbody tr:first-child td", (cells) => cells.map((c) => c.textContent));
    await shot("audit.png");
  } finally {
    await context.close();
    fs.rmSync(userData, { recursive: true, force: true });
  }
  process.stdout.write(JSON.stringify(seen) + "\n");
}

main().catch((error) => {
  process.stderr.write(String(error && error.stack || error) + "\n");
  process.exit(1);
});
