// Promotion windows and change freezes: which minutes are open, when the
// next window opens (across daylight-saving changes), and what a hold does to
// a run in the state machine.

import assert from 'node:assert/strict';
import type { Canary, PromotionWindow } from '../../core/api/types.js';
import { holdOf } from '../../reconciler/observe/context.js';
import { openAt, scanForOpening, windowError, windowState } from '../../reconciler/decide/windows.js';

const at = (iso: string) => Date.parse(iso);

describe('promotion windows', () => {
  const office: PromotionWindow[] = [{ schedule: '* 9-16 * * 1-5', timeZone: 'Europe/Berlin' }];

  it('"* 9-16 * * 1-5" in Berlin: open Monday to Friday 09:00-16:59 local time, seconds ignored', () => {
    assert.equal(windowState(office, at('2026-12-02T08:00:00Z')).open, true, 'Wednesday 09:00 CET');
    assert.equal(windowState(office, at('2026-12-02T10:30:27Z')).open, true, 'inside a minute, not only at :00');
    assert.equal(windowState(office, at('2026-12-02T15:59:59Z')).open, true, '16:59:59 CET');
    assert.equal(windowState(office, at('2026-12-02T16:00:00Z')).open, false, '17:00 CET');
    assert.equal(windowState(office, at('2026-12-02T07:59:00Z')).open, false, '08:59 CET');
    assert.equal(windowState(office, at('2026-12-05T10:00:00Z')).open, false, 'Saturday');
  });

  it('outside, tells when the next window opens: Friday evening -> Monday 09:00', () => {
    const s = windowState(office, at('2026-12-04T17:30:00Z'));
    assert.equal(s.open, false);
    assert.equal(s.nextOpenMs, at('2026-12-07T08:00:00Z'));
  });

  it('the next opening is right across the spring-forward change (Berlin, 29 March 2026: 02:00 -> 03:00)', () => {
    const early: PromotionWindow[] = [{ schedule: '30 3 * * *', timeZone: 'Europe/Berlin' }];
    // Saturday 28 March 03:30 CET is 02:30Z; Sunday 29 March 03:30 CEST is 01:30Z.
    const s = windowState(early, at('2026-03-28T03:00:00Z'));
    assert.equal(s.nextOpenMs, at('2026-03-29T01:30:00Z'));
  });

  it('and across the fall-back change (Berlin, 25 October 2026: 03:00 -> 02:00)', () => {
    const nine: PromotionWindow[] = [{ schedule: '0 9 * * *', timeZone: 'Europe/Berlin' }];
    // Saturday 24 October 09:00 CEST is 07:00Z; Sunday 25 October 09:00 CET is 08:00Z.
    assert.equal(windowState(nine, at('2026-10-24T07:00:00Z')).open, true);
    assert.equal(windowState(nine, at('2026-10-24T08:00:00Z')).nextOpenMs, at('2026-10-25T08:00:00Z'));
    assert.equal(windowState(nine, at('2026-10-25T07:00:00Z')).open, false, '08:00 CET on the Sunday');
  });

  it('several windows: open when any is; UTC when no time zone is given', () => {
    const two: PromotionWindow[] = [{ schedule: '* 1 * * *' }, { schedule: '* 13 * * *', timeZone: 'America/New_York' }];
    assert.equal(windowState(two, at('2026-12-02T01:15:00Z')).open, true);
    assert.equal(windowState(two, at('2026-12-02T18:15:00Z')).open, true, '13:15 in New York (EST)');
    assert.equal(windowState(two, at('2026-12-02T05:00:00Z')).nextOpenMs, at('2026-12-02T18:00:00Z'));
  });

  it('the block scan finds the same next opening as asking node-cron about every minute', () => {
    const cases: PromotionWindow[][] = [
      [{ schedule: '*/20 9-10 * * 1-5', timeZone: 'Asia/Kolkata' }],
      [{ schedule: '45 23 * * *', timeZone: 'Australia/Eucla' }],
      [{ schedule: '0 2 * * 0', timeZone: 'Europe/Berlin' }],
      [{ schedule: '7,37 */6 2 * *' }, { schedule: '0 0 * * 3', timeZone: 'America/St_Johns' }],
    ];
    for (const windows of cases) {
      for (const from of [at('2026-03-28T22:13:00Z'), at('2026-12-01T00:00:00Z'), at('2026-10-24T23:59:00Z')]) {
        const to = from + 3 * 24 * 60 * 60_000;
        let brute: number | undefined;
        for (let t = from; t <= to; t += 60_000) if (openAt(windows, t)) { brute = t; break; }
        assert.equal(scanForOpening(windows, from, to), brute, `${JSON.stringify(windows)} from ${new Date(from).toISOString()}`);
      }
    }
  });

  it('no windows: always open', () => {
    assert.deepEqual(windowState(undefined, 0), { open: true });
    assert.deepEqual(windowState([], 0), { open: true });
  });

  it('refuses a bad expression or time zone with a message, and never counts it as open', () => {
    assert.match(windowError({ schedule: '* 25 * * *' }) ?? '', /25 is a invalid expression for hour/);
    assert.match(windowError({ schedule: '0 * * * * *' }) ?? '', /five fields/);
    assert.match(windowError({ schedule: '* * *' }) ?? '', /five fields/);
    assert.match(windowError({ schedule: '* * * * *', timeZone: 'Mars/Olympus' }) ?? '', /not an IANA time zone/);
    assert.equal(windowError({ schedule: '*/15 9-17 * * MON-FRI', timeZone: 'Asia/Tokyo' }), undefined);
    const s = windowState([{ schedule: '* 25 * * *' }], 0);
    assert.equal(s.open, false);
    assert.match(s.error ?? '', /hour/);
  });

  it('a week of closed minutes is answered from the memo, not scanned again every sync', () => {
    const rare: PromotionWindow[] = [{ schedule: '0 12 1 1 *' }];
    const first = Date.now();
    const a = windowState(rare, at('2026-12-02T00:00:00Z'));
    const scanned = Date.now() - first;
    const t0 = Date.now();
    for (let i = 1; i <= 200; i++) windowState(rare, at('2026-12-02T00:00:00Z') + i * 60_000);
    const memoised = (Date.now() - t0) / 200;
    assert.equal(a.open, false);
    assert.equal(a.nextOpenMs, undefined, 'nothing opens within 8 days');
    assert.ok(memoised < Math.max(1, scanned / 5), `a memoised answer (${memoised.toFixed(2)} ms) is much cheaper than the scan (${scanned} ms)`);
  });
});

describe('what holds a Canary', () => {
  const canary = (ns = 'shop', windows?: PromotionWindow[]): Canary => ({
    apiVersion: 'canarygate.dev/v1alpha1',
    kind: 'Canary',
    metadata: { name: 'web', namespace: ns },
    spec: { targetRef: { kind: 'Deployment', name: 'web' }, service: { port: 80 }, ...(windows ? { promotion: { windows } } : {}) },
  });
  const namespaces = (labels: Record<string, Record<string, string>>) => ({
    namespaces: { get: (_: string, name: string) => (labels[name] ? { metadata: { name, labels: labels[name] } } : undefined), list: () => [] },
  });

  it('a namespace labelled canarygate.dev/freeze=true freezes its Canaries only', () => {
    const caches = namespaces({ shop: { 'canarygate.dev/freeze': 'true' } });
    assert.equal(holdOf(canary('shop'), caches, 0)?.reason, 'Frozen');
    assert.equal(holdOf(canary('blog'), caches, 0), undefined);
  });

  it("canarygate.dev/freeze=all on the reconciler's namespace freezes every Canary; elsewhere it means nothing", () => {
    const caches = namespaces({ 'canary-gate-system': { 'canarygate.dev/freeze': 'all' }, blog: { 'canarygate.dev/freeze': 'all' } });
    const h = holdOf(canary('shop'), caches, 0, { clusterFreezeNamespace: 'canary-gate-system' });
    assert.equal(h?.reason, 'Frozen');
    assert.match(h?.message ?? '', /every run is frozen/);
    assert.equal(holdOf(canary('blog'), namespaces({ blog: { 'canarygate.dev/freeze': 'all' } }), 0, { clusterFreezeNamespace: 'canary-gate-system' }), undefined);
  });

  it('outside its windows, with the next opening in the message and as the hold end', () => {
    const h = holdOf(canary('shop', [{ schedule: '* 9-16 * * 1-5', timeZone: 'Europe/Berlin' }]), namespaces({}), at('2026-12-04T17:30:00Z'));
    assert.equal(h?.reason, 'OutsideWindow');
    assert.equal(h?.untilMs, at('2026-12-07T08:00:00Z'));
    assert.match(h?.message ?? '', /next opens at 2026-12-07T08:00:00.000Z/);
    assert.equal(holdOf(canary('shop', [{ schedule: '* 9-16 * * 1-5', timeZone: 'Europe/Berlin' }]), namespaces({}), at('2026-12-07T08:01:00Z')), undefined);
  });

  it('an unreadable window holds, saying what is wrong', () => {
    const h = holdOf(canary('shop', [{ schedule: '* * * * *', timeZone: 'Nowhere/Land' }]), namespaces({}), 0);
    assert.equal(h?.reason, 'InvalidWindow');
    assert.match(h?.message ?? '', /spec\.promotion\.windows: timeZone "Nowhere\/Land"/);
  });
});
