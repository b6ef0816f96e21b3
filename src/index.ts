// The library's public API: an explicit list.
export { check, type CheckOptions } from './check/check.js';
export {
  errorCatalogue,
  ExitCode,
  formatError,
  isPhonehomeError,
  PhonehomeError,
  type ErrorCode,
} from './core/errors.js';
export { parseEventLog, type EventLog } from './core/events.js';
export {
  buildReport,
  REPORT_SCHEMA_VERSION,
  type CheckReport,
  type Finding,
  type PhaseResult,
  type ReportEvent,
  type Verdict,
} from './core/report.js';
export type * from './core/terms.js';
export { buildImages, imagesStatus, type BuildOptions, type BuildResult } from './images/build.js';
export type { ImageRefs, ImageVersions } from './images/inputs.js';
export { stage, type StagedPackage } from './resolve/stage.js';
export { DockerEngine } from './sandbox/docker/engine.js';
export { DockerImages } from './sandbox/docker/images.js';
export type * from './sandbox/sandbox.js';
export { LABEL_OWNER, LABEL_ROLE, LABEL_RUN, LogWaitError } from './sandbox/sandbox.js';
export { CaptureTopology, checkGatewayRules, type TopologyOptions } from './sandbox/topology.js';
