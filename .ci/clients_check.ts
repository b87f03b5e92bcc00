// Type-checks a call against the TypeScript types generated from packd's
// description (openapi-typescript), under `tsc --strict`: the create body,
// the 201 answer and the 409 problem must all be what the types say.
import type { paths, components } from "./packd";

type CreateBody =
  paths["/v1/packages"]["post"]["requestBody"]["content"]["application/json"];
type Created =
  paths["/v1/packages"]["post"]["responses"][201]["content"]["application/json"];
type Conflict =
  paths["/v1/packages"]["post"]["responses"][409]["content"]["application/problem+json"];

export async function create(base: string, key: string, body: CreateBody): Promise<Created> {
  const answer = await fetch(`${base}/v1/packages`, {
    method: "POST",
    headers: { "X-API-Key": key, "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  if (answer.status === 409) {
    const problem = (await answer.json()) as Conflict;
    const code: components["schemas"]["ErrorCode"] = problem.code;
    throw new Error(`${problem.status} ${code}: ${problem.detail}`);
  }
  return (await answer.json()) as Created;
}

const body: CreateBody = { name: "jq", version: "1.7.1" };
void create("http://127.0.0.1:8080", "key", body).then((p) => p.status satisfies components["schemas"]["Status"]);
