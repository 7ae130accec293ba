// Presigns ElastiCache / MemoryDB IAM connect requests with the AWS SDK's
// signer (@smithy/signature-v4), for tests/integration/test_sigv4_smithy.c.
//
// stdin:  one JSON object per line: {id, cache, user, region, service,
//         serverless, when (seconds since the epoch, UTC), expires, akid,
//         secret, token (optional)}
// stdout: one JSON object per line, in input order:
//         {"id":N,"host":"...","params":["name=value",...]}
//         where each pair is encoded the way the signer encodes its
//         canonical query (the SDK's escapeUri), X-Amz-Signature included.
import { createInterface } from "node:readline";
import { Hash } from "@smithy/hash-node";
import { HttpRequest } from "@smithy/protocol-http";
import { SignatureV4 } from "@smithy/signature-v4";
import { escapeUri } from "@smithy/util-uri-escape";

async function presign(c) {
  const query = { Action: "connect", User: c.user };
  if (c.serverless) query.ResourceType = "ServerlessCache";
  const request = new HttpRequest({
    method: "GET",
    protocol: "https:",
    hostname: c.cache,
    path: "/",
    query,
    headers: { host: c.cache },
  });
  const credentials = { accessKeyId: c.akid, secretAccessKey: c.secret };
  if (c.token) credentials.sessionToken = c.token;
  const signer = new SignatureV4({
    credentials,
    region: c.region,
    service: c.service,
    sha256: Hash.bind(null, "sha256"),
  });
  const signed = await signer.presign(request, {
    expiresIn: c.expires,
    signingDate: new Date(c.when * 1000),
  });
  const params = Object.entries(signed.query).map(([k, v]) => `${escapeUri(k)}=${escapeUri(v)}`);
  return { id: c.id, host: signed.hostname, params };
}

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of lines) {
  if (line.trim() === "") continue;
  process.stdout.write(JSON.stringify(await presign(JSON.parse(line))) + "\n");
}
