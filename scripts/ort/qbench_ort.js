#!/usr/bin/env node
// qbench's ONNX Runtime engine (lib/export/src/ort.cpp drives it). One request, one process:
//   node qbench_ort.js REQUEST.json
// REQUEST: {model, threads, optimized_model?,
//           eval?:    {input, shape: [N, ...sample], batch, logits_out},
//           latency?: {input, shape: [B, ...sample], warmup, repeats}}
//           probe?:   {input, shape: [B, ...sample], outputs: [names], out_dir}}
//      or: {threads, time: {models: [...], input, shape: [B, ...sample], warmup, rounds, reps}}
// `input` files hold raw little-endian float32 in C order; `logits_out` receives the first
// output's values, raw float32, batch after batch. stdout: one JSON line with the runtime's
// version, the output's shape and the latency figures (milliseconds per batch). The `time` form
// loads every model, warms each up, then runs `rounds` rounds in which each model in turn runs
// `reps` timed runs, so that load from other processes hits all of them alike; it reports per
// model the median and p90 over all its timed runs, and the runs themselves (times_ms, in order).
// The `probe` form runs one batch and writes each named output (a diagnostic model's intermediate
// tensors) to out_dir/<index>.f32, reporting their shapes.
// QBENCH_ORT_OPT_LEVEL (disabled|basic|extended|all, default all) is for diagnosis only.
// Errors: a message on stderr and exit code 1.
'use strict';
const fs = require('fs');
const ort = require('onnxruntime-node');

function readF32(path, count) {
  const buf = fs.readFileSync(path);
  if (buf.length !== count * 4)
    throw new Error(`${path}: ${buf.length} bytes, expected ${count * 4} (${count} float32)`);
  return new Float32Array(buf.buffer, buf.byteOffset, count);
}

function quantile(sorted, q) {
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i];
}

// spin: whether the session's idle threads spin-wait for the next run (ORT's default). Timing
// several sessions interleaved turns it off: the idle session's spinning threads would take the
// cores from the one being timed (measured: ResNet-20 int8 at batch 32, 2 threads, 5.9-8.0 ms
// spinning against 2.7 ms without).
function sessionOptions(req, spin = true) {
  return {
    intraOpNumThreads: req.threads || 1,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: process.env.QBENCH_ORT_OPT_LEVEL || 'all',
    logSeverityLevel: 3,
    extra: {session: {intra_op: {allow_spinning: spin ? '1' : '0'}}},
  };
}

function elapsedMs(t0) {
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

// The `time` form: several models timed interleaved in one process.
async function timeModels(req) {
  const tr = req.time;
  const shape = tr.shape;
  const x = new ort.Tensor('float32', readF32(tr.input, shape.reduce((a, b) => a * b, 1)), shape);
  const runs = [];
  for (const model of tr.models) {
    const session = await ort.InferenceSession.create(model, sessionOptions(req, tr.models.length < 2));
    runs.push({model, run: () => session.run({[session.inputNames[0]]: x}), times: []});
  }
  for (const r of runs)
    for (let i = 0; i < tr.warmup; ++i) await r.run();
  for (let round = 0; round < tr.rounds; ++round)
    for (const r of runs)
      for (let i = 0; i < tr.reps; ++i) {
        const t0 = process.hrtime.bigint();
        await r.run();
        r.times.push(elapsedMs(t0));
      }
  const models = runs.map((r) => {
    const sorted = [...r.times].sort((a, b) => a - b);
    return {model: r.model, p50_ms: quantile(sorted, 0.5), p90_ms: quantile(sorted, 0.9), times_ms: r.times};
  });
  return {ort_version: require('onnxruntime-node/package.json').version, batch: shape[0], models};
}

async function main() {
  const req = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
  if (req.time) {
    process.stdout.write(JSON.stringify(await timeModels(req)) + '\n');
    return;
  }
  const opts = sessionOptions(req);
  if (req.optimized_model) opts.optimizedModelFilePath = req.optimized_model;
  const session = await ort.InferenceSession.create(req.model, opts);
  const inName = session.inputNames[0], outName = session.outputNames[0];
  const result = {ort_version: require('onnxruntime-node/package.json').version, input: inName, output: outName};

  if (req.eval) {
    const [n, ...sample] = req.eval.shape;
    const per = sample.reduce((a, b) => a * b, 1);
    // Read batch by batch: a test split need not fit in memory twice.
    const size = fs.statSync(req.eval.input).size;
    if (size !== n * per * 4) throw new Error(`${req.eval.input}: ${size} bytes, expected ${n * per * 4}`);
    const inFd = fs.openSync(req.eval.input, 'r');
    const fd = fs.openSync(req.eval.logits_out, 'w');
    const t0 = process.hrtime.bigint();
    let outShape = null;
    for (let i = 0; i < n; i += req.eval.batch) {
      const b = Math.min(req.eval.batch, n - i);
      const buf = Buffer.alloc(b * per * 4);
      fs.readSync(inFd, buf, 0, buf.length, i * per * 4);
      const x = new Float32Array(buf.buffer, buf.byteOffset, b * per);
      const t = new ort.Tensor('float32', x, [b, ...sample]);
      const y = (await session.run({[inName]: t}))[outName];
      if (y.type !== 'float32') throw new Error(`output ${outName} is ${y.type}, not float32`);
      outShape = y.dims;
      fs.writeSync(fd, Buffer.from(y.data.buffer, y.data.byteOffset, y.data.byteLength));
    }
    fs.closeSync(fd);
    fs.closeSync(inFd);
    result.eval = {images: n, seconds: Number(process.hrtime.bigint() - t0) / 1e9, output_shape: outShape};
  }

  if (req.latency) {
    const shape = req.latency.shape;
    const count = shape.reduce((a, b) => a * b, 1);
    const t = new ort.Tensor('float32', readF32(req.latency.input, count), shape);
    for (let i = 0; i < req.latency.warmup; ++i) await session.run({[inName]: t});
    const times = [];
    for (let i = 0; i < req.latency.repeats; ++i) {
      const t0 = process.hrtime.bigint();
      await session.run({[inName]: t});
      times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    times.sort((a, b) => a - b);
    result.latency = {batch: shape[0], p50_ms: quantile(times, 0.5), p90_ms: quantile(times, 0.9), repeats: times.length};
  }
  if (req.probe) {
    const shape = req.probe.shape;
    const count = shape.reduce((a, b) => a * b, 1);
    const t = new ort.Tensor('float32', readF32(req.probe.input, count), shape);
    const outs = await session.run({[inName]: t}, req.probe.outputs);
    result.probe = req.probe.outputs.map((name, i) => {
      const y = outs[name];
      if (!y) throw new Error(`the model has no output ${name}`);
      if (y.type !== 'float32') throw new Error(`output ${name} is ${y.type}, not float32`);
      fs.writeFileSync(`${req.probe.out_dir}/${i}.f32`, Buffer.from(y.data.buffer, y.data.byteOffset, y.data.byteLength));
      return {name, shape: y.dims};
    });
  }
  process.stdout.write(JSON.stringify(result) + '\n');
}

main().catch((e) => {
  process.stderr.write(`qbench_ort: ${e && e.message ? e.message : e}\n`);
  process.exit(1);
});
