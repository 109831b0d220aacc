/** Why a running job's signal fired; each maps to how the attempt is recorded. */
export class JobAbort extends Error {
  constructor(
    readonly outcome: 'timed_out' | 'cancelled' | 'lease_lost' | 'shutdown',
    message: string,
  ) {
    super(message);
    this.name = 'JobAbort';
  }
}
