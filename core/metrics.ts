// A small Prometheus registry: counters, gauges and fixed-bucket histograms
// with labels, rendered in the text exposition format 0.0.4.
//
// Hot paths should take a labelled child once (`counter.labels('x')`) and
// keep it: `child.inc()` is then a plain number addition, with no string
// building or map lookup per call.

export const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** Escaping for HELP text: backslash and line feed. */
function escapeHelp(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

/** Escaping for label values: backslash, double quote and line feed. */
export function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** A sample value as Prometheus spells it (Go's ParseFloat accepts these). */
export function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}

type LabelValues = Record<string, string | number>;

abstract class Metric<Child> {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly string[];
  protected readonly children = new Map<string, { values: string[]; child: Child }>();

  constructor(name: string, help: string, labelNames: readonly string[]) {
    if (!METRIC_NAME.test(name)) throw new Error(`invalid metric name "${name}"`);
    for (const l of labelNames) {
      if (!LABEL_NAME.test(l) || l.startsWith('__')) throw new Error(`invalid label name "${l}" on ${name}`);
    }
    if (new Set(labelNames).size !== labelNames.length) throw new Error(`duplicate label name on ${name}`);
    this.name = name;
    this.help = help;
    this.labelNames = [...labelNames];
  }

  abstract readonly type: 'counter' | 'gauge' | 'histogram';
  protected abstract newChild(): Child;
  abstract render(): string;

  /** The child for these label values, given in the order of labelNames. */
  labels(...values: Array<string | number>): Child {
    if (values.length !== this.labelNames.length) {
      throw new Error(`${this.name} takes ${this.labelNames.length} label value(s), got ${values.length}`);
    }
    const strings = values.map(String);
    const key = strings.join('\u0000');
    let entry = this.children.get(key);
    if (!entry) {
      entry = { values: strings, child: this.newChild() };
      this.children.set(key, entry);
    }
    return entry.child;
  }

  /** The child for a label map (every label name must be present). */
  protected childFor(labels: LabelValues | undefined): Child {
    if (this.labelNames.length === 0) return this.labels();
    if (!labels) throw new Error(`${this.name} needs labels ${this.labelNames.join(', ')}`);
    const values = this.labelNames.map((n) => {
      const v = labels[n];
      if (v === undefined) throw new Error(`${this.name}: missing label "${n}"`);
      return v;
    });
    if (Object.keys(labels).length !== this.labelNames.length) {
      throw new Error(`${this.name}: unexpected label in ${JSON.stringify(Object.keys(labels))}`);
    }
    return this.labels(...values);
  }

  protected header(): string {
    return `# HELP ${this.name} ${escapeHelp(this.help)}\n# TYPE ${this.name} ${this.type}\n`;
  }

  /** `{a="x",b="y"}` for a child, with optional extra pairs (a histogram's `le`). */
  protected labelText(values: readonly string[], extra?: [string, string]): string {
    const parts: string[] = [];
    for (let i = 0; i < this.labelNames.length; i++) {
      parts.push(`${this.labelNames[i]}="${escapeLabelValue(values[i] as string)}"`);
    }
    if (extra) parts.push(`${extra[0]}="${escapeLabelValue(extra[1])}"`);
    return parts.length ? `{${parts.join(',')}}` : '';
  }

  /** Forget every child (for tests). */
  reset(): void {
    this.children.clear();
  }
}

export class CounterChild {
  value = 0;
  inc(amount = 1): void {
    if (!(amount >= 0)) throw new Error(`a counter can only go up (got ${amount})`);
    this.value += amount;
  }
}

export class Counter extends Metric<CounterChild> {
  readonly type = 'counter' as const;
  protected newChild(): CounterChild {
    return new CounterChild();
  }
  inc(labels?: LabelValues, amount = 1): void {
    this.childFor(labels).inc(amount);
  }
  /** Current value of one child (0 if never touched). */
  get(labels?: LabelValues): number {
    return this.childFor(labels).value;
  }
  render(): string {
    let out = this.header();
    for (const { values, child } of this.children.values()) {
      out += `${this.name}${this.labelText(values)} ${formatValue(child.value)}\n`;
    }
    return out;
  }
}

export class GaugeChild {
  value = 0;
  set(value: number): void {
    this.value = value;
  }
  inc(amount = 1): void {
    this.value += amount;
  }
  dec(amount = 1): void {
    this.value -= amount;
  }
}

export class Gauge extends Metric<GaugeChild> {
  readonly type = 'gauge' as const;
  protected newChild(): GaugeChild {
    return new GaugeChild();
  }
  set(value: number, labels?: LabelValues): void {
    this.childFor(labels).set(value);
  }
  inc(labels?: LabelValues, amount = 1): void {
    this.childFor(labels).inc(amount);
  }
  dec(labels?: LabelValues, amount = 1): void {
    this.childFor(labels).dec(amount);
  }
  get(labels?: LabelValues): number {
    return this.childFor(labels).value;
  }
  render(): string {
    let out = this.header();
    for (const { values, child } of this.children.values()) {
      out += `${this.name}${this.labelText(values)} ${formatValue(child.value)}\n`;
    }
    return out;
  }
}

export class HistogramChild {
  /** Non-cumulative count per bucket; the last slot is +Inf. */
  readonly counts: number[];
  sum = 0;
  count = 0;
  constructor(private readonly bounds: readonly number[]) {
    this.counts = new Array<number>(bounds.length + 1).fill(0);
  }
  observe(value: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && value > (b[i] as number)) i++;
    this.counts[i] = (this.counts[i] as number) + 1;
    this.sum += value;
    this.count++;
  }
}

/** Latency buckets in seconds, from half a millisecond to ten seconds. */
export const DEFAULT_SECONDS_BUCKETS: readonly number[] = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

export class Histogram extends Metric<HistogramChild> {
  readonly type = 'histogram' as const;
  readonly buckets: readonly number[];

  constructor(name: string, help: string, labelNames: readonly string[], buckets: readonly number[] = DEFAULT_SECONDS_BUCKETS) {
    super(name, help, labelNames);
    if (labelNames.includes('le')) throw new Error(`a histogram may not have a label named "le" (${name})`);
    const finite = buckets.filter((b) => b !== Infinity);
    if (finite.length === 0) throw new Error(`histogram ${name} needs at least one bucket`);
    for (let i = 0; i < finite.length; i++) {
      if (!Number.isFinite(finite[i]) || (i > 0 && (finite[i] as number) <= (finite[i - 1] as number))) {
        throw new Error(`histogram ${name}: buckets must be finite and strictly increasing`);
      }
    }
    this.buckets = finite;
  }
  protected newChild(): HistogramChild {
    return new HistogramChild(this.buckets);
  }
  observe(value: number, labels?: LabelValues): void {
    this.childFor(labels).observe(value);
  }
  render(): string {
    let out = this.header();
    for (const { values, child } of this.children.values()) {
      let cumulative = 0;
      for (let i = 0; i < this.buckets.length; i++) {
        cumulative += child.counts[i] as number;
        out += `${this.name}_bucket${this.labelText(values, ['le', formatValue(this.buckets[i] as number)])} ${cumulative}\n`;
      }
      out += `${this.name}_bucket${this.labelText(values, ['le', '+Inf'])} ${child.count}\n`;
      out += `${this.name}_sum${this.labelText(values)} ${formatValue(child.sum)}\n`;
      out += `${this.name}_count${this.labelText(values)} ${child.count}\n`;
    }
    return out;
  }
}

export class Registry {
  private readonly metrics = new Map<string, Metric<unknown>>();

  private add<M extends Metric<unknown>>(metric: M): M {
    const existing = this.metrics.get(metric.name);
    if (existing) {
      // Registering the same metric twice returns the first one, so that two
      // modules sharing a registry can both declare what they use.
      if (existing.type !== metric.type || existing.labelNames.join() !== metric.labelNames.join()) {
        throw new Error(`metric ${metric.name} is already registered with another type or labels`);
      }
      return existing as M;
    }
    this.metrics.set(metric.name, metric);
    return metric;
  }

  counter(name: string, help: string, labelNames: readonly string[] = []): Counter {
    return this.add(new Counter(name, help, labelNames));
  }

  gauge(name: string, help: string, labelNames: readonly string[] = []): Gauge {
    return this.add(new Gauge(name, help, labelNames));
  }

  histogram(name: string, help: string, labelNames: readonly string[] = [], buckets?: readonly number[]): Histogram {
    return this.add(new Histogram(name, help, labelNames, buckets));
  }

  get(name: string): Counter | Gauge | Histogram | undefined {
    return this.metrics.get(name) as Counter | Gauge | Histogram | undefined;
  }

  /** The whole registry in the text exposition format (version 0.0.4). */
  expose(): string {
    let out = '';
    for (const m of this.metrics.values()) out += m.render();
    return out;
  }
}
