// The trainer embedded in a Node HTTP service (node:http only): one training run at a time,
// its events streamed to any number of clients as Server-Sent Events, and an abort button.
//
//   POST /train   start a run; JSON body:
//                   { "kind": "spin" | "sft",          default "spin"
//                     "model": "<HF checkpoint folder>",
//                     "data": "<dataset path>"  or  "rows": [ …rows in any accepted shape… ],
//                     "outputDir": "<run folder>",
//                     "config": { "learningRate": 5e-7, "beta": 0.1, "perDeviceTrainBatchSize": 8, … },
//                     "resume": true,                  resume from the newest checkpoint in outputDir (default true)
//                     "device": "cpu" }
//                 → 202 {"id", "outputDir"}; 409 while another run is active; 400 for a bad body.
//   GET /events   text/event-stream: the current (or last) run's events so far, then live ones:
//                 run, step, log, eval, checkpoint, done, error (`data:` is JSON).
//   POST /abort   stop the active run at the next update (a checkpoint is written) → 202; 409 if none.
//   GET /status   the active or last run as JSON.
// When a run ends unaborted, the trained model is saved to <outputDir>/model.
//
// Run it from the repository root:
//   npx tsc -p tsconfig.build.json
//   node dist/examples/training-service.js [--port=8787] [--host=127.0.0.1] [--threads=N]
// (--port=0 picks a free port; the first stdout line says where it listens.) Then e.g.
//   curl -N http://127.0.0.1:8787/events &
//   curl -X POST http://127.0.0.1:8787/train -d '{"kind":"sft","model":"examples/demo/model","data":"examples/demo/data/train.jsonl","outputDir":"/tmp/sft-run","config":{"maxSteps":20,"learningRate":1e-4,"maxLength":64}}'
//   curl -X POST http://127.0.0.1:8787/abort
// SIGINT / SIGTERM: the active run is aborted (checkpoint written), streams end, the process exits 0.
//
// In your own project, import from "spin-native" instead of "../lib/index.js".
import http from "node:http";
import path from "node:path";
import { pathToFileURL } from "node:url";

import {
  CausalLM,
  SftTrainer,
  SpinNativeError,
  type SpinConfig,
  type SpinRow,
  SpinTrainer,
  Tokenizer,
  type TrainerEvents,
  readSpinRows,
  setNumThreads,
  toSpinRow,
} from "../lib/index.js";

/** A POST /train body, checked. */
export interface TrainRequest {
  kind: "spin" | "sft";
  model: string;
  data?: string;
  rows?: unknown[];
  outputDir: string;
  config: Partial<Omit<SpinConfig, "outputDir">>;
  resume: boolean;
  device?: string;
}

interface RunRecord {
  id: number;
  request: TrainRequest;
  status: "loading" | "training" | "saving" | "done" | "aborted" | "failed";
  controller: AbortController;
  /** Every event of the run so far, replayed to clients that connect later. */
  events: { id: number; event: string; data: unknown }[];
  finished: Promise<void>;
}

const MAX_BODY = 32 << 20;

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body) + "\n";
  res.writeHead(status, { "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

async function readBody(req: http.IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY) throw new HttpError(413, `the body is larger than ${MAX_BODY} bytes`);
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString("utf8")) as unknown;
  } catch (error) {
    throw new HttpError(400, `the body is not JSON: ${(error as Error).message}`);
  }
}

/** Checks a POST /train body (the trainer checks the config values themselves). */
export function parseTrainRequest(body: unknown): TrainRequest {
  if (body === null || typeof body !== "object" || Array.isArray(body)) throw new HttpError(400, "the body must be a JSON object");
  const b = body as Record<string, unknown>;
  const known = ["kind", "model", "data", "rows", "outputDir", "config", "resume", "device"];
  const unknown = Object.keys(b).filter((k) => !known.includes(k));
  if (unknown.length > 0) throw new HttpError(400, `unknown field(s) ${unknown.join(", ")}; expected ${known.join(", ")}`);
  const kind = b.kind ?? "spin";
  if (kind !== "spin" && kind !== "sft") throw new HttpError(400, `kind must be "spin" or "sft", got ${JSON.stringify(kind)}`);
  for (const field of ["model", "outputDir"] as const) {
    if (typeof b[field] !== "string" || b[field] === "") throw new HttpError(400, `'${field}' (a folder path) is required`);
  }
  if ((b.data === undefined) === (b.rows === undefined)) throw new HttpError(400, "give either 'data' (a dataset path) or 'rows' (an array of rows)");
  if (b.data !== undefined && typeof b.data !== "string") throw new HttpError(400, "'data' must be a path");
  if (b.rows !== undefined && (!Array.isArray(b.rows) || b.rows.length === 0)) throw new HttpError(400, "'rows' must be a non-empty array");
  const config = b.config ?? {};
  if (config === null || typeof config !== "object" || Array.isArray(config)) throw new HttpError(400, "'config' must be an object of trainer settings");
  if ("outputDir" in config) throw new HttpError(400, "set the run folder with 'outputDir', not config.outputDir");
  if (b.resume !== undefined && typeof b.resume !== "boolean") throw new HttpError(400, "'resume' must be true or false");
  if (b.device !== undefined && typeof b.device !== "string") throw new HttpError(400, "'device' must be a string");
  return {
    kind,
    model: path.resolve(b.model as string),
    ...(b.data !== undefined ? { data: path.resolve(b.data as string) } : {}),
    ...(b.rows !== undefined ? { rows: b.rows as unknown[] } : {}),
    outputDir: path.resolve(b.outputDir as string),
    config: config as TrainRequest["config"],
    resume: (b.resume as boolean | undefined) ?? true,
    ...(b.device !== undefined ? { device: b.device as string } : {}),
  };
}

export interface TrainingService {
  server: http.Server;
  /** Aborts the active run, waits for it, ends the event streams and closes the server. */
  shutdown(): Promise<void>;
}

/** The service (not listening yet: call server.listen). */
export function createTrainingService(options: { log?: (line: string) => void } = {}): TrainingService {
  const log = options.log ?? (() => {});
  const clients = new Set<http.ServerResponse>();
  let current: RunRecord | null = null;
  let nextRun = 1;
  let nextEvent = 1;
  let closing = false;

  const frame = (e: { id: number; event: string; data: unknown }) => `id: ${e.id}\nevent: ${e.event}\ndata: ${JSON.stringify(e.data)}\n\n`;
  const publish = (run: RunRecord, event: string, data: unknown) => {
    const e = { id: nextEvent++, event, data: { run: run.id, ...(data as object) } };
    run.events.push(e);
    for (const client of clients) client.write(frame(e));
  };

  async function execute(run: RunRecord): Promise<void> {
    const r = run.request;
    let model: CausalLM | null = null;
    try {
      model = await CausalLM.load(r.model, r.device ? { device: r.device } : {});
      const tokenizer = await Tokenizer.fromDir(r.model);
      const rows: SpinRow[] = r.rows ? r.rows.map((raw, row) => toSpinRow(raw, { file: "request rows", row })) : await readSpinRows(r.data!, "train");
      const config = { ...r.config, outputDir: r.outputDir };
      const trainer = r.kind === "spin" ? new SpinTrainer({ model, tokenizer, config }) : new SftTrainer({ model, tokenizer, config });
      const forward = <K extends keyof TrainerEvents>(event: K) => trainer.on(event, (payload: TrainerEvents[K]) => publish(run, event, payload));
      forward("step");
      forward("log");
      forward("eval");
      forward("checkpoint");
      run.status = "training";
      publish(run, "run", { status: "training", kind: r.kind, rows: rows.length, outputDir: r.outputDir, config: trainer.config });
      const result = await trainer.train(rows, { signal: run.controller.signal, ...(r.resume ? { resumeFrom: "latest" } : {}) });
      trainer.dispose(); // its optimizer state is model-sized: free it before the next run
      let saved: string | null = null;
      if (!result.aborted) {
        run.status = "saving";
        saved = path.join(r.outputDir, "model");
        await model.save(saved);
      }
      run.status = result.aborted ? "aborted" : "done";
      publish(run, "done", { ...result, model: saved });
    } catch (error) {
      run.status = "failed";
      const code = error instanceof SpinNativeError ? error.code : undefined;
      publish(run, "error", { message: error instanceof Error ? error.message : String(error), ...(code ? { code } : {}) });
    } finally {
      model?.dispose();
      log(`run ${run.id}: ${run.status}`);
    }
  }

  const active = () => current !== null && ["loading", "training", "saving"].includes(current.status);

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://service");
    const route = `${req.method} ${url.pathname}`;
    if (route === "POST /train") {
      if (closing) throw new HttpError(503, "the service is shutting down");
      const request = parseTrainRequest(await readBody(req));
      if (active()) throw new HttpError(409, `run ${current!.id} is still ${current!.status}; POST /abort first or wait for its done event`);
      const run: RunRecord = { id: nextRun++, request, status: "loading", controller: new AbortController(), events: [], finished: Promise.resolve() };
      current = run;
      publish(run, "run", { status: "loading", kind: request.kind, model: request.model });
      run.finished = execute(run);
      log(`run ${run.id}: ${request.kind} on ${request.model} → ${request.outputDir}`);
      sendJson(res, 202, { id: run.id, outputDir: request.outputDir });
    } else if (route === "POST /abort") {
      if (!active()) throw new HttpError(409, "no run is active");
      current!.controller.abort();
      sendJson(res, 202, { id: current!.id, status: "aborting at the next update" });
    } else if (route === "GET /events") {
      res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", connection: "keep-alive" });
      res.write(": spin-native training service\n\n");
      for (const e of current?.events ?? []) res.write(frame(e));
      clients.add(res);
      res.on("close", () => clients.delete(res)); // the client went away (or the service ended the stream)
    } else if (route === "GET /status") {
      sendJson(res, 200, current === null ? { run: null } : { run: { id: current.id, status: current.status, request: { ...current.request, rows: current.request.rows?.length }, events: current.events.length } });
    } else if (route === "GET /") {
      sendJson(res, 200, { endpoints: ["POST /train", "GET /events", "POST /abort", "GET /status"] });
    } else {
      throw new HttpError(404, `no route ${route}`);
    }
  }

  const server = http.createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      const status = error instanceof HttpError ? error.status : 500;
      if (!res.headersSent) sendJson(res, status, { error: error instanceof Error ? error.message : String(error) });
      else res.end();
    });
  });
  // A heartbeat comment keeps idle event streams open through proxies.
  const heartbeat = setInterval(() => {
    for (const client of clients) client.write(": ping\n\n");
  }, 15_000).unref();

  return {
    server,
    async shutdown() {
      closing = true;
      if (active()) current!.controller.abort();
      await current?.finished;
      clearInterval(heartbeat);
      for (const client of clients) client.end();
      clients.clear();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections(); // keep-alive sockets of finished requests
      await closed;
    },
  };
}

/** Starts the service from command-line flags; resolves once it listens. */
export async function main(argv: readonly string[]): Promise<number> {
  const usage = "usage: node dist/examples/training-service.js [--port=8787] [--host=127.0.0.1] [--threads=N]";
  if (argv.includes("--help") || argv.includes("-h")) {
    console.log(usage);
    return 0;
  }
  const flags: Record<string, string> = { port: "8787", host: "127.0.0.1" };
  for (const arg of argv) {
    const match = /^--(port|host|threads)=(.+)$/.exec(arg);
    if (!match) {
      console.error(`training-service: unexpected argument '${arg}'\n${usage}`);
      return 2;
    }
    flags[match[1]!] = match[2]!;
  }
  const port = Number(flags.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`training-service: --port must be an integer 0..65535, got '${flags.port}'\n${usage}`);
    return 2;
  }
  if (flags.threads !== undefined) setNumThreads(Number(flags.threads));

  const service = createTrainingService({ log: (line) => console.log(line) });
  await new Promise<void>((resolve, reject) => {
    service.server.once("error", reject);
    service.server.listen(port, flags.host, () => resolve());
  });
  const address = service.server.address() as { address: string; port: number };
  console.log(`listening on http://${address.address}:${address.port}`);
  const stop = (signal: string) => {
    console.log(`${signal}: shutting down`);
    service.shutdown().then(
      () => process.exit(0),
      (error: unknown) => {
        console.error(error);
        process.exit(1);
      },
    );
  };
  process.once("SIGINT", () => stop("SIGINT"));
  process.once("SIGTERM", () => stop("SIGTERM"));
  return 0;
}

// Run main only when this file is the program (importing it runs nothing).
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  main(process.argv.slice(2)).then(
    (code) => {
      if (code !== 0) process.exit(code);
    },
    (error: unknown) => {
      console.error(`training-service: ${error instanceof Error ? error.message : String(error)}`);
      process.exit(1);
    },
  );
}
