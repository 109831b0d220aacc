/**
 * The demo's sample jobs for the handlers in examples/demo-tasks.js: several queues and priorities, with
 * short backoffs so retries and the DLQ are visible within seconds.
 */
import type { JobSpec } from '../../shared/job-spec.js';

const QUICK_BACKOFF = { base: '1s', factor: 2, maxInterval: '10s', jitter: 0.2 } as const;

/** Test card numbers in the style of payment providers: the second one is always declined. */
const GOOD_CARD = '4242424242424242';
const DECLINED_CARD = '4000000000000002';

type Maker = (n: number) => JobSpec;

const MAKERS: Maker[] = [
  (n) => ({ task: 'sendEmail', queue: 'emails', priority: n % 5 === 0 ? 'high' : 'normal', payload: { to: `customer${n}@example.com` }, backoff: QUICK_BACKOFF }),
  (n) => ({ task: 'sendEmail', queue: 'emails', priority: 'critical', payload: { to: `ops${n}@example.com`, subject: 'password reset' }, backoff: QUICK_BACKOFF }),
  (n) => ({ task: 'resizeImage', queue: 'images', payload: n % 8 === 0 ? { width: 400 } : { url: `https://cdn.example.com/photo-${n}.jpg`, width: 400 } }),
  (n) => ({ task: 'chargeCard', queue: 'payments', priority: 'high', maxAttempts: 3, payload: { customerId: n, card: n % 3 === 0 ? DECLINED_CARD : GOOD_CARD, amountCents: 1999 }, backoff: QUICK_BACKOFF }),
  (n) => ({ task: 'buildReport', queue: 'reports', priority: 'low', maxAttempts: 4, payload: { month: `2026-${String((n % 12) + 1).padStart(2, '0')}` }, backoff: QUICK_BACKOFF }),
];

/** `count` jobs, numbered from `first`, cycling through the kinds of work. */
export function sampleJobs(first: number, count: number): JobSpec[] {
  return Array.from({ length: count }, (_, i) => MAKERS[(first + i) % MAKERS.length](first + i));
}
