// The explorer in a real browser (Debian's headless Chromium, driven by
// playwright-core), against a server with --cors-origin set: Authorize with
// a key, execute the prefilled create unedited (201), download the package
// it made (202), list the packages (200, with it). A screenshot of the page
// with the answers is written for the CI log.
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

    // Opens an operation, fills its path id if given, executes, and
    // returns the status and body of the live answer.
    async function execute(id, pathId) {
      const op = page.locator(`#operations-Packages-${id}`);
      await op.locator(".opblock-summary").click();
      await op.locator("button.try-out__btn").click();
      if (pathId) await op.locator('tr[data-param-name="id"] input').fill(pathId);
      const body = op.locator("textarea.body-param__text");
      if (await body.count()) {
        // The prefilled body, as the page shows it: left untouched.
        console.log(`prefilled body: ${(await body.inputValue()).replace(/\s+/g, " ")}`);
      }
      await op.locator("button.execute").click();
      const status = op.locator(".live-responses-table .response .response-col_status").first();
      await status.waitFor({ timeout: 15000 });
      const code = (await status.textContent()).trim();
      const text = await op.locator(".live-responses-table .response-col_description pre").first().textContent();
      console.log(`${id}: ${code}`);
      return { op, code, text };
    }

    const created = await execute("create_package");
    if (!created.code.startsWith("201")) throw new Error(`create: expected 201, got ${created.code}`);
    const id = JSON.parse(created.text).id;
    const download = await execute("download_package", id);
    if (!download.code.startsWith("202")) throw new Error(`download: expected 202, got ${download.code}`);
    const list = await execute("list_packages");
    if (!list.code.startsWith("200")) throw new Error(`list: expected 200, got ${list.code}`);
    if (!JSON.parse(list.text).items.some((p) => p.id === id)) throw new Error("list: the new package is missing");
    await list.op.scrollIntoViewIfNeeded();
    await page.screenshot({ path: screenshot });
    console.log(`created, downloaded and listed ${id} from the page; screenshot ${screenshot}`);
    if (external.length) throw new Error(`the page reached out: ${external.join(", ")}`);
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
