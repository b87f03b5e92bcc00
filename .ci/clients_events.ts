// A generated client need not hang on /v1/events: openapi-generator's
// typescript-fetch client, unmodified, opens the stream through its Raw
// call (which answers once the headers are in, leaving the body unread),
// creates a package through its own create call, and reads that package's
// event off the body, under a deadline. Its plain streamEvents() would
// wait for the end of a body that never ends. Compiled by .ci/clients with
// tsc --strict beside the generated client in gen/, then run with node:
// node clients_events.js BASE_URL KEY
import { Configuration, OperationsApi, PackagesApi } from "./gen/index";

declare const process: { argv: string[]; exit(code: number): never };

const DEADLINE_MS = 20000;

async function main(): Promise<void> {
  const [base, key] = process.argv.slice(2);
  const config = new Configuration({ basePath: base, apiKey: () => key });
  const started = Date.now();
  const timer = setTimeout(() => {
    console.error(`no event of the new package within ${DEADLINE_MS} ms`);
    process.exit(1);
  }, DEADLINE_MS);
  const stream = await new OperationsApi(config).streamEventsRaw({});
  console.log(`stream open: ${stream.raw.status} ${stream.raw.headers.get("content-type")}`);
  const body = stream.raw.body;
  if (body === null) throw new Error("the stream has no body");
  const reader = body.getReader();
  const created = await new PackagesApi(config).createPackage({
    newPackage: { name: "streamed-ts", version: "1.0" },
  });
  const decoder = new TextDecoder();
  let buffered = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error("the stream ended");
    buffered += decoder.decode(value, { stream: true });
    const block = buffered
      .split("\n\n")
      .find((b) => b.includes("event: package") && b.includes(created.id));
    if (block !== undefined) {
      console.log(`read its event off the stream after ${Date.now() - started} ms: ${block.split("\n")[0]}`);
      break;
    }
  }
  clearTimeout(timer);
  await reader.cancel();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
