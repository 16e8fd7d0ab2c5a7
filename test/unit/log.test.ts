import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { isoTimestamp } from '../../core/log.js';

describe('log: ISO timestamps', () => {
  it('writes what pino.stdTimeFunctions.isoTime writes', () => {
    for (let i = 0; i < 200; i++) {
      const before = Date.now();
      const ours = isoTimestamp();
      const theirs = pino.stdTimeFunctions.isoTime();
      const after = Date.now();
      const m = /^,"time":"(.+)"$/.exec(ours);
      assert.ok(m, ours);
      const t = Date.parse(m[1] as string);
      assert.ok(t >= before && t <= after, `${ours} within [${before}, ${after}]`);
      if (before === after) assert.equal(ours, theirs);
    }
  });

  it('gives each log line a time that moves with the clock', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _enc, cb) {
        lines.push(String(chunk));
        cb();
      },
    });
    const log = pino({ timestamp: isoTimestamp }, sink);
    log.info('one');
    await new Promise((r) => setTimeout(r, 5));
    log.info('two');
    await new Promise((r) => setImmediate(r));
    const times = lines.map((l) => Date.parse((JSON.parse(l) as { time: string }).time));
    assert.equal(times.length, 2);
    assert.ok((times[1] as number) - (times[0] as number) >= 4, `${times}`);
  });
});
