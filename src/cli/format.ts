/** Output helpers for the CLI: aligned tables, JSON, and short human forms of times and durations. */

export function print(line = ''): void {
  process.stdout.write(`${printable(line)}\n`);
}

// C0 and C1 control characters but tab and line feed: escape sequences that would move the cursor, recolour or
// retitle the operator's terminal, from a queue name, a task or an error anyone who may enqueue can choose.
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;

/** Text shown as it is, control characters escaped (`\x1b`): what the terminal prints, not what it obeys. */
export function printable(text: string): string {
  return text.replace(CONTROL, (char) => `\\x${char.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

export function printJson(value: unknown): void {
  // JSON.stringify escapes C0 controls but writes DEL and the C1 controls (U+009B is a terminal's CSI) as they are.
  const json = JSON.stringify(value, null, 2).replace(/[\u007f-\u009f]/g, (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`);
  process.stdout.write(`${json}\n`);
}

export interface Column<Row> {
  header: string;
  value: (row: Row) => string | number | null | undefined;
  /** right-align (numbers) */
  right?: boolean;
}

/** Prints rows as a table with a header and two spaces between columns; `empty` when there are no rows. */
export function printTable<Row>(rows: readonly Row[], columns: readonly Column<Row>[], empty = '(none)'): void {
  if (rows.length === 0) {
    print(empty);
    return;
  }
  const cells = rows.map((row) => columns.map((column) => oneLine(column.value(row))));
  const widths = columns.map((column, i) => Math.max(column.header.length, ...cells.map((line) => line[i].length)));
  const render = (line: string[]) =>
    line
      .map((cell, i) => (columns[i].right ? cell.padStart(widths[i]) : cell.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  print(render(columns.map((column) => column.header)));
  for (const line of cells) print(render(line));
}

function oneLine(value: string | number | null | undefined): string {
  if (value === null || value === undefined || value === '') return '-';
  return String(value).replace(/\s+/g, ' ');
}

/** "1.2s", "3m 4s", "2h 5m", "3d 1h" */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 9_950) return `${Number((ms / 1000).toFixed(1))}s`;
  // Rounded once, to whole seconds, before splitting: rounding the seconds after flooring the minutes gave "1m 60s".
  const seconds = Math.round(ms / 1000);
  if (seconds < 60) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m ${seconds % 60}s`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return `${hours}h ${minutes % 60}m`;
  return `${Math.floor(hours / 24)}d ${hours % 24}h`;
}

/** "12s ago", "in 5m 0s", from `nowMs` (pass the database's clock: this machine's may be off) */
export function formatRelative(date: Date | string | null | undefined, nowMs: number): string {
  if (!date) return '-';
  const ms = new Date(date).getTime() - nowMs;
  return ms > 0 ? `in ${formatDuration(ms)}` : `${formatDuration(-ms)} ago`;
}

export function formatTime(date: Date | string | null | undefined): string {
  return date ? new Date(date).toISOString() : '-';
}

/** Shortens text for a table cell. */
export function truncate(text: string | null | undefined, max: number): string {
  if (!text) return '';
  const flat = text.replace(/\s+/g, ' ');
  return flat.length <= max ? flat : `${flat.slice(0, max - 1)}…`;
}
