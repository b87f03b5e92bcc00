// The explorer in a real browser (Debian's headless Chromium, driven by
// playwright-core): Authorize with a key, open "create a package", execute
// the prefilled request unedited, and expect 201. A screenshot of the page
// with the answer is written for the CI log.
// Usage: node browser_check.js BASE_URL KEY SCREENSHOT
const { chromium } = require("playwright-core");

const [base, key, screenshot] = process.argv.slice(2);

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    // As root in CI, and with no network beyond loopback: nothing in the
    // background may reach out.
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 1400 } });
    const external = [];
    page.on("request", (r) => {
      if (!r.url().startsWith(base) && !r.url().startsWith("data:")) external.push(r.url());
    });
    await page.goto(`${base}/docs`);
    await page.click("button.authorize");
    // The first scheme of the dialog is the X-API-Key header.
    await page.fill(".modal-ux input[type=text], .modal-ux input[type=password]", key);
    await page.click(".modal-ux .auth-btn-wrapper button.authorize");
    await page.click(".modal-ux button.btn-done");

    const op = page.locator("#operations-Packages-create_package");
    await op.locator(".opblock-summary").click();
    await op.locator("button.try-out__btn").click();
    // The prefilled body, as the page shows it: left untouched.
    const body = await op.locator("textarea.body-param__text").inputValue();
    console.log(`prefilled body: ${body.replace(/\s+/g, " ")}`);
    await op.locator("button.execute").click();
    const status = op.locator(".live-responses-table .response .response-col_status").first();
    await status.waitFor({ timeout: 15000 });
    const code = (await status.textContent()).trim();
    await op.scrollIntoViewIfNeeded();
    await page.screenshot({ path: screenshot });
    console.log(`executed unedited: ${code}; screenshot ${screenshot}`);
    if (!code.startsWith("201")) throw new Error(`expected 201, got ${code}`);
    if (external.length) throw new Error(`the page reached out: ${external.join(", ")}`);
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
