// The official Earth Engine JavaScript client (npm @google/earthengine), initialised offline.
//
// No server is contacted: the algorithm signatures come from the algorithms.json that ships
// with the Python client (ee/tests/algorithms.json), converted as the Python client's
// _cloud_api_utils.convert_algorithms converts them.
//
// Usage (from the repository root):
//   node tests/js/ee_offline.js api ALGORITHMS_JSON
//       prints the JavaScript client's method table (gee_mining/data/js_api.json)
//   node tests/js/ee_offline.js serve ALGORITHMS_JSON
//       reads one request a line, {"source": "...", "outputs": ["name", ...]}, runs the script with the
//       Code Editor's print/Map/Export stubbed, and answers one line: the Cloud API graph of each named
//       output (ee.Serializer.encodeCloudApi) and the calls made to print/Map/Export, or {"error": ...}.
'use strict';

const fs = require('fs');

function convertAlgorithms(algorithms) {
  const out = {};
  for (const alg of algorithms.algorithms) {
    const sig = {
      description: alg.description || '',
      returns: alg.returnType || '',
      args: (alg.arguments || []).map((a) => {
        const arg = {name: a.argumentName, type: a.type || '', description: a.description || ''};
        if (a.optional) arg.optional = true;
        if ('defaultValue' in a) arg['default'] = a.defaultValue;
        return arg;
      }),
    };
    if (alg.hidden) sig.hidden = true;
    if (alg.preview) sig.preview = true;
    if (alg.deprecated) sig.deprecated = alg.deprecationReason || '';
    out[alg.name.slice('algorithms/'.length)] = sig;
  }
  return out;
}

// Offline for certain: any attempt to reach the network fails loudly instead of going out.
function refuseNetwork() {
  const refuse = () => {
    throw new Error('network access refused: the Earth Engine client runs offline here');
  };
  for (const name of ['http', 'https']) {
    const mod = require(name);
    mod.request = refuse;
    mod.get = refuse;
  }
  const net = require('net');
  net.connect = refuse;
  net.createConnection = refuse;
  globalThis.fetch = refuse;
}

function loadEE(algorithmsPath) {
  refuseNetwork();
  const ee = require('@google/earthengine');
  const signatures = convertAlgorithms(JSON.parse(fs.readFileSync(algorithmsPath, 'utf8')));
  // A fresh copy per call: ApiFunction.initialize edits the signatures it is given.
  ee.data.getAlgorithms = function(callback) {
    const copy = JSON.parse(JSON.stringify(signatures));
    if (callback) {
      callback(copy);
      return undefined;
    }
    return copy;
  };
  ee.ApiFunction.initialize();
  ee.initialize(null, null, null, null, null, 'gee-mining-offline');
  return ee;
}

module.exports = {loadEE, convertAlgorithms};

if (require.main === module) {
  const [mode, algorithmsPath] = process.argv.slice(2);
  const ee = loadEE(algorithmsPath);
  if (mode === 'api') {
    process.stdout.write(JSON.stringify(require('./js_api').methodTable(ee), null, 1) + '\n');
  } else if (mode === 'serve') {
    const {runScript} = require('./js_api');
    const lines = require('readline').createInterface({input: process.stdin});
    lines.on('line', (line) => {
      let answer;
      try {
        const request = JSON.parse(line);
        answer = runScript(ee, request.source, request.outputs);
      } catch (e) {
        answer = {error: String(e && e.stack || e)};
      }
      process.stdout.write(JSON.stringify(answer) + '\n');
    });
  } else {
    throw new Error('usage: node ee_offline.js api|serve ALGORITHMS_JSON');
  }
}
