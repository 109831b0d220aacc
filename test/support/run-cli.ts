/** Runs the built `wida` command (bin/wida.js) in a child process and collects its exit code and output. */
import { spawn } from 'node:child_process';
import { WIDA_BIN } from '../fixtures/children.js';

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  env?: Record<string, string | undefined>;
  /** written to the child's stdin, which is then closed */
  input?: string;
  cwd?: string;
  timeoutMs?: number;
}

/** The environment without Wida settings inherited from the shell that runs the tests. */
export function cleanEnv(env: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  const base = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('WIDA_')));
  return { ...base, ...env };
}

export function runCli(args: string[], options: CliOptions = {}): Promise<CliResult> {
  const child = spawn(process.execPath, [WIDA_BIN, ...args], {
    cwd: options.cwd,
    env: cleanEnv(options.env) as NodeJS.ProcessEnv,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  child.stdin.end(options.input ?? '');
  const timeoutMs = options.timeoutMs ?? 20_000;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`wida ${args.join(' ')} did not exit within ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
