import { PhonehomeError } from '../../core/errors.js';

interface DockerishError {
  code?: string;
  statusCode?: number;
  json?: { message?: string } | null;
  reason?: string;
  message?: string;
  address?: string;
}

/** Turn a dockerode/docker-modem failure into a catalogued error that says what to do. */
export function dockerError(e: unknown, doing: string): PhonehomeError {
  if (e instanceof PhonehomeError) return e;
  const err = (e ?? {}) as DockerishError;
  const where = process.env.DOCKER_HOST ?? 'unix:///var/run/docker.sock';
  if (
    err.code === 'ENOENT' ||
    err.code === 'ECONNREFUSED' ||
    err.code === 'EHOSTUNREACH' ||
    err.code === 'ETIMEDOUT' ||
    err.code === 'ECONNRESET' ||
    err.code === 'EPIPE'
  ) {
    return new PhonehomeError(
      'EDOCKER_UNREACHABLE',
      `The Docker daemon does not answer at ${where} (${err.code}) while ${doing}.`,
      { cause: e },
    );
  }
  if (err.code === 'EACCES') {
    return new PhonehomeError(
      'EDOCKER_PERMISSION',
      `Permission denied on ${where} while ${doing}.`,
      { cause: e },
    );
  }
  const msg = err.json?.message ?? err.reason ?? err.message ?? String(e);
  if (/no space left on device/i.test(msg)) {
    return new PhonehomeError('EDISK_FULL', `No space left on device while ${doing}.`, {
      detail: msg,
      cause: e,
    });
  }
  return new PhonehomeError('EDOCKER_API', `Docker failed while ${doing}: ${msg}`, { cause: e });
}

export function isNotFound(e: unknown): boolean {
  return (e as DockerishError | undefined)?.statusCode === 404;
}
