import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { README, withConfigTable } from './config-table.js';

test("the README's configuration table is the one the option rows give (npm run docs:config)", () => {
  const readme = readFileSync(README, 'utf8');
  assert.equal(readme, withConfigTable(readme), 'README.md is stale: run npm run docs:config');
});
