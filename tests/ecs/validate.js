#!/usr/bin/env node
// Checks an Elasticsearch bulk file (action line, document line, ...) against the Elastic
// Common Schema, using Elastic's own field definitions: the `EcsFlat` table of the
// `@elastic/ecs` npm package (./scripts/test.sh fetches it; SIGNET_ECS_DIR points at the
// unpacked package).
//
// Every field of every document must be an ECS field of the right type (keyword, long, ip,
// date, ...), hold only the values ECS allows (event.kind, event.category, event.outcome,
// event.type, with each type expected by one of the document's categories), be an array
// where ECS normalizes it to one, and the fields ECS requires must be there. The one
// exception is the custom namespace `signet.*` (ECS's advice for fields it does not define),
// which must not clash with any ECS field. Action lines must be `create` or `index` with an
// `_index` and an `_id`.
//
// Prints one line per problem and exits 1, or prints `ok: N documents` and exits 0.
'use strict';

const fs = require('fs');
const net = require('net');
const path = require('path');

const CUSTOM = 'signet';

function load() {
  const dir = process.env.SIGNET_ECS_DIR;
  if (!dir) {
    throw new Error('SIGNET_ECS_DIR is not set (./scripts/test.sh fetches @elastic/ecs)');
  }
  const flat = require(path.join(dir, 'build', 'commonjs', 'ecs_flat.js')).EcsFlat;
  const version = require(path.join(dir, 'package.json')).version;
  return { flat, version };
}

// Leaf fields of a document as dotted names. Arrays are leaves (ECS arrays hold values).
function flatten(value, prefix, out) {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) {
      flatten(v, prefix ? `${prefix}.${k}` : k, out);
    }
  } else {
    out.push([prefix, value]);
  }
  return out;
}

const ISO_DATE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

// Why `value` does not fit the ECS type `type`, or null.
function typeProblem(type, value) {
  switch (type) {
    case 'keyword':
    case 'constant_keyword':
    case 'wildcard':
    case 'match_only_text':
    case 'text':
      return typeof value === 'string' ? null : 'is not a string';
    case 'long':
    case 'integer':
    case 'short':
    case 'byte':
    case 'unsigned_long':
      return Number.isInteger(value) ? null : 'is not an integer';
    case 'float':
    case 'half_float':
    case 'scaled_float':
    case 'double':
      return typeof value === 'number' ? null : 'is not a number';
    case 'boolean':
      return typeof value === 'boolean' ? null : 'is not a boolean';
    case 'ip':
      return typeof value === 'string' && net.isIP(value) !== 0 ? null : 'is not an IP address';
    case 'date':
      return typeof value === 'string' && ISO_DATE.test(value) && !isNaN(Date.parse(value))
        ? null
        : 'is not an ISO 8601 date';
    case 'object':
    case 'flattened':
    case 'nested':
      return null;
    default:
      return `has a type this validator does not know (${type})`;
  }
}

function checkDocument(doc, flat, say) {
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    say('the document is not a JSON object');
    return;
  }
  const fields = flatten(doc, '', []);
  const present = new Set(fields.map(([name]) => name));
  for (const [name, value] of fields) {
    if (name === CUSTOM || name.startsWith(`${CUSTOM}.`)) {
      continue;
    }
    const def = flat[name];
    if (!def) {
      say(`${name}: not an ECS field`);
      continue;
    }
    const wantsArray = (def.normalize || []).includes('array');
    if (wantsArray && !Array.isArray(value)) {
      say(`${name}: ECS normalizes it to an array`);
    }
    for (const item of Array.isArray(value) ? value : [value]) {
      if (item === null) {
        continue;
      }
      const problem = typeProblem(def.type, item);
      if (problem) {
        say(`${name}: ${JSON.stringify(item)} ${problem} (ECS type ${def.type})`);
      }
      if (def.allowed_values && !def.allowed_values.some((a) => a.name === item)) {
        say(`${name}: ${JSON.stringify(item)} is not an allowed value`);
      }
    }
  }
  for (const [name, def] of Object.entries(flat)) {
    if (def.required && !present.has(name)) {
      say(`${name}: required by ECS, missing`);
    }
  }
  // Each event.type must be one that one of the document's categories expects.
  const categories = [].concat(doc.event && doc.event.category ? doc.event.category : []);
  const types = [].concat(doc.event && doc.event.type ? doc.event.type : []);
  const allowed = flat['event.category'].allowed_values;
  const expected = new Set();
  for (const c of categories) {
    const def = allowed.find((a) => a.name === c);
    for (const t of (def && def.expected_event_types) || []) {
      expected.add(t);
    }
  }
  for (const t of types) {
    if (categories.length > 0 && !expected.has(t)) {
      say(`event.type: "${t}" is not expected for event.category ${JSON.stringify(categories)}`);
    }
  }
}

function checkAction(action, say) {
  const kinds = action && typeof action === 'object' ? Object.keys(action) : [];
  if (kinds.length !== 1 || !['create', 'index'].includes(kinds[0])) {
    say('action line: expected exactly one of `create` or `index`');
    return;
  }
  const meta = action[kinds[0]];
  for (const key of ['_index', '_id']) {
    if (typeof meta[key] !== 'string' || meta[key] === '') {
      say(`action line: ${key} missing`);
    }
  }
}

function main() {
  const file = process.argv[2];
  if (!file) {
    console.error('usage: validate.js BULK.ndjson');
    process.exit(2);
  }
  const { flat, version } = load();
  for (const name of Object.keys(flat)) {
    if (name === CUSTOM || name.startsWith(`${CUSTOM}.`)) {
      console.error(`ECS ${version} defines ${name}: the custom namespace clashes`);
      process.exit(2);
    }
  }
  const lines = fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.trim() !== '');
  let problems = 0;
  let documents = 0;
  lines.forEach((line, i) => {
    const say = (what) => {
      problems += 1;
      console.log(`line ${i + 1}: ${what}`);
    };
    let value;
    try {
      value = JSON.parse(line);
    } catch (e) {
      say(`not JSON: ${e.message}`);
      return;
    }
    if (i % 2 === 0) {
      checkAction(value, say);
    } else {
      documents += 1;
      checkDocument(value, flat, say);
    }
  });
  if (lines.length % 2 !== 0) {
    problems += 1;
    console.log('the last action has no document');
  }
  if (problems > 0) {
    console.log(`${problems} problems in ${documents} documents (ECS ${version})`);
    process.exit(1);
  }
  console.log(`ok: ${documents} documents (ECS ${version})`);
}

main();
