// Helpers for ee_offline.js: the JavaScript client's method table, and running Code Editor scripts.
'use strict';

const vm = require('vm');

// How the JavaScript client exposes each Earth Engine algorithm.
//   classes[C].instance[m] = "Family.name": ee.C.prototype.m calls that algorithm (bound from its signature);
//   classes[C].instance[m] = null: ee.C.prototype.m is written by hand in the client (not an algorithm binding);
//   classes[C].static[m]: the same for ee.C.m; algorithms[path] = "Family.name" for ee.Algorithms.path.
function methodTable(ee) {
  const classes = {};
  for (const name of Object.keys(ee).sort()) {
    const ctor = ee[name];
    if (typeof ctor !== 'function' || !ctor.prototype) continue;
    if (!(ctor === ee.ComputedObject || ctor.prototype instanceof ee.ComputedObject)) continue;
    const instance = {};
    for (let proto = ctor.prototype; proto && proto !== Object.prototype; proto = Object.getPrototypeOf(proto)) {
      for (const m of Object.getOwnPropertyNames(proto)) {
        if (m in instance || m === 'constructor') continue;
        const f = Object.getOwnPropertyDescriptor(proto, m).value;
        if (typeof f !== 'function') continue;
        instance[m] = f.signature ? f.signature.name : null;
      }
    }
    const statics = {};
    for (const m of Object.getOwnPropertyNames(ctor)) {
      const d = Object.getOwnPropertyDescriptor(ctor, m);
      if (!d || typeof d.value !== 'function' || ['length', 'name', 'prototype'].includes(m)) continue;
      statics[m] = d.value.signature ? d.value.signature.name : null;
    }
    classes[name] = {instance: sortKeys(instance), static: sortKeys(statics)};
  }
  const algorithms = {};
  (function walk(obj, path) {
    for (const k of Object.keys(obj).sort()) {
      const v = obj[k];
      if (k === 'signature' || v === null || v === undefined) continue;
      if (typeof v === 'function' && v.signature && v.signature.name) algorithms[path.concat(k).join('.')] = v.signature.name;
      else if (typeof v === 'object') walk(v, path.concat(k));
    }
  })(ee.Algorithms, []);
  return {classes: classes, algorithms: algorithms, casts: pureCasts(ee, Object.keys(classes))};
}

// Classes whose constructor, called as ee.C(x) on a computed value (a function's argument, or the
// result of an algorithm returning Object), re-types it without adding a node to the graph.
function pureCasts(ee, names) {
  const variable = new ee.ComputedObject(null, null, 'x');
  const computed = ee.ApiFunction._call('Dictionary.get', ee.Dictionary({a: 1}), 'a');
  const same = (a, b) => JSON.stringify(ee.Serializer.encodeCloudApi(a)) === JSON.stringify(ee.Serializer.encodeCloudApi(b));
  return names.filter((name) => {
    if (name === 'ComputedObject') return false;
    try {
      return [variable, computed].every((v) => {
        const cast = ee[name](v);
        return cast instanceof ee[name] && same(cast, v);
      });
    } catch (e) {
      return false;
    }
  });
}

function sortKeys(obj) {
  const out = {};
  for (const k of Object.keys(obj).sort()) out[k] = obj[k];
  return out;
}

// JSON for graphs that keeps what JSON.stringify would lose: NaN, Infinity, -Infinity and -0.
function tagFloats(key, value) {
  if (typeof value === 'number') {
    if (Number.isNaN(value)) return {$float: 'NaN'};
    if (value === Infinity) return {$float: 'Infinity'};
    if (value === -Infinity) return {$float: '-Infinity'};
    if (Object.is(value, -0)) return {$float: '-0'};
  }
  return value;
}

function encode(ee, obj) {
  return JSON.parse(JSON.stringify(ee.Serializer.encodeCloudApi(obj), tagFloats));
}

// Runs one Code Editor script: `print`, `Map` and `Export` record their calls.
function runScript(ee, source, outputs) {
  const calls = [];
  const record = (what) => (...args) => {
    calls.push({call: what, args: args});
  };
  const Map = {};
  for (const m of ['addLayer', 'centerObject', 'setCenter', 'setOptions']) Map[m] = record('Map.' + m);
  const Export = {image: {}, table: {}};
  for (const m of ['toCloudStorage', 'toDrive', 'toAsset']) {
    Export.image[m] = record('Export.image.' + m);
    Export.table[m] = record('Export.table.' + m);
  }
  const context = vm.createContext({ee: ee, print: record('print'), Map: Map, Export: Export});
  try {
    vm.runInContext(source, context, {filename: 'script.js'});
  } catch (e) {
    return {error: String(e && e.stack || e)};
  }
  const graphs = {};
  try {
    for (const name of outputs) graphs[name] = encode(ee, context[name]);
    return {graphs: graphs, calls: calls.map((c) => encodeCall(ee, c))};
  } catch (e) {
    return {error: String(e && e.stack || e)};
  }
}

// A recorded call, with ee objects among its arguments replaced by their graphs.
function encodeCall(ee, c) {
  const conv = (v) => {
    if (v instanceof ee.ComputedObject) return {$graph: encode(ee, v)};
    if (Array.isArray(v)) return v.map(conv);
    if (v && typeof v === 'object') {
      const o = {};
      for (const k of Object.keys(v)) o[k] = conv(v[k]);
      return o;
    }
    return JSON.parse(JSON.stringify(v === undefined ? null : v, tagFloats));
  };
  return {call: c.call, args: c.args.map(conv)};
}

module.exports = {methodTable, runScript};
