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

    // Revoke: the reason is required, and a confirmation page comes before anything changes.
    const revoked = `section[data-patch="${plan.revoke}"]`;
    const revokeForm = `${revoked} form[action$="/revoke"]`;
    await page.goto(`${plan.url}/ui/rollouts`);
    await page.click(`${revokeForm} button[value=revoke]`);
    seen.revokeEmptyReasonBlocked = await page.$eval(
      `${revokeForm} input[name=reason]`, (input) => input.validity.valueMissing,
    );
    seen.urlAfterEmptyRevoke = page.url();
    await page.fill(`${revokeForm} input[name=reason]`, plan.revokeReason);
    await Promise.all([page.waitForURL(/\/ui\/patches\/.+\/revoke$/), page.click(`${revokeForm} button[value=revoke]`)]);
    seen.confirmTitle = await page.textContent("h1");
    seen.confirmReason = await page.textContent(".reason");
    await shot("revoke-confirm.png");
    await Promise.all([page.waitForURL(/\/ui\/rollouts/), page.click("button[value=confirm-revoke]")]);
    seen.revokedStatus = await page.textContent(`${revoked} .status`);
    seen.revokedReason = await page.textContent(`${revoked} .revoked .reason`);
    seen.revokedButtons = await page.$$eval(`${revoked} button`, (b) => b.length);
    await page.$eval(revoked, (section) => section.scrollIntoView());
    await shot("rollouts-revoked.png");

    await page.goto(`${plan.url}/ui/machines?state=apply-failed`);
    seen.failedMachines = await page.$$eval("tbody tr td:first-child a", (links) => links.map((a) => a.textContent));
    await shot("machines.png");
    await Promise.all([page.waitForURL(/\/ui\/machines\/./), page.click("tbody tr td:first-child a")]);
    seen.machineTitle = await page.textContent("h1");
    await shot("machine.png");

    await page.goto(`${plan.url}/ui/audit`);
    seen.auditRows = await page.$$eval("tbody tr", (rows) =>
      rows.slice(0, 2).map((row) => Array.from(row.cells, (c) => c.textContent)));
    await shot("audit.png");

    // A viewer sees the rollouts without a single button.
    await page.click("header button");
    await page.waitForURL(/\/ui\/login/);
    await page.fill("input[name=key]", plan.viewerKey);
    await Promise.all([page.waitForURL(`${plan.url}/ui`), page.click("button[type=submit]")]);
    await page.goto(`${plan.url}/ui/rollouts`);
    seen.viewerSections = await page.$$eval("section[data-patch]", (s) => s.length);
    seen.viewerButtons = await page.$$eval("main button", (b) => b.length);
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
