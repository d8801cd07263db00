import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { gatewayOptions } from '../gateway/config.js';
import { kvOptions } from '../kv/config.js';
import { registryOptions } from '../registry/config.js';
import { defaultText, defineOptions, formatDuration, opt, parseDuration, parseRaw } from './option-spec.js';

const sets = [registryOptions, kvOptions, gatewayOptions];

describe('option rows', () => {
  it("every component's defaults pass its own validation", () => {
    for (const set of sets) assert.doesNotThrow(() => set.validate(set.defaults as never), set.component);
  });

  it('every default, written as a user would, parses back to itself', () => {
    for (const set of sets) {
      for (const [field, row] of Object.entries(set.rows)) {
        const text = row.defaultText === undefined ? defaultText(row) : undefined;
        if (text === undefined || row.kind === 'boolean') continue;
        assert.deepEqual(parseRaw(row, text), { value: row.default }, `${set.component}.${field}`);
      }
    }
  });

  it('validation names the component and the first field refused', () => {
    const set = defineOptions('demo', {
      a: opt.int({ default: 1, doc: 'a' }),
      b: opt.duration({ default: 0, doc: 'b', check: (ms, c) => (ms > (c.a as number) ? 'must be at most a' : undefined) }),
      c: opt.enum(['x', 'y'] as const, { doc: 'c' }),
    });
    assert.throws(() => set.validate({ a: 0, b: 0 }), /^Error: invalid demo config: a must be an integer ≥ 1 \(got 0\)$/);
    assert.throws(() => set.validate({ a: 1, b: 5 }), /invalid demo config: b must be at most a/);
    assert.throws(() => set.validate({ a: 1, b: 0, c: 'z' as 'x' }), /c must be 'x' or 'y'/);
    assert.doesNotThrow(() => set.validate({ a: 1, b: 0 }), 'an optional field may be absent');
  });

  it('durations round-trip in the largest whole unit', () => {
    for (const [text, ms] of [['10d', 864_000_000], ['2h', 7_200_000], ['90s', 90_000], ['500ms', 500], ['0', 0]] as const) {
      assert.equal(parseDuration(text), ms);
      assert.equal(formatDuration(ms), text);
    }
    assert.equal(parseDuration('30'), 30_000, 'a bare number is seconds');
  });

  it('a minus sign is accepted only by rows that allow negative values', () => {
    const signed = opt.int({ default: 0, min: -100, doc: 'signed' });
    assert.deepEqual(parseRaw(signed, '-60'), { value: -60 });
    assert.deepEqual(parseRaw(signed, '60'), { value: 60 });
    assert.ok('expected' in parseRaw(signed, '-101'));
    assert.ok('expected' in parseRaw(signed, '--5'));
    assert.ok('expected' in parseRaw(opt.int({ default: 1, doc: 'plain' }), '-1'));
    assert.ok('expected' in parseRaw(opt.port({ default: 1, doc: 'port' }), '-1'));
  });
});
