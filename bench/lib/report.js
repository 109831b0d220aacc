// Statistics and the printed table.

export function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  const rank = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo);
}

/** The median of the numbers among `values` (undefined where a round failed); undefined if there are none. */
export function median(values) {
  const sorted = values.filter((v) => typeof v === 'number' && !Number.isNaN(v)).sort((a, b) => a - b);
  return sorted.length === 0 ? undefined : percentile(sorted, 50);
}

export function summarize(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mean = sorted.reduce((a, b) => a + b, 0) / (sorted.length || 1);
  return {
    samples: sorted.length,
    p50: percentile(sorted, 50),
    p95: percentile(sorted, 95),
    p99: percentile(sorted, 99),
    mean,
    min: sorted[0] ?? NaN,
    max: sorted[sorted.length - 1] ?? NaN,
  };
}

const int = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

export function formatValue(value, unit) {
  if (value === undefined || value === null || Number.isNaN(value)) return '-';
  if (unit === 'ms' || unit === 'us') return value < 10 ? value.toFixed(2) : value < 100 ? value.toFixed(1) : int.format(value);
  return int.format(value);
}

export function formatRatio(ratio) {
  if (ratio === undefined || ratio === null || !Number.isFinite(ratio)) return '-';
  return `${ratio.toFixed(2)}x`;
}

/**
 * rows: [{ label, unit, higherIsBetter, values: { wida, graphile, pgboss } }]
 * Ratios are oriented so that > 1 means Wida is better: wida/peer for throughput, peer/wida for latency.
 */
export function renderTable(rows, columns) {
  const header = ['measure', ...columns.map((c) => c.label), 'wida/graphile', 'wida/pg-boss'];
  const body = rows.map((row) => {
    const ratio = (peer) => {
      const w = row.values.wida;
      const p = row.values[peer];
      if (!(w > 0) || !(p > 0)) return undefined;
      return row.higherIsBetter ? w / p : p / w;
    };
    return [
      `${row.label} (${row.unit})`,
      ...columns.map((c) => formatValue(row.values[c.name], row.unit)),
      formatRatio(ratio('graphile')),
      formatRatio(ratio('pgboss')),
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((r) => r[i].length)));
  const line = (cells) => cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join('  ');
  const rule = widths.map((w) => '-'.repeat(w)).join('  ');
  return [line(header), rule, ...body.map(line)].join('\n');
}
