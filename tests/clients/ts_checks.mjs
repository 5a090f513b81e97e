// Drives Restate's TypeScript ingress client (@restatedev/restate-sdk-clients, pinned in
// package.json) against an ingress serving clients_app.py, and prints what it observed
// as one JSON object: check name -> observation. test_restate_clients.py compares it
// with the exact answers Restate gives. Nothing is asserted here, so one run shows every
// check that differs.
//
//   node ts_checks.mjs URL NODE_DEPS_DIR
//
// Dynamic values are normalised: an invocation id becomes "<inv>", an awakeable id
// "<awk>". Every request is bounded (AbortSignal timeout); a check that throws records
// {"error": message, "status": http status}.

import { createRequire } from "node:module";

const [url, depsDir] = process.argv.slice(2);
const require = createRequire(`${depsDir}/package.json`);
const clients = require("@restatedev/restate-sdk-clients");

const TIMEOUT_MS = 10_000;
const Greeter = { name: "Greeter" };
const Counter = { name: "Counter" };
const Approval = { name: "Approval" };

const results = {};

function normalise(value) {
  if (typeof value === "string") {
    if (/^inv_[0-9a-z]+$/.test(value)) return "<inv>";
    if (/^(sign_1|prom_1|awk_)[A-Za-z0-9_-]+$/.test(value)) return "<awk>";
    return value;
  }
  if (value === undefined) return "<undefined>";
  if (Array.isArray(value)) return value.map(normalise);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, normalise(v)]));
  }
  return value;
}

function failure(e) {
  const out = { error: String(e.message ?? e).split("\n")[0] };
  if (e instanceof clients.HttpCallError) {
    out.status = e.status;
    try {
      out.body = JSON.parse(e.responseText);
    } catch {
      out.body = e.responseText;
    }
  }
  return out;
}

async function check(name, fn) {
  try {
    results[name] = normalise(await fn());
  } catch (e) {
    results[name] = failure(e);
  }
}

// A fetch that counts requests and keeps the last answer's headers, for the retry checks.
function countingFetch() {
  const seen = { requests: 0, lastHeaders: null };
  const fetchFn = async (input, init) => {
    seen.requests += 1;
    const response = await fetch(input, init);
    seen.lastHeaders = response.headers;
    return response;
  };
  return { seen, fetchFn };
}

const opts = (o) => clients.rpc.opts({ timeout: TIMEOUT_MS, ...o });
const sendOpts = (o) => clients.rpc.sendOpts({ timeout: TIMEOUT_MS, ...o });

async function raw(method, path, body) {
  const response = await fetch(`${url}${path}`, {
    method,
    body,
    signal: AbortSignal.timeout(TIMEOUT_MS),
  });
  const text = await response.text();
  let parsed = text;
  try {
    parsed = text === "" ? "" : JSON.parse(text);
  } catch {
    // kept as text
  }
  return {
    status: response.status,
    contentType: response.headers.get("content-type"),
    errorSource: response.headers.get("x-restate-error-source"),
    body: parsed,
  };
}

const rs = clients.connect({ url });

// --- calls ----------------------------------------------------------------------------

await check("service call", () => rs.serviceClient(Greeter).greet("ada", opts()));
await check("generic call", () =>
  rs.call({ service: "Greeter", handler: "greet", parameter: "gen", opts: opts() })
);
await check("object call", () => rs.objectClient(Counter, "alice").add(5, opts()));
await check("object shared read", () => rs.objectClient(Counter, "alice").value(opts()));
await check("void handler, empty output serde", () =>
  rs.serviceClient(Greeter).nothing(opts({ output: clients.serde.empty }))
);
await check("void handler, json output serde", () =>
  rs.serviceClient(Greeter).nothing(opts())
);
await check("void object handler", () =>
  rs.objectClient(Counter, "alice").reset(opts({ output: clients.serde.empty }))
);
await check("void handler on the wire", () => raw("POST", "/Greeter/nothing"));

// --- idempotency keys -----------------------------------------------------------------

await check("idempotent call, twice", async () => {
  const counter = rs.objectClient(Counter, "idem");
  const first = await counter.add(5, opts({ idempotencyKey: "add-once" }));
  const second = await counter.add(5, opts({ idempotencyKey: "add-once" }));
  return { first, second, value: await counter.value(opts()) };
});
await check("idempotent service call, twice", async () => {
  const greeter = rs.serviceClient(Greeter);
  const first = await greeter.record("r1", opts({ idempotencyKey: "record-once" }));
  const second = await greeter.record("r1", opts({ idempotencyKey: "record-once" }));
  const third = await greeter.record("r2", opts());
  return { first, second, third };
});

// --- sends ----------------------------------------------------------------------------

await check("send", () => rs.serviceSendClient(Greeter).greet("bob", sendOpts()));
await check("generic send", () =>
  rs.send({ service: "Greeter", handler: "greet", parameter: "gen", opts: sendOpts() })
);
await check("idempotent send, result, resend", async () => {
  const sender = rs.objectSendClient(Counter, "sent");
  const handle = await sender.add(2, sendOpts({ idempotencyKey: "send-1" }));
  const result = await rs.result(handle);
  const again = await sender.add(2, sendOpts({ idempotencyKey: "send-1" }));
  return {
    handle,
    result,
    again,
    sameId: again.invocationId === handle.invocationId,
  };
});
await check("delayed send", async () => {
  const before = Date.now();
  const handle = await rs
    .objectSendClient(Counter, "delayed")
    .add(1, sendOpts({ delay: 300, idempotencyKey: "delayed-1" }));
  const after = Date.now();
  const { executionTime, ...rest } = handle;
  const due = Date.parse(executionTime);
  const result = await rs.result(handle);
  return {
    handle: rest,
    executionTimeFormat: /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z$/.test(executionTime ?? ""),
    // accepted between before and after, due 300 ms later (the answer has ms precision)
    executionTimeInRange: before + 300 - 1 <= due && due <= after + 300 + 1,
    result,
    ranAfterItsDelay: Date.now() - before >= 300,
  };
});

// --- attach and output by idempotency key ----------------------------------------------

await check("attach and output by idempotency key, service", async () => {
  await rs.serviceSendClient(Greeter).greet("idem", sendOpts({ idempotencyKey: "greet-1" }));
  return {
    attach: await raw("GET", "/restate/invocation/Greeter/greet/greet-1/attach"),
    output: await raw("GET", "/restate/invocation/Greeter/greet/greet-1/output"),
  };
});
await check("attach and output by idempotency key, object", async () => {
  await rs.objectClient(Counter, "keyed").add(7, opts({ idempotencyKey: "add-7" }));
  return {
    attach: await raw("GET", "/restate/invocation/Counter/keyed/add/add-7/attach"),
    output: await raw("GET", "/restate/invocation/Counter/keyed/add/add-7/output"),
    otherKey: (await raw("GET", "/restate/invocation/Counter/other/add/add-7/output")).status,
    otherHandler: (await raw("GET", "/restate/invocation/Counter/keyed/value/add-7/output"))
      .status,
    unknown: (await raw("GET", "/restate/invocation/Counter/keyed/add/nope/attach")).status,
  };
});
await check("attach by idempotency key of a void handler", async () => {
  await rs.objectClient(Counter, "keyed").reset(
    opts({ idempotencyKey: "reset-1", output: clients.serde.empty })
  );
  return raw("GET", "/restate/invocation/Counter/keyed/reset/reset-1/attach");
});

// --- workflows and awakeables ---------------------------------------------------------

await check("workflow submit, output, awakeable resolve, attach", async () => {
  const workflow = rs.workflowClient(Approval, "wf-resolve");
  const submitted = await workflow.workflowSubmit("order 1", sendOpts());
  const resubmitted = await workflow.workflowSubmit("order 1", sendOpts());
  const awakeableId = await workflow.awakeableId(opts());
  const pending = await workflow.workflowOutput(opts());
  await rs.resolveAwakeable(awakeableId, "approved");
  const attached = await workflow.workflowAttach(opts());
  const output = await workflow.workflowOutput(opts());
  return {
    submitted,
    resubmitted,
    sameId: resubmitted.invocationId === submitted.invocationId,
    awakeableId,
    pendingReady: pending.ready,
    attached,
    output: { ready: output.ready, result: output.result },
  };
});
await check("workflow awakeable reject", async () => {
  const workflow = rs.workflowClient(Approval, "wf-reject");
  await workflow.workflowSubmit("order 2", sendOpts());
  await rs.rejectAwakeable(await workflow.awakeableId(opts()), "declined");
  try {
    return { attached: await workflow.workflowAttach(opts()) };
  } catch (e) {
    return { attachFailed: failure(e) };
  }
});

// --- terminal errors with retries enabled ---------------------------------------------

for (const code of [500, 422]) {
  await check(`terminal error ${code}, retries enabled`, async () => {
    const { seen, fetchFn } = countingFetch();
    const retrying = clients.connect({
      url,
      fetch: fetchFn,
      retry: { maxAttempts: 3, initialInterval: 5, maxInterval: 10 },
    });
    const before = await rs.serviceClient(Greeter).failures_seen(opts());
    let outcome;
    try {
      outcome = await retrying
        .serviceClient(Greeter)
        .fail(code, opts({ idempotencyKey: `fail-${code}` }));
    } catch (e) {
      outcome = failure(e);
    }
    const after = await rs.serviceClient(Greeter).failures_seen(opts());
    return {
      outcome,
      requests: seen.requests,
      errorSource: seen.lastHeaders?.get("x-restate-error-source") ?? null,
      handlerRuns: after - before,
    };
  });
}
await check("ingress error source", async () => {
  const unknown = await raw("POST", "/Nobody/greet", '"x"');
  return { status: unknown.status, errorSource: unknown.errorSource };
});

// --- health ---------------------------------------------------------------------------

await check("health", () => raw("GET", "/restate/health"));

process.stdout.write(JSON.stringify(results));
