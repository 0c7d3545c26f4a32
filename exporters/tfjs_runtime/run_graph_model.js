// Runs a TF.js graph model in the real TF.js runtime (tfjs-core + tfjs-converter
// with the WebAssembly or the pure-JS CPU backend) and writes what it computed as JSON.
//
//   node run_graph_model.js SPEC.json OUT.json
//
// SPEC: {"model_url": URL, "from_tfhub": bool,   load from a server (a TF Hub handle), or
//        "model_dir": DIR, "serve": bool,          load DIR from disk (serve: over HTTP),
//        "backend": "wasm" | "cpu",                default "wasm"
//        "inputs": {"path": F, "shape": [...]},    raw little-endian float32
//        "batch": N}                               images per execution (default: all)
// OUT: {"backend", "tfjs_core", "tfjs_converter", "input_nodes", "output_nodes",
//       "outputs": {NODE: {"shape", "dtype", "base64"}},  the values' little-endian bytes
//       "requests", "load_seconds", "run_seconds"}
//
// model_dir is read with fs by an IOHandler of this file (Node has no file
// loader without tfjs-node); with "serve": true it is served over HTTP on
// 127.0.0.1 instead and loaded as a TF Hub handle. The report lists the
// request paths the runtime made to a server of this file.
//
// The wasm backend's binaries come with @tensorflow/tfjs-backend-wasm (its
// dist/ folder, which its Node build loads from); nothing is downloaded. In
// Node its multithreaded build is not used (the backend finds no
// multithread support), so it runs the single-threaded SIMD binary.
'use strict';

const fs = require('fs');
const http = require('http');
const path = require('path');
const tf = require('@tensorflow/tfjs-core');
require('@tensorflow/tfjs-backend-cpu');
require('@tensorflow/tfjs-backend-wasm');
const converter = require('@tensorflow/tfjs-converter');

const BACKENDS = ['wasm', 'cpu'];

function serveDirectory(dir, requests) {
  const server = http.createServer((req, res) => {
    requests.push(req.url);
    const url = new URL(req.url, 'http://127.0.0.1');
    // The model stands for a hub handle at /model: /model/<file> is <dir>/<file>.
    const prefix = '/model/';
    const file = url.pathname.startsWith(prefix) ?
        path.join(dir, decodeURIComponent(url.pathname.slice(prefix.length))) : '';
    if (!file.startsWith(path.resolve(dir) + path.sep) || !fs.existsSync(file) ||
        !fs.statSync(file).isFile()) {
      res.writeHead(404);
      res.end();
      return;
    }
    res.writeHead(200, {'Content-Type': file.endsWith('.json') ?
                            'application/json' : 'application/octet-stream'});
    res.end(fs.readFileSync(file));
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

// An IOHandler reading <dir>/model.json and the weight files its manifest names.
function fileHandler(dir) {
  return {
    async load() {
      const modelJson = JSON.parse(fs.readFileSync(path.join(dir, 'model.json'), 'utf8'));
      return tf.io.getModelArtifactsForJSON(modelJson, async (manifest) => {
        const specs = [];
        const buffers = [];
        for (const group of manifest) {
          specs.push(...group.weights);
          for (const relative of group.paths) {
            const file = path.resolve(dir, relative);
            if (path.dirname(file) !== path.resolve(dir)) {
              throw new Error(`weight file ${relative} is outside ${dir}`);
            }
            const data = fs.readFileSync(file);
            buffers.push(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
          }
        }
        return [specs, tf.io.concatenateArrayBuffers(buffers)];
      });
    },
  };
}

async function main() {
  const [specPath, outPath] = process.argv.slice(2);
  if (!specPath || !outPath) {
    process.stderr.write('usage: node run_graph_model.js SPEC.json OUT.json\n');
    process.exit(2);
  }
  const spec = JSON.parse(fs.readFileSync(specPath, 'utf8'));
  const backend = spec.backend || 'wasm';
  if (!BACKENDS.includes(backend)) {
    throw new Error(`unknown backend ${JSON.stringify(backend)}; one of ${BACKENDS.join(', ')}`);
  }
  // setBackend resolves to false (and warns) when the backend cannot start: never fall back.
  if (!(await tf.setBackend(backend)) || tf.getBackend() !== backend) {
    throw new Error(`the ${backend} backend did not start`);
  }
  await tf.ready();

  const requests = [];
  let server = null;
  let source = spec.model_url;
  let fromTFHub = Boolean(spec.from_tfhub);
  if (spec.model_dir && spec.serve) {
    server = await serveDirectory(path.resolve(spec.model_dir), requests);
    source = `http://127.0.0.1:${server.address().port}/model`;
    fromTFHub = true;
  } else if (spec.model_dir) {
    source = fileHandler(path.resolve(spec.model_dir));
  }
  try {
    const loadStart = Date.now();
    const model = await converter.loadGraphModel(source, {fromTFHub});
    const loadSeconds = (Date.now() - loadStart) / 1000;
    const buffer = fs.readFileSync(spec.inputs.path);
    const data = new Float32Array(
        buffer.buffer, buffer.byteOffset, buffer.byteLength / 4);
    const shape = spec.inputs.shape;
    const total = shape[0];
    const batch = spec.batch || total;
    const perImage = data.length / total;
    const outputs = {};
    const runStart = Date.now();
    for (let start = 0; start < total; start += batch) {
      const count = Math.min(batch, total - start);
      const images = tf.tensor(
          data.subarray(start * perImage, (start + count) * perImage),
          [count, ...shape.slice(1)], 'float32');
      let result = model.execute(images);  // A converted TF1 module has no control flow.
      images.dispose();
      if (!Array.isArray(result)) result = [result];
      result.forEach((tensor, i) => {
        const name = model.outputNodes[i];
        const entry = outputs[name] || (outputs[name] = {shape: null, chunks: []});
        entry.shape = [start + count, ...tensor.shape.slice(1)];
        entry.dtype = tensor.dtype;
        const values = tensor.dataSync();
        entry.chunks.push(Buffer.from(values.buffer, values.byteOffset, values.byteLength));
        tensor.dispose();
      });
    }
    // Each output's values as their little-endian bytes (base64): exact, NaN and Inf included.
    for (const entry of Object.values(outputs)) {
      entry.base64 = Buffer.concat(entry.chunks).toString('base64');
      delete entry.chunks;
    }
    const report = {
      tfjs_core: tf.version_core,
      tfjs_converter: converter.version_converter,
      backend: tf.getBackend(),
      model_url: typeof source === 'string' ? source : null,
      input_nodes: model.inputNodes,
      output_nodes: model.outputNodes,
      outputs,
      requests,
      load_seconds: loadSeconds,
      run_seconds: (Date.now() - runStart) / 1000,
    };
    fs.writeFileSync(outPath, JSON.stringify(report));
  } finally {
    if (server) server.close();
  }
}

main().catch((error) => {
  process.stderr.write(`error: ${error.message}\n`);
  process.exit(1);
});
