/** Registry and tarball failures, as phonehome's typed errors. */
import { PhonehomeError } from '../core/errors.js';

export function specError(spec: string, e: unknown): PhonehomeError {
  const err = e as { code?: string; statusCode?: number; message?: string };
  const msg = err.message ?? String(e);
  if (err.code === 'E404' || err.statusCode === 404) {
    return new PhonehomeError('ESPEC_NOT_FOUND', `${spec} is not in the registry (404).`, {
      detail: msg,
      cause: e,
    });
  }
  if (
    err.code === 'E401' ||
    err.code === 'E403' ||
    err.statusCode === 401 ||
    err.statusCode === 403
  )
    return new PhonehomeError(
      'EREGISTRY_AUTH',
      `The registry refused ${spec} (${err.code ?? err.statusCode}).`,
      { detail: msg, cause: e },
    );
  if (err.code === 'ETARGET')
    return new PhonehomeError('ESPEC_NOT_FOUND', `No version of ${spec} matches.`, {
      detail: msg,
      cause: e,
    });
  if (
    err.code === 'EINVALIDTAGNAME' ||
    err.code === 'EINVALIDPACKAGENAME' ||
    /Invalid (tag|package) name/i.test(msg)
  ) {
    return new PhonehomeError('ESPEC', `${spec} is not a valid package spec.`, {
      detail: msg,
      cause: e,
    });
  }
  if (
    err.code === 'EINTEGRITY' ||
    err.code === 'TAR_BAD_ARCHIVE' ||
    /zlib|unexpected end of file|TAR_/i.test(`${err.code} ${msg}`)
  ) {
    return new PhonehomeError(
      'ESPEC_CORRUPT',
      `The tarball for ${spec} is corrupt or does not match its integrity.`,
      { detail: msg, cause: e },
    );
  }
  if (err.code === 'EBADPLATFORM')
    return new PhonehomeError(
      'ESPEC',
      `${spec} cannot be installed on the sandbox's platform (Linux, ${process.arch}, glibc): its os, cpu or libc fields exclude it.`,
      { detail: msg, cause: e },
    );
  if (err.code === 'EJSONPARSE')
    return new PhonehomeError('ESPEC_CORRUPT', `A package.json in ${spec} is not valid JSON.`, {
      detail: msg,
      cause: e,
    });
  return new PhonehomeError('ERESOLVE', `Could not resolve ${spec}: ${msg}`, { cause: e });
}
