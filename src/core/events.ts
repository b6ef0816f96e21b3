import type { CaptureEvent } from './terms.js';

export interface EventLog {
  events: CaptureEvent[];
  /** Lines that were not valid events (a torn last line after a crash, say). */
  malformedLines: number;
  /** Attempts the capture counted but did not keep details of (sum of `truncated` records). */
  truncatedCounts: Record<string, number>;
}

/** Parse the capture's newline-delimited JSON event log. */
export function parseEventLog(text: string): EventLog {
  const events: CaptureEvent[] = [];
  const truncatedCounts: Record<string, number> = {};
  let malformedLines = 0;
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    let e: CaptureEvent;
    try {
      e = JSON.parse(line) as CaptureEvent;
    } catch {
      malformedLines++;
      continue;
    }
    if (
      typeof e !== 'object' ||
      e === null ||
      typeof e.kind !== 'string' ||
      typeof e.seq !== 'number'
    ) {
      malformedLines++;
      continue;
    }
    if (e.kind === 'truncated') {
      for (const [k, n] of Object.entries(e.countsByKind))
        truncatedCounts[k] = (truncatedCounts[k] ?? 0) + n;
    }
    events.push(e);
  }
  events.sort((a, b) => a.seq - b.seq);
  return { events, malformedLines, truncatedCounts };
}
