#!/usr/bin/env node
// A heartrate-serve client in Node.js: @grpc/grpc-js over TLS, the contract loaded at run time
// from proto/heartrate_service.proto with @grpc/proto-loader (no generated code). Run by
// tests/e2e/test_node_client.py, which asserts on what this prints.
//
//   node client.js --target localhost:50051 --ca ca.pem --token <jwt> --user alice \
//                  --submit-bpm 71 --stream-bpm 72,73,74
//
// Each option may be given as an environment variable instead (HEARTRATE_TARGET, HEARTRATE_CA,
// HEARTRATE_TOKEN, HEARTRATE_USER, HEARTRATE_SUBMIT_BPM, HEARTRATE_STREAM_BPM,
// HEARTRATE_DEADLINE_MS, HEARTRATE_PROTO). Without a token no authorization metadata is sent.
//
// It makes three calls in order: SubmitHeartRate (one reading for --user), StreamHeartRate
// (one reading per --stream-bpm, 1 ms apart), GetHeartRateStatus (for --user), and prints one
// JSON object on stdout: {"submit": R, "stream": R, "status": R}, where R is
// {"ok": true, "response": ...} ("responses": [...] for the stream) or
// {"ok": false, "code": <gRPC status code number>, "details": "..."}. int64 fields are strings.
// Exit status 0 when the calls were made (whatever they answered), 2 on bad arguments.
"use strict";

const fs = require("fs");
const path = require("path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const OPTIONS = {
  target: "HEARTRATE_TARGET",
  ca: "HEARTRATE_CA",
  token: "HEARTRATE_TOKEN",
  user: "HEARTRATE_USER",
  "submit-bpm": "HEARTRATE_SUBMIT_BPM",
  "stream-bpm": "HEARTRATE_STREAM_BPM",
  "deadline-ms": "HEARTRATE_DEADLINE_MS",
  proto: "HEARTRATE_PROTO",
};

function usage(message) {
  process.stderr.write(`client.js: ${message}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const args = {};
  for (const [name, env] of Object.entries(OPTIONS)) {
    if (process.env[env] !== undefined && process.env[env] !== "") args[name] = process.env[env];
  }
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    if (!arg.startsWith("--")) usage(`unexpected argument ${arg}`);
    const eq = arg.indexOf("=");
    const name = eq >= 0 ? arg.slice(2, eq) : arg.slice(2);
    if (!(name in OPTIONS)) usage(`unknown option --${name}`);
    if (eq >= 0) {
      args[name] = arg.slice(eq + 1);
    } else {
      if (i + 1 >= argv.length) usage(`--${name} needs a value`);
      i += 1;
      args[name] = argv[i];
    }
  }
  for (const required of ["target", "ca", "user"]) {
    if (!args[required]) usage(`--${required} (or ${OPTIONS[required]}) is required`);
  }
  return args;
}

function bpmList(text, name) {
  if (!text) return [];
  return text.split(",").map((part) => {
    const bpm = Number.parseInt(part, 10);
    if (!Number.isInteger(bpm) || String(bpm) !== part.trim()) usage(`bad --${name} ${text}`);
    return bpm;
  });
}

function failure(error) {
  return { ok: false, code: error.code, details: error.details ?? String(error) };
}

function unary(client, method, request, deadlineMs) {
  return new Promise((resolve) => {
    client[method](request, { deadline: Date.now() + deadlineMs }, (error, response) => {
      resolve(error ? failure(error) : { ok: true, response });
    });
  });
}

function stream(client, requests, deadlineMs) {
  return new Promise((resolve) => {
    const call = client.StreamHeartRate({ deadline: Date.now() + deadlineMs });
    const responses = [];
    let done = false;
    const finish = (result) => {
      if (!done) {
        done = true;
        resolve(result);
      }
    };
    call.on("data", (response) => responses.push(response));
    call.on("error", (error) => finish({ ...failure(error), responses }));
    call.on("end", () => finish({ ok: true, responses }));
    for (const request of requests) call.write(request);
    call.end();
  });
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const protoFile =
    args.proto || path.resolve(__dirname, "..", "..", "proto", "heartrate_service.proto");
  const definition = protoLoader.loadSync(protoFile, {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const { HeartRateMonitor } = grpc.loadPackageDefinition(definition).heartrate;

  let credentials = grpc.credentials.createSsl(fs.readFileSync(args.ca));
  if (args.token) {
    const bearer = grpc.credentials.createFromMetadataGenerator((_params, callback) => {
      const metadata = new grpc.Metadata();
      metadata.set("authorization", `Bearer ${args.token}`);
      callback(null, metadata);
    });
    credentials = grpc.credentials.combineChannelCredentials(credentials, bearer);
  }
  const client = new HeartRateMonitor(args.target, credentials);

  const deadlineMs = Number.parseInt(args["deadline-ms"] || "30000", 10);
  const user = args.user;
  const submitBpm = bpmList(args["submit-bpm"] || "71", "submit-bpm");
  const streamBpm = bpmList(args["stream-bpm"] || "72,73,74", "stream-bpm");
  if (submitBpm.length !== 1) usage("--submit-bpm takes one value");
  const t0 = Date.now() - 5000;

  const result = {};
  result.submit = await unary(
    client,
    "SubmitHeartRate",
    { user_id: user, bpm: submitBpm[0], timestamp_ms: String(t0) },
    deadlineMs,
  );
  result.stream = await stream(
    client,
    streamBpm.map((bpm, i) => ({ user_id: user, bpm, timestamp_ms: String(t0 + 1 + i) })),
    deadlineMs,
  );
  result.status = await unary(
    client,
    "GetHeartRateStatus",
    { user_id: user, recent_count: 100 },
    deadlineMs,
  );
  client.close();
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((error) => {
  process.stderr.write(`client.js: ${error && error.stack ? error.stack : error}\n`);
  process.exit(1);
});
