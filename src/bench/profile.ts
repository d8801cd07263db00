import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';

/** The parts of a V8 .cpuprofile (as written by node --cpu-prof) this reads. */
export interface CpuProfile {
  nodes: Array<{
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  }>;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileEntry {
  /** Function name and where it is defined. */
  fn: string;
  where: string;
  selfMs: number;
  /** Share of the busy time (all samples but idle). */
  pct: number;
}

export interface ProfileSummary {
  file: string;
  totalMs: number;
  idleMs: number;
  top: ProfileEntry[];
}

function shortenUrl(url: string, root: string | undefined): string {
  let u = url.startsWith('file://') ? decodeURIComponent(url.slice('file://'.length)) : url;
  if (root && u.startsWith(root)) u = u.slice(root.length).replace(/^\/+/, '');
  const nm = u.lastIndexOf('node_modules/');
  return nm === -1 ? u : u.slice(nm);
}

/**
 * Self time per function: each sample is charged the interval until the next
 * one. Functions are keyed by name and definition site, so the same function
 * reached along different stacks adds up.
 */
export function topSelfTime(profile: CpuProfile, n = 10, root?: string): Omit<ProfileSummary, 'file'> {
  const byId = new Map(profile.nodes.map((node) => [node.id, node.callFrame]));
  const self = new Map<string, { fn: string; where: string; us: number }>();
  let totalUs = 0;
  let idleUs = 0;
  const { samples, timeDeltas } = profile;
  for (let i = 0; i < samples.length; i++) {
    const us = Math.max(0, timeDeltas[i + 1] ?? 0);
    const frame = byId.get(samples[i]!);
    if (!frame) continue;
    totalUs += us;
    if (frame.functionName === '(idle)') {
      idleUs += us;
      continue;
    }
    const fn = frame.functionName || '(anonymous)';
    const where = frame.url ? `${shortenUrl(frame.url, root)}:${frame.lineNumber + 1}` : '';
    const key = `${fn}\u0000${where}`;
    const entry = self.get(key) ?? { fn, where, us: 0 };
    entry.us += us;
    self.set(key, entry);
  }
  const busyUs = totalUs - idleUs;
  const top = [...self.values()]
    .sort((a, b) => b.us - a.us)
    .slice(0, n)
    .map((e) => ({
      fn: e.fn,
      where: e.where,
      selfMs: Math.round(e.us / 100) / 10,
      pct: busyUs > 0 ? Math.round((e.us / busyUs) * 1000) / 10 : 0,
    }));
  return { totalMs: Math.round(totalUs / 1000), idleMs: Math.round(idleUs / 1000), top };
}

/** Summarises the newest .cpuprofile in dir. */
export async function summarizeNewestProfile(dir: string, n = 10, root?: string): Promise<ProfileSummary | undefined> {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.cpuprofile'));
  if (files.length === 0) return undefined;
  const withTimes = await Promise.all(files.map(async (f) => ({ f, t: (await stat(path.join(dir, f))).mtimeMs })));
  const newest = withTimes.sort((a, b) => b.t - a.t)[0]!.f;
  const file = path.join(dir, newest);
  const profile = JSON.parse(await readFile(file, 'utf8')) as CpuProfile;
  return { file, ...topSelfTime(profile, n, root) };
}
