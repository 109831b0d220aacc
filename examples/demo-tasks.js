// Handlers for `wida demo` (and `npm start`): a small shop's background work. Some jobs succeed at once,
// some fail and succeed on a later attempt (retried with backoff), some never succeed and end in the DLQ.
import { failPermanently } from 'wida';

const pause = (ms, signal) =>
  new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(timer);
      reject(signal.reason ?? new Error('aborted'));
    });
  });

const between = (min, max) => min + Math.random() * (max - min);

/** Usually delivered; about one in ten attempts meets a busy mail server and is retried. */
export async function sendEmail(payload, { signal }) {
  await pause(between(30, 150), signal);
  if (Math.random() < 0.1) throw new Error('mail server busy (421), try again later');
  return { delivered: payload.to };
}

/** A job without an image URL can never succeed: it goes straight to the DLQ, without retries. */
export async function resizeImage(payload, { signal }) {
  if (!payload.url) failPermanently('payload.url is required');
  await pause(between(100, 400), signal);
  return { resized: payload.url, width: payload.width ?? 800 };
}

/** The report backend is flaky: the first two attempts fail, the third succeeds. */
export async function buildReport(payload, { job, signal }) {
  await pause(between(200, 600), signal);
  if (job.attempt < 3) throw new Error(`report backend timed out (attempt ${job.attempt})`);
  return { month: payload.month, rows: Math.floor(between(100, 5000)) };
}

/** The test card 4000000000000002 is always declined: retried until its attempts run out, then dead. */
export async function chargeCard(payload, { signal }) {
  await pause(between(50, 200), signal);
  if (payload.card === '4000000000000002') throw new Error(`card of customer ${payload.customerId} declined`);
  return { charged: payload.amountCents };
}
