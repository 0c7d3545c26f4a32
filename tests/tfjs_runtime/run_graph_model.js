// Runs a TF.js graph model in the real TF.js runtime (tfjs-core + tfjs-converter
// with the pure-JS CPU backend) and writes what it computed as JSON.
//
//   node run_graph_model.js SPEC.json OUT.json
//
// SPEC: {"model_url": URL, "from_tfhub": bool,       load from a server, or
//        "model_dir": DIR,                             serve DIR on 127.0.0.1 here,
//        "inputs": {"path": F, "shape": [...]},        raw little-endian float32
//        "batch": N}                                   images per execution (default: all)
// With model_dir the directory is served over HTTP on 127.0.0.1 (Node has no
// file loader without tfjs-node) and loaded as a TF Hub handle, so the report
// also lists the request paths the runtime made.
'use strict';

const fs = require('fs');
const http = require('http');
const path = require('path');
const tf = require('@tensorflow/tfjs-core');
require('@tensorflow/tfjs-backend-cpu');
const converter = require('@tensorflow/tfjs-converter');

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

async function main() {
  const [specPath, outPath] = process.argv.slice(2);
  if (!specPath || !outPath) {
    process.stderr.write('usage: node run_graph_model.js SPEC.json OUT.json\n');
    process.exit(2);
  }
  const spec = JSON.parse(fs.readFileSync(specPath, 'utf8'));
  await tf.setBackend('cpu');
  await tf.ready();

  const requests = [];
  let server = null;
  let modelUrl = spec.model_url;
  let fromTFHub = Boolean(spec.from_tfhub);
  if (spec.model_dir) {
    server = await serveDirectory(path.resolve(spec.model_dir), requests);
    modelUrl = `http://127.0.0.1:${server.address().port}/model`;
    fromTFHub = true;
  }
  try {
    const model = await converter.loadGraphModel(modelUrl, {fromTFHub});
    const buffer = fs.readFileSync(spec.inputs.path);
    const data = new Float32Array(
        buffer.buffer, buffer.byteOffset, buffer.byteLength / 4);
    const shape = spec.inputs.shape;
    const total = shape[0];
    const batch = spec.batch || total;
    const perImage = data.length / total;
    const outputs = {};
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
        const entry = outputs[name] || (outputs[name] = {shape: null, data: []});
        entry.shape = [start + count, ...tensor.shape.slice(1)];
        for (const value of tensor.dataSync()) entry.data.push(value);
        tensor.dispose();
      });
    }
    const report = {
      tfjs_core: tf.version_core,
      tfjs_converter: converter.version_converter,
      backend: tf.getBackend(),
      model_url: modelUrl,
      input_nodes: model.inputNodes,
      output_nodes: model.outputNodes,
      outputs,
      requests,
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
