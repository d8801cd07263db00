import { REPORT_SYSTEMS, WORKLOADS } from './options.js';
import { SYSTEM_LABEL, WORKLOAD_LABEL, type Summary } from './comparison-report.js';

/** Fixed colours per system so charts from different runs read the same way. */
const COLOURS: Record<string, string> = {
  [SYSTEM_LABEL.node]: '#9e9e9e',
  [SYSTEM_LABEL.proxy]: '#5b8def',
  [SYSTEM_LABEL.flexstore]: '#e8743b',
  [SYSTEM_LABEL['flexstore-tls']]: '#b3501f',
  [SYSTEM_LABEL.etcd]: '#19a979',
};

/** The Vega-Lite spec of the req/s chart: one group of bars per workload, one bar per system. */
export function throughputSpec(summaries: readonly Summary[], subtitle: string[]): Record<string, unknown> {
  const systems = REPORT_SYSTEMS.filter((s) => summaries.some((x) => x.system === s)).map((s) => SYSTEM_LABEL[s]);
  const workloads = WORKLOADS.filter((w) => summaries.some((x) => x.workload === w)).map((w) => WORKLOAD_LABEL[w]);
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: 'Requests per second by system and workload (higher is better)', subtitle, anchor: 'start' },
    background: 'white',
    // With xOffset the step is per bar, not per group.
    width: { step: 40 },
    height: 280,
    data: {
      values: summaries.map((s) => ({ system: SYSTEM_LABEL[s.system], workload: WORKLOAD_LABEL[s.workload], rps: s.rps })),
    },
    encoding: {
      x: { field: 'workload', type: 'nominal', sort: workloads, title: null, axis: { labelAngle: 0 } },
      xOffset: { field: 'system', type: 'nominal', sort: systems },
      y: { field: 'rps', type: 'quantitative', title: 'req/s' },
      color: {
        field: 'system',
        type: 'nominal',
        sort: systems,
        title: null,
        scale: { domain: systems, range: systems.map((s) => COLOURS[s] ?? '#444') },
        legend: { orient: 'bottom' },
      },
    },
    layer: [
      { mark: { type: 'bar' } },
      {
        mark: { type: 'text', dy: -4, fontSize: 9, baseline: 'bottom' },
        encoding: { text: { field: 'rps', type: 'quantitative', format: ',.0f' } },
      },
    ],
  };
}

/** Renders a Vega-Lite spec to SVG text headlessly (no browser, no canvas). */
export async function renderSvg(spec: Record<string, unknown>): Promise<string> {
  let vega: typeof import('vega');
  let vegaLite: typeof import('vega-lite');
  try {
    [vega, vegaLite] = await Promise.all([import('vega'), import('vega-lite')]);
  } catch (err) {
    throw new Error("the chart needs the dev dependencies 'vega' and 'vega-lite': run npm install in the repository", { cause: err });
  }
  const compiled = vegaLite.compile(spec as never).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}
