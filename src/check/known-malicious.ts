/**
 * A version a known-malicious record names is flagged without a sandbox run (audit, gate, watch):
 * the record is the finding. `--run-known-malicious` runs it anyway, to show what it does.
 */
import { buildReport, type CheckReport } from '../core/report.js';
import { evaluate, type EvaluationContext } from '../policy/evaluate.js';
import type { MaliciousRecord } from '../intel/osv.js';

/** The records that name name@version, from the judge's imported set. */
export function knownMaliciousRecords(
  judge: Pick<EvaluationContext, 'malicious'>,
  name: string,
  version: string,
): MaliciousRecord[] {
  return judge.malicious?.affecting(name, version) ?? [];
}

/** A report of name@version that says it was not run, judged (the known-malicious finding). */
export function notRunReport(
  subject: CheckReport['subject'],
  records: MaliciousRecord[],
  judge: EvaluationContext,
): CheckReport {
  const note = `not run: a known malicious version (${records
    .slice(0, 3)
    .map((r) => r.id)
    .join(', ')}); --run-known-malicious runs it in the sandbox`;
  const report = buildReport({
    subject,
    phases: (['install', 'import', 'exercise'] as const).map((name) => ({
      name,
      status: 'skipped' as const,
      durationMs: 0,
      note,
    })),
    windows: [],
    events: [],
  });
  return evaluate(report, judge);
}
