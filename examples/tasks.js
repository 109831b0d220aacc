// Sample task handlers for `wida agent --handlers examples/tasks.js`.
import { failPermanently } from 'wida';

export async function sendEmail(payload, { job, signal }) {
  await new Promise((resolve) => setTimeout(resolve, 50));
  if (signal.aborted) return;
  return { delivered: payload?.to ?? 'nobody', attempt: job.attempt };
}

export async function resizeImage(payload) {
  if (!payload?.url) failPermanently('payload.url is required');
  await new Promise((resolve) => setTimeout(resolve, 100));
  return { resized: payload.url };
}

export async function flakyReport(_payload, { job }) {
  if (job.attempt < 3) throw new Error(`report backend unavailable (attempt ${job.attempt})`);
  return { rows: 42 };
}
