// canonicalJson() and revisionOf(): the text stored as the pending spec and
// the id derived from it. The reconciler re-hashes the stored text, so both
// must be exactly what is written here, for any JSON value.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { canonicalJson, REVISION_LENGTH, revisionOf, revisionOfCanonical } from '../../core/revision.js';
import { shuffleKeys } from '../fixtures/objects.js';
import { Rng } from '../fixtures/rng.js';

/**
 * The reference definition, written plainly: keys sorted by code unit at
 * every level, everything else as JSON.stringify writes it. (A sorted copy
 * through JSON.stringify would not do: JavaScript objects put integer-like
 * keys such as "9" first whatever the insertion order.)
 */
function reference(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v) as string;
  if (Array.isArray(v)) return `[${v.map((x) => (x === undefined ? 'null' : reference(x))).join(',')}]`;
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o).filter((k) => o[k] !== undefined).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${reference(o[k])}`).join(',')}}`;
}

const STRINGS = ['', 'plain', 'say "hi"', 'back\\slash', 'tab\there', 'nl\n', '\u0000\u001f\u007f', 'é ü 漢字', '\u2028\u2029', '\ud83d\ude00', 'lone \ud800 high', 'lone \udfff low', '</script>'];
const NUMBERS = [0, -0, 1, -7, 0.1, 1e21, 1e-7, 123456789012345680000, Number.MAX_SAFE_INTEGER, 5e-324];

function randomValue(rng: Rng, depth: number): unknown {
  switch (rng.int(depth > 3 ? 5 : 7)) {
    case 0: return null;
    case 1: return rng.chance(0.5);
    case 2: return rng.pick(NUMBERS);
    case 3:
    case 4: return rng.pick(STRINGS);
    case 5: return Array.from({ length: rng.int(4) }, () => randomValue(rng, depth + 1));
    default: {
      const o: Record<string, unknown> = {};
      for (let i = rng.int(6); i > 0; i--) o[rng.pick([...STRINGS, 'a', 'B', 'b', '10', '9', 'constructor'])] = randomValue(rng, depth + 1);
      return o;
    }
  }
}

describe('canonicalJson()', () => {
  it('is JSON.stringify of the key-sorted value for random values with awkward strings and numbers (seeded)', () => {
    const seed = Number(process.env.CANONICAL_SEED ?? Date.now() % 100000);
    const rng = new Rng(seed);
    for (let i = 0; i < 3000; i++) {
      const v = randomValue(rng, 0);
      const expected = reference(v);
      assert.equal(canonicalJson(v), expected, `seed ${seed}, case ${i}`);
      assert.equal(canonicalJson(shuffleKeys(v)), expected, `seed ${seed}, case ${i} shuffled`);
      // It parses back to the same value.
      assert.deepEqual(JSON.parse(canonicalJson(v)), JSON.parse(JSON.stringify(v)));
    }
  });

  it('drops undefined and function members, writes null for them in arrays and honours toJSON, as JSON.stringify does', () => {
    const v = { b: undefined, a: [undefined, () => 1, NaN, Infinity], f: () => 1, d: new Date(0), n: -0 };
    assert.equal(canonicalJson(v), '{"a":[null,null,null,null],"d":"1970-01-01T00:00:00.000Z","n":0}');
    assert.equal(canonicalJson('x'), '"x"');
    assert.equal(canonicalJson(null), 'null');
  });
});

describe('revisionOf()', () => {
  it('is the first 12 hex digits of the SHA-256 of the canonical text', () => {
    const spec = { spec: { containers: [{ name: 'app', image: 'app:1' }] }, metadata: { labels: { b: '2', a: '1' } } };
    const text = '{"metadata":{"labels":{"a":"1","b":"2"}},"spec":{"containers":[{"image":"app:1","name":"app"}]}}';
    assert.equal(canonicalJson(spec), text);
    const expected = createHash('sha256').update(text).digest('hex').slice(0, 12);
    assert.equal(REVISION_LENGTH, 12);
    assert.equal(revisionOf(spec), expected);
    assert.equal(revisionOfCanonical(text), expected);
  });

  it('gives equal ids to equal specs in any key order and different ids to different specs', () => {
    const a = { x: 1, y: { p: 'q', r: ['s'] } };
    assert.equal(revisionOf(a), revisionOf({ y: { r: ['s'], p: 'q' }, x: 1 }));
    assert.notEqual(revisionOf(a), revisionOf({ x: 1, y: { p: 'q', r: ['t'] } }));
    assert.notEqual(revisionOf(a), revisionOf({ x: '1', y: { p: 'q', r: ['s'] } }));
  });

  it('hashes the UTF-8 bytes of non-ASCII text', () => {
    const text = '{"a":"漢字"}';
    assert.equal(revisionOfCanonical(text), createHash('sha256').update(Buffer.from(text, 'utf8')).digest('hex').slice(0, 12));
  });
});

describe('canonicalBytes()', () => {
  it('survives a value larger than the writer buffer and a toJSON that asks for canonical JSON itself', async () => {
    const { canonicalBytes } = await import('../../core/revision.js');
    const big = { items: Array.from({ length: 5000 }, (_, i) => ({ name: `item-${i}`, note: 'x"y\\z é' })) };
    assert.equal(canonicalBytes(big).toString('utf8'), reference(big));
    const nested = { b: { toJSON: () => canonicalJson({ z: 1, a: 2 }) }, a: 1 };
    assert.equal(canonicalJson(nested), '{"a":1,"b":"{\\"a\\":2,\\"z\\":1}"}');
    assert.equal(canonicalJson({ small: true }), '{"small":true}');
  });

  it('gives each caller bytes of its own', async () => {
    const { canonicalBytes } = await import('../../core/revision.js');
    const first = canonicalBytes({ a: 'first' });
    canonicalBytes({ a: 'second, longer' });
    assert.equal(first.toString('utf8'), '{"a":"first"}');
  });
});
