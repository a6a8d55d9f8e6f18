import type { ModalClientLike, ModalFilesystemLike, ModalImageLike, ModalProcessLike, ModalSandboxLike } from '../modal-client';

// Strict structural fakes of the Modal SDK surface for unit tests: every method throws unless the
// test queued an answer for that very call (mockResolvedValueOnce & co.).

type AnyFunction = (...args: any[]) => any;
export type StrictMock<F extends AnyFunction> = jest.Mock<ReturnType<F>, Parameters<F>>;

export function strictFn<F extends AnyFunction>(name: string): StrictMock<F> {
  return jest.fn<ReturnType<F>, Parameters<F>>(() => {
    throw new Error(`unexpected Modal SDK call: ${name}`);
  });
}

type Client = ModalClientLike;

export function fakeModalClient() {
  return {
    apps: { fromName: strictFn<Client['apps']['fromName']>('apps.fromName') },
    images: { fromRegistry: strictFn<Client['images']['fromRegistry']>('images.fromRegistry') },
    volumes: { fromName: strictFn<Client['volumes']['fromName']>('volumes.fromName') },
    secrets: {
      fromName: strictFn<Client['secrets']['fromName']>('secrets.fromName'),
      fromObject: strictFn<Client['secrets']['fromObject']>('secrets.fromObject'),
    },
    cloudBucketMounts: { create: strictFn<Client['cloudBucketMounts']['create']>('cloudBucketMounts.create') },
    sandboxes: {
      create: strictFn<Client['sandboxes']['create']>('sandboxes.create'),
      fromId: strictFn<Client['sandboxes']['fromId']>('sandboxes.fromId'),
      experimentalList: strictFn<Client['sandboxes']['experimentalList']>('sandboxes.experimentalList'),
    },
    cpClient: {
      sandboxWait: strictFn<Client['cpClient']['sandboxWait']>('cpClient.sandboxWait'),
      sandboxWaitV2: strictFn<Client['cpClient']['sandboxWaitV2']>('cpClient.sandboxWaitV2'),
    },
    close: strictFn<NonNullable<Client['close']>>('close'),
  } satisfies ModalClientLike;
}
export type FakeModalClient = ReturnType<typeof fakeModalClient>;

export function fakeImage(name: string) {
  return {
    imageId: '',
    dockerfileCommands: strictFn<ModalImageLike['dockerfileCommands']>(`${name}.dockerfileCommands`),
    build: strictFn<ModalImageLike['build']>(`${name}.build`),
  } satisfies ModalImageLike;
}

export function fakeFilesystem() {
  return {
    listFiles: strictFn<ModalFilesystemLike['listFiles']>('filesystem.listFiles'),
    stat: strictFn<ModalFilesystemLike['stat']>('filesystem.stat'),
    copyFromLocal: strictFn<ModalFilesystemLike['copyFromLocal']>('filesystem.copyFromLocal'),
  } satisfies ModalFilesystemLike;
}

export function fakeSandbox(sandboxId: string) {
  return {
    sandboxId,
    filesystem: fakeFilesystem(),
    exec: strictFn<ModalSandboxLike['exec']>(`${sandboxId}.exec`),
    terminate: strictFn<ModalSandboxLike['terminate']>(`${sandboxId}.terminate`),
    detach: strictFn<ModalSandboxLike['detach']>(`${sandboxId}.detach`),
  } satisfies ModalSandboxLike;
}
export type FakeSandbox = ReturnType<typeof fakeSandbox>;

/** A web byte stream that yields exactly these chunks, then ends. */
export function byteStream(chunks: Uint8Array[] = []): ReadableStream<Uint8Array> {
  const queue = [...chunks];
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      const next = queue.shift();
      if (next) controller.enqueue(next);
      else controller.close();
    },
  });
}

/** A stdin that records what was written and whether it was closed. */
export function recordedStdin() {
  const written: Uint8Array[] = [];
  const state = { closed: false };
  const stream = new WritableStream<Uint8Array>({
    write(chunk) {
      written.push(chunk);
    },
    close() {
      state.closed = true;
    },
  });
  return Object.assign(stream, { written, state });
}

export function fakeProcess(options: { stdout?: Uint8Array[]; stderr?: Uint8Array[]; exitCode?: number; wait?: () => Promise<number> } = {}) {
  return {
    stdin: recordedStdin(),
    stdout: byteStream(options.stdout),
    stderr: byteStream(options.stderr),
    wait: jest.fn(options.wait ?? (() => Promise.resolve(options.exitCode ?? 0))),
  } satisfies ModalProcessLike;
}

/** An SDK call that never answers, for deadline tests. */
export function never<T>(): Promise<T> {
  return new Promise<T>(() => undefined);
}
