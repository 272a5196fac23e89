/** Something a test owns, that `await using` releases when the test ends, however it ends. */
export type Scoped<T> = T & AsyncDisposable;

/** `target`, released by `dispose`: for objects (amqplib's, the core's) that have no disposer of their own. */
export function scoped<T extends object>(target: T, dispose: () => Promise<unknown>): Scoped<T> {
  return Object.assign(target, {
    [Symbol.asyncDispose]: async () => {
      await dispose();
    },
  });
}
