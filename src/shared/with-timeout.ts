/** Settles as `promise` does, or rejects with "no answer within N ms" once `ms` have passed. */
export function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), Math.max(0, ms));
    }),
  ]).finally(() => clearTimeout(timer));
}
