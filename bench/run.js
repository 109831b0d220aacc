#!/usr/bin/env node
// `npm run bench`: Wida side by side with graphile-worker and pg-boss on the local PostgreSQL.
//
//   node --expose-gc bench/run.js [--jobs 20000] [--single 2000] [--latency-samples 300] [--concurrency 24]
//                                 [--prefetch 1000] [--only wida,graphile,pgboss] [--rounds 1] [--json FILE] [--keep]
//
// For each system, one after another, in its own freshly created database (wida_bench_<system>):
//   warm-up    start a worker, push --warmup jobs through it (default: as many as --jobs, so the first big batch,
//              its JIT and heap growth, is not what measure 2 times), take a few latency samples, stop it
//   1. enqueue --single jobs one at a time, each awaited, on a one-connection pool        (jobs/s)
//   2. enqueue --jobs jobs in one batch call                                                (jobs/s)
//   3. delete all jobs, enqueue --jobs (not timed), ANALYZE (unless --skip-analyze: then whatever the
//      planner makes of a table without statistics), then start the worker and time until the
//      handler has run for every job AND every completion is in the database               (jobs/s)
//      The clock starts just before the worker's start call, so worker start-up is included.
//   4. with that worker idle: enqueue one job, time from just before the enqueue call to the start of its
//      handler (timestamp in the payload, same process); --latency-samples times, 5-20 ms apart (ms)
// --rounds N runs that whole sequence N times, the first system of each round rotating, and prints the median of
// the rounds in each cell: the systems run one after another, so a slow spell of the disk (each single enqueue
// waits for its commit's flush) otherwise lands on whichever system ran then.
// Every handler is a no-op. BENCH_DATABASE_URL picks another server (any database on it; the bench
// creates and drops its own databases through the `postgres` database there).
import { writeFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { startCpuCount } from './lib/cpu.js';
import { checkpoint, dropDatabase, recreateDatabase, serverUrl, serverVersion } from './lib/db.js';
import { formatValue, median, renderTable, summarize } from './lib/report.js';
import * as wida from './systems/wida.js';
import * as graphile from './systems/graphile.js';
import * as pgboss from './systems/pgboss.js';

const ALL_SYSTEMS = ['wida', 'graphile', 'pgboss'];

const { values: args } = parseArgs({
  options: {
    jobs: { type: 'string', default: '20000' },
    single: { type: 'string', default: '2000' },
    'latency-samples': { type: 'string', default: '300' },
    concurrency: { type: 'string', default: '24' },
    prefetch: { type: 'string', default: '1000' },
    // default: the --jobs count (see the header)
    warmup: { type: 'string' },
    only: { type: 'string', default: ALL_SYSTEMS.join(',') },
    rounds: { type: 'string', default: '1' },
    json: { type: 'string' },
    keep: { type: 'boolean', default: false },
    'skip-analyze': { type: 'boolean', default: false },
    // Per-system knobs; the defaults and why are in bench/README.md.
    'graphile-complete-delay': { type: 'string', default: '0' },
    'graphile-max-pool': { type: 'string' },
    'pgboss-batch-size': { type: 'string' },
    'pgboss-max': { type: 'string', default: '10' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});

if (args.help) {
  const text = (await import('node:fs')).readFileSync(new URL(import.meta.url), 'utf8');
  console.log(text.split('\n').filter((l) => l.startsWith('//')).map((l) => l.slice(3)).join('\n'));
  process.exit(0);
}

function positiveInt(name) {
  const n = Number(args[name]);
  if (!Number.isInteger(n) || n < 1) {
    console.error(`--${name} must be a positive whole number; got ${JSON.stringify(args[name])}`);
    process.exit(2);
  }
  return n;
}

const cfg = {
  jobs: positiveInt('jobs'),
  single: positiveInt('single'),
  latencySamples: positiveInt('latency-samples'),
  concurrency: positiveInt('concurrency'),
  prefetch: positiveInt('prefetch'),
  warmup: args.warmup === undefined ? positiveInt('jobs') : positiveInt('warmup'),
  rounds: positiveInt('rounds'),
};
const only = args.only.split(',').map((s) => s.trim()).filter(Boolean);
for (const name of only) {
  if (!ALL_SYSTEMS.includes(name)) {
    console.error(`--only: unknown system "${name}"; choose from ${ALL_SYSTEMS.join(', ')}`);
    process.exit(2);
  }
}
const graphileCompleteDelay = Number(args['graphile-complete-delay']);
const pgbossBatchSize = args['pgboss-batch-size'] ? positiveInt('pgboss-batch-size') : Math.ceil(cfg.prefetch / cfg.concurrency);

const factories = {
  wida: () => wida.create({ concurrency: cfg.concurrency, prefetch: cfg.prefetch, pollIntervalMs: 1000 }),
  graphile: () =>
    graphile.create({
      concurrency: cfg.concurrency,
      localQueueSize: cfg.prefetch,
      completeJobBatchDelay: graphileCompleteDelay,
      failJobBatchDelay: graphileCompleteDelay,
      // graphile-worker's own advice: 10 or concurrentJobs + 2, whichever is larger.
      maxPoolSize: args['graphile-max-pool'] ? positiveInt('graphile-max-pool') : Math.max(10, cfg.concurrency + 2),
      pollInterval: 2000,
    }),
  pgboss: () =>
    pgboss.create({
      concurrency: cfg.concurrency,
      batchSize: pgbossBatchSize,
      pollingIntervalSeconds: 0.5,
      max: positiveInt('pgboss-max'),
    }),
};

const log = (message) => process.stderr.write(`${message}\n`);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const gc = () => globalThis.gc?.();
const now = () => performance.now();
const wallClock = () => performance.timeOrigin + performance.now();

/**
 * The handler of every system calls `sink.current(payload)` first thing; each phase installs its own.
 */
const sink = { current: () => {} };

function deferred() {
  let resolve, reject;
  const promise = new Promise((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

/** Waits until the handler has run `n` times; rejects if no handler has started for `stallMs`. */
function expectHandlers(n, stallMs = 20_000) {
  const done = deferred();
  const state = { handled: 0, first: undefined, last: undefined, done: done.promise };
  let lastProgress = now();
  sink.current = () => {
    const t = now();
    state.handled++;
    state.first ??= t;
    lastProgress = t;
    if (state.handled === n) {
      state.last = t;
      done.resolve(t);
    }
  };
  const watchdog = setInterval(() => {
    if (state.handled < n && now() - lastProgress > stallMs) {
      done.reject(new Error(`stall: no handler started for ${stallMs} ms; ${state.handled} of ${n} handled`));
    }
  }, 250);
  done.promise.finally(() => clearInterval(watchdog)).catch(() => {});
  return state;
}

async function timeSequentialEnqueue(sys, n) {
  gc();
  const t0 = now();
  for (let i = 0; i < n; i++) await sys.enqueueOne({ n: i });
  const ms = now() - t0;
  return { jobs: n, ms, jobsPerSec: (n * 1000) / ms };
}

async function timeBatchEnqueue(sys, n) {
  const payloads = Array.from({ length: n }, (_, i) => ({ n: i }));
  gc();
  const t0 = now();
  await sys.enqueueBatch(payloads);
  const ms = now() - t0;
  return { jobs: n, ms, jobsPerSec: (n * 1000) / ms };
}

async function timeProcessing(sys, n) {
  await sys.reset();
  await sys.enqueueBatch(Array.from({ length: n }, (_, i) => ({ n: i })));
  if (!args['skip-analyze']) await sys.analyze();
  gc();
  const handlers = expectHandlers(n);
  const cpu = startCpuCount(sys.database);
  const t0 = now();
  await sys.startWorker((payload) => sink.current(payload));
  const tStarted = now();
  const tHandlers = await handlers.done;
  const tPersisted = await sys.waitAllCompleted({ timeoutMs: 60_000, intervalMs: 5 });
  const cpuPerJob = cpu.stop(n);
  // Anything that ran more than once shows up here after a short grace period.
  await sleep(200);
  return {
    jobs: n,
    startCallMs: tStarted - t0,
    firstHandlerMs: handlers.first - t0,
    handlersDoneMs: tHandlers - t0,
    persistedMs: tPersisted - t0,
    persistLagMs: tPersisted - tHandlers,
    handlerRuns: handlers.handled,
    jobsPerSecHandlers: (n * 1000) / (tHandlers - t0),
    jobsPerSecPersisted: (n * 1000) / (tPersisted - t0),
    ...cpuPerJob,
  };
}

/** With the worker running and idle: enqueue one job at a time and time until its handler starts. */
async function measureLatency(sys, samples, { timeoutMs = 5_000 } = {}) {
  const latencies = [];
  let timeouts = 0;
  let late = 0;
  let waiting;
  sink.current = (payload) => {
    const latency = wallClock() - payload.enqueuedAt;
    if (waiting && payload.sample === waiting.sample) waiting.resolve(latency);
    else late++;
  };
  for (let sample = 0; sample < samples; sample++) {
    const d = deferred();
    waiting = { sample, resolve: d.resolve };
    const timer = setTimeout(() => d.resolve(undefined), timeoutMs);
    await sys.enqueueOne({ sample, enqueuedAt: wallClock() });
    const latency = await d.promise;
    clearTimeout(timer);
    waiting = undefined;
    if (latency === undefined) timeouts++;
    else latencies.push(latency);
    await sleep(5 + Math.random() * 15);
  }
  return { ...summarize(latencies), timeouts, lateHandlers: late };
}

async function warmUp(sys) {
  const n = cfg.warmup;
  const handlers = expectHandlers(n + 100);
  await sys.startWorker((payload) => sink.current(payload));
  for (let i = 0; i < 100; i++) await sys.enqueueOne({ n: i });
  await sys.enqueueBatch(Array.from({ length: n }, (_, i) => ({ n: i })));
  await handlers.done;
  await sys.waitAllCompleted({ timeoutMs: 30_000 });
  await sleep(200);
  await measureLatency(sys, 20);
  await sys.stopWorker();
}

async function benchSystem(name) {
  const sys = factories[name]();
  const result = { system: name, label: sys.label, database: sys.database, settings: sys.settings };
  const t0 = now();
  log(`\n[${name}] fresh database ${sys.database}`);
  await recreateDatabase(sys.database);
  try {
    await sys.setup();
    log(`[${name}] warm-up (${cfg.warmup + 100} jobs, 20 latency samples)`);
    await warmUp(sys);
    await sys.reset();
    await checkpoint();

    log(`[${name}] 1. enqueue ${cfg.single} one at a time`);
    result.enqueueOne = await timeSequentialEnqueue(sys, cfg.single);
    log(`[${name}]    ${Math.round(result.enqueueOne.jobsPerSec)} jobs/s`);

    log(`[${name}] 2. enqueue ${cfg.jobs} in one batch`);
    result.enqueueBatch = await timeBatchEnqueue(sys, cfg.jobs);
    log(`[${name}]    ${Math.round(result.enqueueBatch.jobsPerSec)} jobs/s`);

    log(`[${name}] 3. process ${cfg.jobs} queued jobs`);
    try {
      result.process = await timeProcessing(sys, cfg.jobs);
      const p = result.process;
      log(
        `[${name}]    ${Math.round(p.jobsPerSecPersisted)} jobs/s persisted (${Math.round(p.jobsPerSecHandlers)} by handler count); ` +
          `start() ${p.startCallMs.toFixed(0)} ms, first handler ${p.firstHandlerMs.toFixed(0)} ms, ` +
          `last handler ${p.handlersDoneMs.toFixed(0)} ms, all persisted ${p.persistedMs.toFixed(0)} ms`,
      );
      if (p.handlerRuns !== cfg.jobs) log(`[${name}]    WARNING: handler ran ${p.handlerRuns} times for ${cfg.jobs} jobs`);
    } catch (error) {
      result.process = { error: error.message, outstanding: await sys.countOutstanding().catch(() => undefined) };
      log(`[${name}]    FAILED: ${error.message}`);
    }

    await sleep(500); // let the worker go idle
    log(`[${name}] 4. latency, ${cfg.latencySamples} samples`);
    result.latency = await measureLatency(sys, cfg.latencySamples);
    const l = result.latency;
    log(`[${name}]    p50 ${l.p50.toFixed(2)} ms, p95 ${l.p95.toFixed(2)} ms, p99 ${l.p99.toFixed(2)} ms, max ${l.max.toFixed(2)} ms, timeouts ${l.timeouts}`);

    await sys.stopWorker();
    result.finalStates = await sys.stateSummary();
  } catch (error) {
    result.error = error.stack ?? String(error);
    log(`[${name}] FAILED: ${result.error}`);
  } finally {
    sink.current = () => {};
    await sys.teardown().catch((error) => log(`[${name}] teardown: ${error.message}`));
    if (!args.keep) await dropDatabase(sys.database).catch((error) => log(`[${name}] drop database: ${error.message}`));
  }
  result.problems = sys.problems.slice(0, 200);
  result.problemCount = sys.problems.length;
  result.seconds = (now() - t0) / 1000;
  log(`[${name}] done in ${result.seconds.toFixed(1)} s`);
  return result;
}

// ---------------------------------------------------------------------------------------------------

const started = now();
const pgVersion = await serverVersion();
const meta = {
  date: new Date().toISOString(),
  node: process.version,
  postgres: pgVersion,
  server: serverUrl().replace(/\/\/([^:@/]+):[^@/]*@/, '//$1:***@'),
  cpus: `${availableParallelism()} x ${cpus()[0]?.model ?? 'unknown'}`,
  config: cfg,
  systems: only,
};
log(`wida bench: node ${meta.node}, PostgreSQL ${pgVersion}, ${meta.cpus}`);
log(`jobs ${cfg.jobs}, single ${cfg.single}, latency samples ${cfg.latencySamples}, concurrency ${cfg.concurrency}, prefetch/local queue ${cfg.prefetch}`);

/** Every round's result per system; round r starts with the r-th system, so no system always runs first. */
const runs = Object.fromEntries(only.map((name) => [name, []]));
for (let round = 0; round < cfg.rounds; round++) {
  const order = only.map((_, i) => only[(i + round) % only.length]);
  if (cfg.rounds > 1) log(`\nround ${round + 1} of ${cfg.rounds}: ${order.join(', ')}`);
  for (const name of order) runs[name].push(await benchSystem(name));
}
const totalSeconds = (now() - started) / 1000;
const results = Object.fromEntries(only.map((name) => [name, runs[name][0]]));

const columns = ALL_SYSTEMS.filter((n) => only.includes(n)).map((n) => ({ name: n, label: results[n].label }));
const pick = (fn) => Object.fromEntries(only.map((n) => [n, median(runs[n].map(fn))]));
const rows = [
  { label: `1. enqueue ${cfg.single}, one at a time`, unit: 'jobs/s', higherIsBetter: true, values: pick((r) => r.enqueueOne?.jobsPerSec) },
  { label: `2. enqueue ${cfg.jobs}, one batch`, unit: 'jobs/s', higherIsBetter: true, values: pick((r) => r.enqueueBatch?.jobsPerSec) },
  { label: `3. process ${cfg.jobs}, completion persisted`, unit: 'jobs/s', higherIsBetter: true, values: pick((r) => r.process?.jobsPerSecPersisted) },
  { label: `   (same, last handler start)²`, unit: 'jobs/s', higherIsBetter: true, values: pick((r) => r.process?.jobsPerSecHandlers) },
  { label: '   CPU per job, PostgreSQL³', unit: 'us', higherIsBetter: false, values: pick((r) => r.process?.postgresUsPerJob) },
  { label: '   CPU per job, worker process³', unit: 'us', higherIsBetter: false, values: pick((r) => r.process?.workerUsPerJob) },
  { label: '4. latency p50', unit: 'ms', higherIsBetter: false, values: pick((r) => r.latency?.p50) },
  { label: '   latency p95', unit: 'ms', higherIsBetter: false, values: pick((r) => r.latency?.p95) },
  { label: '   latency p99', unit: 'ms', higherIsBetter: false, values: pick((r) => r.latency?.p99) },
];

const out = [];
out.push('');
out.push(`Wida vs graphile-worker vs pg-boss — node ${meta.node}, PostgreSQL ${pgVersion}, ${meta.cpus}`);
out.push(`concurrency ${cfg.concurrency}, no-op handlers, one fresh database per system, systems run one after another;`);
if (cfg.rounds > 1) out.push(`${cfg.rounds} rounds, the first system rotating; each cell is the median of the rounds (each round's numbers under Details);`);
out.push(
  args['skip-analyze']
    ? 'measure 3 ran without ANALYZE after the untimed enqueue (--skip-analyze): tables had no planner statistics'
    : 'measure 3: database ANALYZEd after the untimed enqueue (statistics as autovacuum leaves them after a bulk enqueue)',
);
out.push('');
out.push(renderTable(rows, columns));
out.push('');
out.push('Ratios are oriented so that > 1 means Wida is better: throughput rows are wida/peer, latency rows are peer/wida¹.');
out.push('¹ latency = time from just before the enqueue call to the start of the handler, worker idle, one job at a time.');
out.push('² the handler has started for all jobs; the row above also waits until every completion is stored in the database.');
out.push('³ CPU time during measure 3 divided by the jobs: of the PostgreSQL processes serving the system\'s database, and of');
out.push('  this process (worker and bench polling); read from /proc, so "-" when PostgreSQL is not local. Less sensitive to other');
out.push('  load on the machine than the throughput rows; lower is better.');
out.push('');
out.push('Settings:');
for (const name of only) {
  const s = Object.entries(results[name].settings).map(([k, v]) => `${k}=${v}`).join(', ');
  out.push(`  ${results[name].label}: ${s}`);
}
out.push('');
out.push('Details:');
for (const name of only) {
  out.push(`  ${results[name].label}:`);
  runs[name].forEach((r, round) => {
    if (cfg.rounds > 1) {
      out.push(`    round ${round + 1}: ${roundSummary(r)}`);
      for (const part of detailLines(r)) out.push(`      ${part}`);
    } else for (const part of detailLines(r)) out.push(`    ${part}`);
  });
}

function roundSummary(r) {
  const v = (value, unit) => formatValue(value, unit);
  return (
    `single ${v(r.enqueueOne?.jobsPerSec, 'jobs/s')}, batch ${v(r.enqueueBatch?.jobsPerSec, 'jobs/s')}, ` +
    `process ${v(r.process?.jobsPerSecPersisted, 'jobs/s')} jobs/s; latency p50/p99 ${v(r.latency?.p50, 'ms')}/${v(r.latency?.p99, 'ms')} ms`
  );
}

function detailLines(r) {
  const parts = [];
  if (r.process && !r.process.error) {
    const p = r.process;
    parts.push(
      `process: start() ${p.startCallMs.toFixed(0)} ms, first handler ${p.firstHandlerMs.toFixed(0)} ms, last handler ` +
        `${p.handlersDoneMs.toFixed(0)} ms, all persisted ${p.persistedMs.toFixed(0)} ms (+${p.persistLagMs.toFixed(0)} ms), handler runs ${p.handlerRuns}` +
        (p.handlerRuns > p.jobs ? ` (${p.handlerRuns - p.jobs} jobs ran more than once)` : ''),
    );
  } else if (r.process?.error) parts.push(`process FAILED: ${r.process.error} (outstanding ${r.process.outstanding})`);
  if (r.latency) parts.push(`latency: mean ${r.latency.mean.toFixed(2)}, max ${r.latency.max.toFixed(2)} ms, ${r.latency.samples} samples, ${r.latency.timeouts} timeouts`);
  if (r.finalStates) parts.push(`final states: ${JSON.stringify(r.finalStates)}`);
  parts.push(`warnings/errors logged: ${r.problemCount}`);
  const distinct = new Map();
  for (const p of r.problems) distinct.set(`${p.level}: ${p.message}`, (distinct.get(`${p.level}: ${p.message}`) ?? 0) + 1);
  for (const [message, n] of distinct) parts.push(`  ${n} x ${message}`);
  if (r.error) parts.push(`FAILED: ${r.error.split('\n')[0]}`);
  parts.push(`took ${r.seconds.toFixed(1)} s`);
  return parts;
}
out.push('');
out.push(`Whole bench: ${totalSeconds.toFixed(1)} s`);
console.log(out.join('\n'));

if (args.json) {
  writeFileSync(args.json, `${JSON.stringify({ meta, totalSeconds, runs, table: rows }, null, 2)}\n`);
  log(`results written to ${args.json}`);
}

const failed = only.some((n) => runs[n].some((r) => r.error || r.process?.error));
// Everything the bench opened is closed by now; say so if something is still holding the event loop.
const lingering = process.getActiveResourcesInfo().filter((r) => !['TTYWrap', 'PipeWrap', 'FSReqCallback'].includes(r));
if (lingering.length > 0) log(`note: still active at exit: ${lingering.join(', ')} (usually pg-boss's 1 s clean-up after offWork; exiting anyway)`);
// Everything is closed by now; exit explicitly anyway so a library's stray timer cannot keep us alive.
process.exit(failed ? 1 : 0);
