import type { Readable } from 'node:stream';
import type Docker from 'dockerode';
import { PhonehomeError } from '../../core/errors.js';
import type { ImageBuildOptions, ImageInfo, ImageStore } from '../sandbox.js';
import { dockerError, isNotFound } from './errors.js';

export class DockerImages implements ImageStore {
  constructor(private readonly docker: Docker) {}

  async inspect(ref: string): Promise<ImageInfo | undefined> {
    try {
      const i = await this.docker.getImage(ref).inspect();
      return { ref, id: i.Id, sizeBytes: i.Size, labels: i.Config?.Labels ?? {} };
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw dockerError(e, `inspecting image ${ref}`);
    }
  }

  async importRootfs(rootfsTar: Readable, ref: string, changes: string[]): Promise<void> {
    const [repo, tag] = splitRef(ref);
    let stream: NodeJS.ReadableStream;
    try {
      // POST /images/create?fromSrc=-: the engine tags the image only when the import finished.
      stream = (await this.docker.importImage(
        rootfsTar as unknown as NodeJS.ReadableStream,
        {
          repo,
          tag,
          changes,
        } as unknown as Record<string, unknown>,
      )) as NodeJS.ReadableStream;
    } catch (e) {
      throw dockerError(e, `importing the root filesystem as ${ref}`);
    }
    await this.follow(stream, `importing ${ref}`);
  }

  async build(contextTar: Readable, ref: string, opts: ImageBuildOptions): Promise<void> {
    let stream: NodeJS.ReadableStream;
    try {
      stream = await this.docker.buildImage(
        contextTar as unknown as NodeJS.ReadableStream,
        {
          t: ref,
          buildargs: opts.buildArgs,
          labels: opts.labels,
          rm: true,
          forcerm: true,
          // The base is local; never try to pull it.
          pull: undefined,
        } as Docker.ImageBuildOptions,
      );
    } catch (e) {
      throw dockerError(e, `building ${ref}`);
    }
    await this.follow(stream, `building ${ref}`, opts.onLine);
  }

  async remove(ref: string): Promise<void> {
    try {
      await this.docker.getImage(ref).remove({ force: true });
    } catch (e) {
      if (!isNotFound(e)) throw dockerError(e, `removing image ${ref}`);
    }
  }

  async save(refs: string[]): Promise<NodeJS.ReadableStream> {
    try {
      // GET /images/get?names=…: one tar, the layers the images share written once. Missing from
      // @types/dockerode.
      const docker = this.docker as unknown as {
        getImages(o: { names: string[] }): Promise<NodeJS.ReadableStream>;
      };
      return await docker.getImages({ names: refs });
    } catch (e) {
      throw dockerError(e, `saving ${refs.join(', ')}`);
    }
  }

  async load(tar: NodeJS.ReadableStream): Promise<void> {
    let stream: NodeJS.ReadableStream;
    try {
      stream = (await this.docker.loadImage(tar as unknown as string, {
        quiet: true,
      })) as NodeJS.ReadableStream;
    } catch (e) {
      throw dockerError(e, 'loading images');
    }
    await this.follow(stream, 'loading images');
  }

  private follow(
    stream: NodeJS.ReadableStream,
    doing: string,
    onLine?: (line: string) => void,
  ): Promise<void> {
    return new Promise((resolve, reject) => {
      this.docker.modem.followProgress(
        stream,
        (err: Error | null, output: { error?: string; errorDetail?: { message?: string } }[]) => {
          if (err) return reject(dockerError(err, doing));
          const failed = output.find((o) => o.error || o.errorDetail);
          if (failed) {
            const msg = failed.errorDetail?.message ?? failed.error ?? 'unknown error';
            if (/no space left on device/i.test(msg))
              return reject(
                new PhonehomeError('EDISK_FULL', `No space left on device while ${doing}.`, {
                  detail: msg,
                }),
              );
            return reject(
              new PhonehomeError('EIMAGE_BUILD', `The engine failed while ${doing}: ${msg}`),
            );
          }
          resolve();
        },
        (event: { stream?: string; status?: string }) => {
          const text = (event.stream ?? event.status ?? '').trimEnd();
          if (text && onLine) for (const l of text.split('\n')) onLine(l);
        },
      );
    });
  }
}

function splitRef(ref: string): [string, string] {
  const i = ref.lastIndexOf(':');
  return i > 0 ? [ref.slice(0, i), ref.slice(i + 1)] : [ref, 'latest'];
}
